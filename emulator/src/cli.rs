//! `okta-ciam-operator emulator`: serve an emulated org as a standalone process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncReadExt;

use super::{EmulatorConfig, Fixture, GenerateSpec};

/// Flags of the `emulator` subcommand.
#[derive(Debug, clap::Args)]
pub struct EmulatorArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// YAML fixture describing the org (see docs/emulator.md).
    #[arg(long)]
    pub fixture: Option<PathBuf>,
    /// Generate an org: users=N,groups=G,memberships-per-user=K,admins=A,custom-roles=C,domains=a.com:b.com
    /// (appended to --fixture when both are given). Without either, the demo org is served.
    #[arg(long, value_parser = parse_spec)]
    pub generate: Option<GenerateSpec>,
    /// Seed of --generate.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rate-limit window length in seconds (shrink it so benchmarks run in seconds).
    #[arg(long)]
    pub rate_limit_window_seconds: Option<u64>,
    /// Also exit when standard input reaches end of file (for parents that hold a pipe open;
    /// off by default because CI runs with no standard input).
    #[arg(long)]
    pub exit_on_stdin_close: bool,
}

fn parse_spec(s: &str) -> Result<GenerateSpec, String> {
    s.parse().map_err(|e: super::Error| e.to_string())
}

/// The fixture the flags describe.
fn fixture_from(args: &EmulatorArgs) -> anyhow::Result<Fixture> {
    let mut fixture = match &args.fixture {
        Some(path) => Fixture::from_file(path)?,
        None if args.generate.is_none() => Fixture::demo(),
        None => Fixture::default(),
    };
    if let Some(spec) = &args.generate {
        fixture.extend(Fixture::generate(spec, args.seed));
    }
    Ok(fixture)
}

/// Serves until SIGINT/SIGTERM (or stdin closes with `--exit-on-stdin-close`), after printing
/// `OKTA_EMULATOR_URL=http://ADDR` as the only line on stdout.
pub async fn run(args: EmulatorArgs) -> anyhow::Result<()> {
    let fixture = fixture_from(&args)?;
    let mut config = EmulatorConfig::new(fixture);
    if let Some(secs) = args.rate_limit_window_seconds {
        config.rate_limits.window = Duration::from_secs(secs.max(1));
    }
    let signal = shutdown_signal()?;
    let handle = super::serve(config, args.listen)
        .await
        .context("starting the emulator")?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "OKTA_EMULATOR_URL=http://{}", handle.addr())?;
        out.flush()?;
    }
    let stdin_closed = async {
        if args.exit_on_stdin_close {
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 256];
            while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = signal => tracing::info!("signal received, stopping"),
        _ = stdin_closed => tracing::info!("stdin closed, stopping"),
    }
    handle.shutdown().await;
    Ok(())
}

/// Waits for SIGTERM or SIGINT (Ctrl-C elsewhere). The handlers are installed when this is
/// called, before the URL line announces the emulator: a signal sent right after it is read
/// must stop the process cleanly, not kill it by the default action.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
