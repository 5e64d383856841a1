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
    #[cfg(feature = "emulator")]
    Emulator(okta_emulator::cli::EmulatorArgs),
    /// Generate the CustomResourceDefinitions (crds/*.yaml) from the Rust types.
    Crdgen(crate::crd::cli::CrdgenArgs),
    /// Run the operator: watch the cluster and reconcile connectors and group memberships.
    Run(Box<crate::controller::runtime::cli::RunArgs>),
    /// Just-in-time access: request, approve, deny and list AccessRequests as the current
    /// user (also installed as the kubectl plugin `kubectl-okta`).
    Access(crate::controller::access::cli::AccessArgs),
    /// Sync an org's users, groups and roles in scope into a snapshot file (`--demo`: against
    /// a built-in emulated org).
    Sync(crate::sync::cli::SyncArgs),
    /// User access reviews: export a workbook from a snapshot file, plan its Revoke decisions,
    /// report an AccessReview campaign from the cluster.
    Review(crate::review::cli::ReviewArgs),
    /// Show what changed between two snapshot files: users in or out of scope, groups,
    /// memberships and role grants added or removed.
    Diff(crate::sync::diff::DiffArgs),
}

impl Command {
    /// The log level used when `RUST_LOG` is unset.
    ///
    /// `sync` is a one-shot command a person runs: its progress line, summary and (on failure)
    /// one `error: ...` line are the output, so warnings such as retried requests stay quiet
    /// unless asked for (`RUST_LOG=warn`). The long-running subcommands log at `info`.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Command::Sync(_) | Command::Access(_) | Command::Review(_) | Command::Diff(_) => {
                "error"
            }
            #[cfg(feature = "emulator")]
            Command::Emulator(_) => "info",
            Command::Crdgen(_) | Command::Run(_) => "info",
        }
    }
}

/// Sets up logging on stderr at `default_level` (e.g. `"info"`). `RUST_LOG` overrides it.
pub fn init_logging(format: Option<LogFormat>, default_level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
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

/// Parses the command line and runs it: the whole of the binary's `main`.
///
/// `--help` and `--version` print to stdout and exit 0. Any other command-line error prints
/// one line, `error: ...`, on stderr and exits 1, the same as a failed run, so scripts see one
/// failure shape whatever went wrong. The exception is a bare invocation with no subcommand,
/// which prints the usage on stderr (still exit 1): there is no single error to name.
/// Invoked as `kubectl-okta` (the kubectl plugin), the arguments are those of `access`.
pub fn main_from_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = args.into_iter().map(Into::into).collect();
    match Cli::try_parse_from(crate::controller::access::cli::plugin_args(args)) {
        Ok(cli) => main(cli),
        Err(e) => report_parse_error(&e),
    }
}

fn report_parse_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // Printing help can only fail on a closed stdout; nothing useful is left to do then.
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::FAILURE
        }
        _ => {
            eprintln!("{}", parse_error_line(e));
            ExitCode::FAILURE
        }
    }
}

/// clap's error as one line: its first line (`error: ...`, without styling), with a pointer
/// to `--help` instead of the multi-line usage and tips.
fn parse_error_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let first = rendered
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("error: invalid command line");
    let first = if first.starts_with("error:") {
        first.to_owned()
    } else {
        format!("error: {first}")
    };
    format!("{first} (see --help)")
}

/// Runs the chosen subcommand on a multi-threaded runtime and maps failures to a one-line
/// reason on stderr and a non-zero exit code.
pub fn main(cli: Cli) -> ExitCode {
    init_logging(cli.log_format, cli.command.default_log_level());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            #[cfg(feature = "emulator")]
            Command::Emulator(args) => okta_emulator::cli::run(args).await,
            Command::Crdgen(args) => crate::crd::cli::run(args).map_err(Into::into),
            Command::Run(args) => Ok(crate::controller::run(*args).await?),
            Command::Sync(args) => crate::sync::cli::run(args).await,
            Command::Review(args) => crate::review::cli::run(args).await,
            Command::Access(args) => Ok(crate::controller::access::cli::run(args).await?),
            Command::Diff(args) => crate::sync::diff::run(&args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line even if some cause's message spans several.
            let reason = format!("{e:#}").replace(['\r', '\n'], " ");
            eprintln!("error: {reason}");
            ExitCode::FAILURE
        }
    }
}
