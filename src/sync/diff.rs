//! `okta-ciam-operator diff old.json new.json`: the access change log between two snapshot
//! files, as a table or JSON.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use super::changes;
use super::snapshot::Snapshot;

/// Arguments of `diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The earlier snapshot (written by `sync` or the operator).
    pub old: PathBuf,
    /// The later snapshot.
    pub new: PathBuf,
    /// `table` (counts, then one line per change) or `json` (the snapshot's `changes` shape).
    #[arg(long, value_enum, default_value = "table")]
    pub format: DiffFormat,
}

/// Output format of `diff`.
// Undocumented variants keep clap's short help layout (see `LogFormat`).
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    Table,
    Json,
}

/// Reads both snapshots and prints what changed. Snapshots of different orgs are refused:
/// their ids never match, so every object would show as changed.
pub fn run(args: &DiffArgs) -> anyhow::Result<()> {
    let read = |path: &PathBuf| {
        Snapshot::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let (old, new) = (read(&args.old)?, read(&args.new)?);
    anyhow::ensure!(
        old.domain == new.domain,
        "the snapshots are of different orgs ({} and {})",
        old.domain,
        new.domain
    );
    let changes = changes::diff(old.access(), new.access(), &|_| None);
    match args.format {
        DiffFormat::Table => print!("{}", changes.table()),
        DiffFormat::Json => println!("{}", serde_json::to_string_pretty(&changes)?),
    }
    Ok(())
}
