//! The command line: one binary, one subcommand per job.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Manage Okta CIAM for Workforce access from Kubernetes custom resources.
#[derive(Debug, Parser)]
#[command(name = "okta-ciam-operator", version, about)]
pub struct Cli {
    /// Log output format; defaults to text on a terminal and JSON otherwise.
    #[arg(long, global = true, env = "OKTA_CIAM_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written: `Text`, human-readable lines, or `Json`, one JSON object per line
/// for log collectors.
// The variants stay undocumented: clap would turn variant docs into per-value help and switch
// every `--help` page to its long layout.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The subcommands, one per job.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve an emulated Okta org (Management API subset) for tests, benchmarks and demos.
    Emulator(crate::emulator::cli::EmulatorArgs),
    /// Generate the CustomResourceDefinitions (crds/*.yaml) from the Rust types.
    Crdgen(crate::crd::cli::CrdgenArgs),
    /// Run the operator: watch the cluster and reconcile connectors and group memberships.
    Run(Box<crate::controller::runtime::cli::RunArgs>),
    /// Sync an org's users, groups and roles in scope into a snapshot file (`--demo`: against
    /// a built-in emulated org).
    Sync(crate::sync::cli::SyncArgs),
}

/// Sets up logging on stderr. `RUST_LOG` overrides the default level.
pub fn init_logging(format: Option<LogFormat>) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let format = format.unwrap_or(if std::io::stderr().is_terminal() {
        LogFormat::Text
    } else {
        LogFormat::Json
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Runs the chosen subcommand on a multi-threaded runtime and maps failures to a one-line
/// reason on stderr and a non-zero exit code.
pub fn main(cli: Cli) -> ExitCode {
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Emulator(args) => crate::emulator::cli::run(args).await,
            Command::Crdgen(args) => crate::crd::cli::run(args).map_err(Into::into),
            Command::Run(args) => Ok(crate::controller::runtime::run(*args).await?),
            Command::Sync(args) => crate::sync::cli::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
