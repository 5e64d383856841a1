//! The review workbook: the frozen items as CSV or JSON rows with empty decision columns for
//! reviewers to fill in, reading the filled-in sheet back, and what its `Revoke` decisions
//! would remove. Pure apart from the reader and writer it is handed.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::items::{GrantSource, ItemKind, ReviewItem};
use super::{Error, Result};

/// One row of the workbook: an item, the snapshot it was frozen from, and the decision
/// columns (empty on export).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkbookRow {
    /// The item.
    #[serde(flatten)]
    pub item: ReviewItem,
    /// Digest of the snapshot the item was frozen from.
    pub snapshot_digest: String,
    /// `Approve` (keep), `Revoke`, or empty (not decided).
    #[serde(default)]
    pub decision: String,
    /// Who decided, as the reviewer wrote it (unauthenticated in a file).
    #[serde(default)]
    pub reviewer: String,
    /// Why.
    #[serde(default)]
    pub note: String,
}

/// The CSV header and column order: flat, so a spreadsheet opens it as is.
const CSV_COLUMNS: &[&str] = &[
    "id",
    "kind",
    "userId",
    "userLogin",
    "userName",
    "targetId",
    "targetName",
    "resourceSet",
    "viaGroupId",
    "viaGroupName",
    "source",
    "groupType",
    "declaredBy",
    "snapshotDigest",
    "decision",
    "reviewer",
    "note",
];

/// A reviewer's decision on one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Keep the grant.
    Approve,
    /// Remove the grant.
    Revoke,
}

/// A decision as a sheet records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// Keep or remove.
    pub decision: Decision,
    /// The reviewer named in the sheet.
    pub reviewer: String,
    /// The reviewer's note.
    pub note: String,
}

/// The decisions of a sheet, by item id.
pub type Decisions = BTreeMap<String, Decided>;

/// What remediation would do with one revoked item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "action")]
pub enum Remediation {
    /// Remove the membership in Okta (`DELETE /api/v1/groups/{groupId}/users/{userId}`).
    RemoveMembership,
    /// A person must act, for the reason given; nothing is written to Okta.
    Manual {
        /// Why the operator does not remove it.
        reason: String,
    },
}

/// One revoked item and what would be done about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedRemediation {
    /// The item.
    pub item: ReviewItem,
    /// The reviewer named in the sheet.
    pub reviewer: String,
    /// The reviewer's note.
    pub note: String,
    /// What would happen.
    pub remediation: Remediation,
}

/// Counts of a filled-in workbook.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionCounts {
    /// Items in the campaign.
    pub items: usize,
    /// Items decided `Approve`.
    pub approved: usize,
    /// Items decided `Revoke`.
    pub revoked: usize,
    /// Items with no decision.
    pub undecided: usize,
}

/// The rows of a fresh workbook for `items` of the snapshot with `digest`.
pub fn rows(items: &[ReviewItem], digest: &str) -> Vec<WorkbookRow> {
    items
        .iter()
        .map(|item| WorkbookRow {
            item: item.clone(),
            snapshot_digest: digest.to_owned(),
            decision: String::new(),
            reviewer: String::new(),
            note: String::new(),
        })
        .collect()
}

/// Writes `rows` as CSV with [`CSV_COLUMNS`].
pub fn write_csv(rows: &[WorkbookRow], out: impl std::io::Write) -> Result<()> {
    write_records(CSV_COLUMNS, rows.iter().map(record), out)
}

/// The columns a campaign's report adds after [`CSV_COLUMNS`].
const REPORT_COLUMNS: &[&str] = &["decidedAt", "decidedBy", "outcome", "outcomeDetail"];

/// One row of a campaign's report: the workbook row with the decision filled in from the
/// cluster, and what remediation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportRow {
    /// The item, its snapshot, decision, reviewer and the decision's note.
    #[serde(flatten)]
    pub row: WorkbookRow,
    /// When the counted decision was made (RFC 3339), or empty.
    pub decided_at: String,
    /// The `AccessReviewDecision` counted, or empty.
    pub decided_by: String,
    /// The remediation outcome (`Removed`, `ChangeDeclaration`, ...), or empty before it ran.
    pub outcome: String,
    /// The outcome's detail.
    pub outcome_detail: String,
}

/// Writes a report as CSV: [`CSV_COLUMNS`], then [`REPORT_COLUMNS`].
pub fn write_report_csv(rows: &[ReportRow], out: impl std::io::Write) -> Result<()> {
    let columns: Vec<&str> = CSV_COLUMNS.iter().chain(REPORT_COLUMNS).copied().collect();
    let records = rows.iter().map(|r| {
        let mut fields = record(&r.row);
        fields.extend([
            r.decided_at.clone(),
            r.decided_by.clone(),
            r.outcome.clone(),
            r.outcome_detail.clone(),
        ]);
        fields
    });
    write_records(&columns, records, out)
}

fn write_records(
    header: &[&str],
    records: impl Iterator<Item = Vec<String>>,
    out: impl std::io::Write,
) -> Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(header)?;
    for fields in records {
        writer.write_record(fields)?;
    }
    writer.flush().map_err(Error::Io)
}

