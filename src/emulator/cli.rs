//! `okta-ciam-operator emulator` arguments.

/// Placeholder arguments, replaced by the emulator's real flags.
#[derive(Debug, clap::Args)]
pub struct EmulatorArgs {}

/// Placeholder entry point, replaced by the emulator's real server.
pub async fn run(_args: EmulatorArgs) -> anyhow::Result<()> {
    anyhow::bail!("the emulator is not built yet")
}
