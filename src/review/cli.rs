//! `okta-ciam-operator review`: a review campaign from snapshot files, without a cluster.
//!
//! - `review export` freezes the items of a snapshot into a workbook (CSV or JSON) with empty
//!   decision columns, stamped with the snapshot's digest.
//! - `review apply --dry-run` reads the filled-in workbook against the same snapshot and shows
//!   exactly what its `Revoke` decisions would remove, and what a person must do by hand.
//! - `review report <name>` writes an `AccessReview` campaign's evidence from the cluster
//!   ([`crate::controller::review::report`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::items::{ReviewItem, ReviewScope, freeze, snapshot_digest};
use super::workbook::{self, PlannedRemediation, Remediation};
use crate::sync::snapshot::Snapshot;

/// Arguments of `okta-ciam-operator review`.
#[derive(Debug, clap::Args)]
pub struct ReviewArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ReviewCommand,
}

/// The `review` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ReviewCommand {
    /// Freeze a snapshot's grants into a review workbook (one row per item).
    Export(ExportArgs),
    /// Show what a filled-in workbook's Revoke decisions would remove (needs --dry-run).
    Apply(ApplyArgs),
    /// Write an AccessReview's report (items, decisions, outcomes) from the cluster.
    Report(crate::controller::review::report::ReportArgs),
}

/// Which snapshot and which of its grants.
#[derive(Debug, clap::Args)]
pub struct CampaignArgs {
    /// The snapshot file written by `sync`.
    #[arg(long)]
    pub snapshot: PathBuf,
    /// Review only these groups (exact id, or name ignoring case; comma separated). All groups
    /// of the snapshot when unset.
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<String>,
    /// Review admin roles (standard and custom, direct and through groups) too.
    #[arg(long)]
    pub roles: bool,
}

/// Flags of `review export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The campaign.
    #[command(flatten)]
    pub campaign: CampaignArgs,
    /// Workbook format.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: WorkbookFormat,
    /// Where to write the workbook (standard output when unset).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Flags of `review apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The campaign (the same snapshot and scope the workbook was exported with).
    #[command(flatten)]
    pub campaign: CampaignArgs,
    /// The filled-in workbook (CSV).
    #[arg(long)]
    pub decisions: PathBuf,
    /// Only show what would be done. Required: decisions in a file are not authenticated, so
    /// they never remove access by themselves.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format of the plan.
    #[arg(long, value_enum, default_value = "text")]
    pub format: PlanFormat,
}

/// How a workbook is written.
#[allow(missing_docs)] // clap would turn variant docs into per-value help
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkbookFormat {
    Csv,
    Json,
}

/// How a plan is printed.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
}

/// Runs `review`.
pub async fn run(args: ReviewArgs) -> anyhow::Result<()> {
    match args.command {
        ReviewCommand::Export(args) => export(&args),
        ReviewCommand::Apply(args) => apply(&args),
        ReviewCommand::Report(args) => crate::controller::review::report::run(&args).await,
    }
}

/// The campaign's items and the snapshot's digest.
fn campaign(args: &CampaignArgs) -> anyhow::Result<(Vec<ReviewItem>, String)> {
    let bytes = std::fs::read(&args.snapshot)
        .with_context(|| format!("cannot read snapshot {}", args.snapshot.display()))?;
    let snapshot: Snapshot = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a snapshot", args.snapshot.display()))?;
    let scope = ReviewScope {
        groups: args.groups.clone(),
        include_roles: args.roles,
    };
    Ok((freeze(&snapshot, &scope), snapshot_digest(&bytes)))
}

fn export(args: &ExportArgs) -> anyhow::Result<()> {
    let (items, digest) = campaign(&args.campaign)?;
    let rows = workbook::rows(&items, &digest);
    let mut out: Vec<u8> = Vec::new();
    match args.format {
        WorkbookFormat::Csv => workbook::write_csv(&rows, &mut out)?,
        WorkbookFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &rows)?;
            out.push(b'\n');
        }
    }
    write_output(args.output.as_deref(), &out)?;
    eprintln!("{} items from snapshot {digest}", items.len());
    Ok(())
}

fn apply(args: &ApplyArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.dry_run,
        "review apply only plans (--dry-run): decisions read from a file are not \
         authenticated, so they never remove access by themselves"
    );
    let (items, digest) = campaign(&args.campaign)?;
    let sheet = std::fs::File::open(&args.decisions)
        .with_context(|| format!("cannot read {}", args.decisions.display()))?;
    let decisions = workbook::read_decisions(std::io::BufReader::new(sheet), &digest)?;
    let (planned, counts) = workbook::plan(&items, &decisions)?;
    let mut out = std::io::stdout().lock();
    match args.format {
        PlanFormat::Json => {
            let plan = serde_json::json!({
                "snapshotDigest": digest, "counts": counts, "dryRun": true, "revocations": planned,
            });
            serde_json::to_writer_pretty(&mut out, &plan)?;
            writeln!(out)?;
        }
        PlanFormat::Text => {
            for line in plan_lines(&planned) {
                writeln!(out, "{line}")?;
            }
            let removals = planned
                .iter()
                .filter(|p| p.remediation == Remediation::RemoveMembership)
                .count();
            writeln!(
                out,
                "dry run: {} items, {} approved, {} revoked ({removals} would be removed, {} \
                 manual), {} undecided; snapshot {digest}",
                counts.items,
                counts.approved,
                counts.revoked,
                counts.revoked - removals,
                counts.undecided
            )?;
        }
    }
    Ok(())
}

/// One line per revoked item: `REMOVE` or `MANUAL`, the user, the grant, and the reason.
fn plan_lines(planned: &[PlannedRemediation]) -> Vec<String> {
    planned
        .iter()
        .map(|p| {
            let item = &p.item;
            let via = item
                .via_group_name
                .as_deref()
                .map(|g| format!(" via {g}"))
                .unwrap_or_default();
            let what = format!(
                "{:?} {} ({}){via}",
                item.kind, item.target_name, item.target_id
            );
            match &p.remediation {
                Remediation::RemoveMembership => format!("REMOVE  {}  {what}", item.user_login),
                Remediation::Manual { reason } => {
                    format!("MANUAL  {}  {what}: {reason}", item.user_login)
                }
            }
        })
        .collect()
}

/// Writes `bytes` to `path`, or to standard output.
pub fn write_output(path: Option<&Path>, bytes: &[u8]) -> anyhow::Result<()> {
    match path {
        Some(path) => {
            std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
        }
        None => Ok(std::io::stdout().lock().write_all(bytes)?),
    }
}