/// A workbook row's fields in [`CSV_COLUMNS`] order.
fn record(row: &WorkbookRow) -> Vec<String> {
    let item = &row.item;
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    vec![
        item.id.clone(),
        enum_text(&item.kind),
        item.user_id.clone(),
        item.user_login.clone(),
        item.user_name.clone(),
        item.target_id.clone(),
        item.target_name.clone(),
        opt(&item.resource_set),
        opt(&item.via_group_id),
        opt(&item.via_group_name),
        enum_text(&item.source),
        opt(&item.group_type),
        item.declared_by
            .as_ref()
            .map(|d| format!("{} ({:?})", d.membership, d.origin))
            .unwrap_or_default(),
        row.snapshot_digest.clone(),
        row.decision.clone(),
        row.reviewer.clone(),
        row.note.clone(),
    ]
}

/// An enum's serde name (`groupMembership`, `viaGroup`, ...), the same text as in JSON.
pub fn enum_text<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The decisions of a filled-in CSV workbook, by item id. Only the `id`, `snapshotDigest`,
/// `decision`, `reviewer` and `note` columns are read: the item itself always comes from the
/// snapshot, never from the sheet, so an edited row cannot change what is revoked.
pub fn read_decisions(input: impl std::io::Read, digest: &str) -> Result<Decisions> {
    let mut reader = csv::Reader::from_reader(input);
    let headers = reader.headers()?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| Error::Workbook(format!("the sheet has no {name:?} column")))
    };
    let (id_at, digest_at, decision_at) = (
        column("id")?,
        column("snapshotDigest")?,
        column("decision")?,
    );
    let (reviewer_at, note_at) = (column("reviewer").ok(), column("note").ok());
    let mut decisions = Decisions::new();
    for (n, record) in reader.records().enumerate() {
        let record = record?;
        let line = n + 2;
        let field = |at: usize| record.get(at).unwrap_or("").trim().to_owned();
        let sheet_digest = field(digest_at);
        if sheet_digest != digest {
            return Err(Error::Workbook(format!(
                "line {line}: the row was exported from snapshot {sheet_digest}, not {digest}"
            )));
        }
        let decision = match field(decision_at).to_ascii_lowercase().as_str() {
            "" => continue,
            "approve" | "keep" => Decision::Approve,
            "revoke" | "remove" => Decision::Revoke,
            other => {
                return Err(Error::Workbook(format!(
                    "line {line}: decision {other:?} is not Approve, Revoke or empty"
                )));
            }
        };
        let reviewer = reviewer_at.map(field).unwrap_or_default();
        let note = note_at.map(field).unwrap_or_default();
        let id = field(id_at);
        if let Some(earlier) = decisions.get(&id).map(|d| d.decision)
            && earlier != decision
        {
            return Err(Error::Workbook(format!(
                "line {line}: item {id} is decided both {earlier:?} and {decision:?}"
            )));
        }
        decisions.insert(
            id,
            Decided {
                decision,
                reviewer,
                note,
            },
        );
    }
    Ok(decisions)
}

/// What the `Revoke` decisions would do, in item order, and the counts. Every decided id must
/// be an item of the campaign: a sheet from another campaign is refused, not half-applied.
pub fn plan(
    items: &[ReviewItem],
    decisions: &Decisions,
) -> Result<(Vec<PlannedRemediation>, DecisionCounts)> {
    let by_id: HashMap<&str, &ReviewItem> = items.iter().map(|i| (i.id.as_str(), i)).collect();
    let unknown: Vec<&str> = decisions
        .keys()
        .map(String::as_str)
        .filter(|id| !by_id.contains_key(id))
        .collect();
    if !unknown.is_empty() {
        return Err(Error::Workbook(format!(
            "{} decided item(s) are not in this campaign: {}",
            unknown.len(),
            unknown.join(", ")
        )));
    }
    let mut counts = DecisionCounts {
        items: items.len(),
        ..DecisionCounts::default()
    };
    let mut planned = Vec::new();
    for item in items {
        match decisions.get(&item.id) {
            None => counts.undecided += 1,
            Some(d) if d.decision == Decision::Approve => counts.approved += 1,
            Some(d) => {
                counts.revoked += 1;
                planned.push(PlannedRemediation {
                    item: item.clone(),
                    reviewer: d.reviewer.clone(),
                    note: d.note.clone(),
                    remediation: remediation(item),
                });
            }
        }
    }
    Ok((planned, counts))
}

