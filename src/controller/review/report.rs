//! `okta-ciam-operator review report <name>`: a campaign's evidence from the cluster. Reads the
//! `AccessReview`, its chunks (items, counted decisions, outcomes) and the notes of the counted
//! `AccessReviewDecision`s, and writes one row per item with the snapshot's digest, in the
//! workbook's columns plus when and by which decision it was decided and what remediation did.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context as _;
use kube::Api;
use kube::api::ListParams;

use super::reconcile::own_chunks;
use crate::crd::review::{ItemStatus, ReviewDecision};
use crate::crd::{AccessReview, AccessReviewChunk, AccessReviewDecision};
use crate::review::cli::WorkbookFormat;
use crate::review::workbook::{self, ReportRow, WorkbookRow};

/// Flags of `review report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The AccessReview's name.
    pub name: String,
    /// Its namespace (the kubeconfig's namespace when unset).
    #[arg(long, short)]
    pub namespace: Option<String>,
    /// Report format.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: WorkbookFormat,
    /// Where to write the report (standard output when unset).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Runs `review report` against the kubeconfig's cluster.
pub async fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("cannot configure the Kubernetes client")?;
    let rows = read(client, args).await?;
    let mut out = Vec::new();
    match args.format {
        WorkbookFormat::Csv => workbook::write_report_csv(&rows, &mut out)?,
        WorkbookFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &rows)?;
            out.push(b'\n');
        }
    }
    crate::review::cli::write_output(args.output.as_deref(), &out)?;
    eprintln!("{} items of AccessReview {}", rows.len(), args.name);
    Ok(())
}

/// The report's rows, read from the cluster `client` talks to.
pub async fn read(client: kube::Client, args: &ReportArgs) -> anyhow::Result<Vec<ReportRow>> {
    let ns = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let review = Api::<AccessReview>::namespaced(client.clone(), &ns)
        .get(&args.name)
        .await
        .with_context(|| format!("cannot read AccessReview {ns}/{}", args.name))?;
    let status = review.status.clone().unwrap_or_default();
    let digest = status.snapshot_digest.clone().with_context(|| {
        format!(
            "AccessReview {ns}/{} has not frozen its items yet",
            args.name
        )
    })?;
    let chunks = own_chunks(
        &Api::<AccessReviewChunk>::namespaced(client.clone(), &ns),
        &review,
    )
    .await
    .context("cannot list the review's AccessReviewChunks")?;
    anyhow::ensure!(
        chunks.len() == usize::try_from(status.chunks.unwrap_or(0)).unwrap_or(0),
        "AccessReview {ns}/{} records {} chunks, {} found",
        args.name,
        status.chunks.unwrap_or(0),
        chunks.len()
    );
    let notes: HashMap<String, String> = Api::<AccessReviewDecision>::namespaced(client, &ns)
        .list(&ListParams::default())
        .await
        .context("cannot list AccessReviewDecisions")?
        .items
        .into_iter()
        .filter(|d| d.spec.review.name == args.name)
        .map(|d| {
            (
                d.metadata.name.unwrap_or_default(),
                d.spec.note.unwrap_or_default(),
            )
        })
        .collect();
    let mut rows = Vec::new();
    for chunk in chunks {
        let statuses: HashMap<String, ItemStatus> = chunk
            .status
            .unwrap_or_default()
            .items
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        for item in chunk.spec.items {
            let s = statuses.get(&item.id);
            let text = |f: fn(&ItemStatus) -> Option<String>| s.and_then(f).unwrap_or_default();
            let decided_by = text(|s| s.decided_by.clone());
            rows.push(ReportRow {
                row: WorkbookRow {
                    item,
                    snapshot_digest: digest.clone(),
                    decision: text(|s| {
                        s.decision.map(|d| match d {
                            ReviewDecision::Keep => "Keep".to_owned(),
                            ReviewDecision::Revoke => "Revoke".to_owned(),
                        })
                    }),
                    reviewer: text(|s| s.reviewer.clone()),
                    note: notes.get(&decided_by).cloned().unwrap_or_default(),
                },
                decided_at: text(|s| s.decided_at.as_ref().map(|t| t.0.to_string())),
                decided_by,
                outcome: text(|s| s.outcome.map(|o| workbook::enum_text(&o))),
                outcome_detail: text(|s| s.detail.clone()),
            });
        }
    }
    Ok(rows)
}