/// Whether the operator may remove a revoked item itself. Only memberships of groups whose
/// membership Okta lets an API client change (`OKTA_GROUP`); roles are reported, never removed.
pub fn remediation(item: &ReviewItem) -> Remediation {
    let manual = |reason: &str| Remediation::Manual {
        reason: reason.to_owned(),
    };
    match (item.kind, item.source) {
        (ItemKind::GroupMembership, GrantSource::Direct) => Remediation::RemoveMembership,
        (ItemKind::GroupMembership, GrantSource::Imported) => {
            manual("APP_GROUP: remove the user in the directory or app the group is imported from")
        }
        (ItemKind::GroupMembership, _) => manual("BUILT_IN group: Okta manages its membership"),
        (_, GrantSource::ViaGroup) => manual(&format!(
            "role held through group {}: remove the membership or the group's role assignment",
            item.via_group_name.as_deref().unwrap_or_default()
        )),
        _ => manual("admin role: unassign it in Okta's admin console (roles are report-only)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, kind: ItemKind, source: GrantSource) -> ReviewItem {
        ReviewItem {
            id: id.into(),
            kind,
            user_id: "00ua".into(),
            user_login: "alice@example.com".into(),
            user_email: None,
            user_name: "Alice".into(),
            target_id: "00g1".into(),
            target_name: "Engineering".into(),
            resource_set: None,
            via_group_id: None,
            via_group_name: (source == GrantSource::ViaGroup).then(|| "Everyone".to_owned()),
            source,
            group_type: None,
            declared_by: None,
        }
    }

    fn items() -> Vec<ReviewItem> {
        vec![
            item("a1", ItemKind::GroupMembership, GrantSource::Direct),
            item("a2", ItemKind::GroupMembership, GrantSource::Imported),
            item("a3", ItemKind::GroupMembership, GrantSource::BuiltIn),
            item("a4", ItemKind::AdminRole, GrantSource::ViaGroup),
            item("a5", ItemKind::AdminRole, GrantSource::Direct),
            item("a6", ItemKind::GroupMembership, GrantSource::Direct),
        ]
    }

    /// The exported sheet with `decisions` filled in as a reviewer would (by item position).
    fn filled(decisions: &[(usize, &str)]) -> Vec<u8> {
        let mut rows = rows(&items(), "sha256:d");
        for (at, decision) in decisions {
            rows[*at].decision = (*decision).to_owned();
            rows[*at].reviewer = "carol@example.com".to_owned();
        }
        let mut out = Vec::new();
        write_csv(&rows, &mut out).unwrap();
        out
    }

    #[test]
    fn only_direct_okta_group_memberships_are_removed_the_rest_is_manual() {
        let sheet = filled(&[
            (0, "Revoke"),
            (1, "revoke"),
            (2, "Revoke"),
            (3, "Revoke"),
            (4, "Revoke"),
            (5, "Approve"),
        ]);
        let decisions = read_decisions(sheet.as_slice(), "sha256:d").unwrap();
        let (planned, counts) = plan(&items(), &decisions).unwrap();
        let actions: Vec<(&str, bool)> = planned
            .iter()
            .map(|p| {
                (
                    p.item.id.as_str(),
                    p.remediation == Remediation::RemoveMembership,
                )
            })
            .collect();
        assert_eq!(
            actions,
            [
                ("a1", true),
                ("a2", false),
                ("a3", false),
                ("a4", false),
                ("a5", false)
            ]
        );
        assert_eq!(
            counts,
            DecisionCounts {
                items: 6,
                approved: 1,
                revoked: 5,
                undecided: 0
            }
        );
        assert!(planned.iter().all(|p| p.reviewer == "carol@example.com"));
    }

    #[test]
    fn a_sheet_from_another_snapshot_is_refused() {
        let sheet = filled(&[(0, "Revoke")]);
        let err = read_decisions(sheet.as_slice(), "sha256:other").unwrap_err();
        assert!(err.to_string().contains("not sha256:other"), "{err}");
    }

    #[test]
    fn unknown_decisions_conflicts_and_unknown_items_are_refused() {
        let bad = filled(&[(0, "Maybe")]);
        let err = read_decisions(bad.as_slice(), "sha256:d").unwrap_err();
        assert!(
            err.to_string().contains("\"maybe\" is not Approve"),
            "{err}"
        );

        let mut twice = filled(&[(0, "Revoke")]);
        let mut again = filled(&[(0, "Approve")]);
        let header_end = again.iter().position(|b| *b == b'\n').unwrap() + 1;
        twice.extend(again.drain(header_end..));
        let err = read_decisions(twice.as_slice(), "sha256:d").unwrap_err();
        assert!(err.to_string().contains("both Revoke and Approve"), "{err}");

        let sheet = filled(&[(0, "Revoke")]);
        let decisions = read_decisions(sheet.as_slice(), "sha256:d").unwrap();
        let err = plan(&items()[1..], &decisions).unwrap_err();
        assert!(
            err.to_string().contains("not in this campaign: a1"),
            "{err}"
        );
    }

    #[test]
    fn edited_item_columns_do_not_change_what_is_revoked() {
        // A reviewer (or anyone with the file) rewrites the row to name another group: the
        // plan still revokes exactly the item the id names, as the snapshot has it.
        let sheet = String::from_utf8(filled(&[(0, "Revoke")])).unwrap();
        let edited = sheet.replacen("Engineering", "Payroll Admins", 1);
        let decisions = read_decisions(edited.as_bytes(), "sha256:d").unwrap();
        let (planned, _) = plan(&items(), &decisions).unwrap();
        assert_eq!(planned.len(), 1);
        assert_eq!(planned[0].item.target_name, "Engineering");
    }
}
