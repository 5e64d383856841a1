//! Progress reporting and the end-of-sync summary.
//!
//! The engine reports through the [`Progress`] trait; [`StderrProgress`] rewrites one status
//! line on a terminal and prints throttled plain lines otherwise (logs, CI).

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::plan::{MembershipStrategy, RoleStrategy};
use super::snapshot::{GrantKind, PrincipalType, Snapshot, SyncMode};

/// A stage of a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Listing users by email domain.
    Users,
    /// Listing groups by name filter.
    Groups,
    /// Listing admin users and their role assignments.
    Roles,
    /// Listing custom roles and their permissions.
    CustomRoles,
    /// Reading group memberships.
    Memberships,
    /// Reading the System Log (incremental sync).
    Log,
}

impl Phase {
    /// Short name for progress lines.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Users => "users",
            Phase::Groups => "groups",
            Phase::Roles => "role assignments",
            Phase::CustomRoles => "custom roles",
            Phase::Memberships => "memberships",
            Phase::Log => "system log events",
        }
    }
}

/// One progress report.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressUpdate {
    /// The phase reporting.
    pub phase: Phase,
    /// Items the phase has found so far.
    pub items: u64,
    /// Requests the client has made in this sync so far (all phases).
    pub requests: u64,
    /// 429 answers so far.
    pub rate_limited: u64,
    /// Time spent waiting on rate limits so far.
    pub rate_limit_wait: Duration,
    /// Whether the phase has finished.
    pub done: bool,
}

impl std::fmt::Display for ProgressUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{}: {} items, {} requests, {} rate-limited, {:.1}s rate-limit wait",
            self.phase.name(),
            if self.done { " done" } else { "" },
            self.items,
            self.requests,
            self.rate_limited,
            self.rate_limit_wait.as_secs_f64()
        )
    }
}

/// Receives progress reports from the engine (called from concurrent tasks).
pub trait Progress: Send + Sync {
    /// Called after each page and at the end of each phase.
    fn report(&self, update: &ProgressUpdate);
}

/// Discards progress (tests, the reconciler).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn report(&self, _update: &ProgressUpdate) {}
}

/// Progress on stderr: one rewritten status line on a terminal, plain lines otherwise.
#[derive(Debug)]
pub struct StderrProgress {
    terminal: bool,
    interval: Duration,
    last: Mutex<Option<Instant>>,
}

impl StderrProgress {
    /// Detects whether stderr is a terminal.
    pub fn new() -> Self {
        use std::io::IsTerminal;
        let terminal = std::io::stderr().is_terminal();
        Self {
            terminal,
            // A terminal line can refresh often; plain lines are throttled to keep logs short.
            interval: if terminal {
                Duration::from_millis(100)
            } else {
                Duration::from_secs(2)
            },
            last: Mutex::new(None),
        }
    }
}

impl Default for StderrProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for StderrProgress {
    fn report(&self, update: &ProgressUpdate) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if !update.done && last.is_some_and(|t| now.duration_since(t) < self.interval) {
            return;
        }
        *last = Some(now);
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not fail the sync.
        let _ = if self.terminal {
            let end = if update.done { "\n" } else { "" };
            write!(err, "\r\x1b[K{update}{end}")
        } else {
            writeln!(err, "{update}")
        };
        let _ = err.flush();
    }
}

/// The end-of-sync summary table.
pub fn summary_table(s: &Snapshot) -> String {
    let count = |kind: GrantKind, principal: PrincipalType| {
        s.grants
            .iter()
            .filter(|g| g.kind == kind && g.principal_type == principal)
            .count()
    };
    let mut rows: Vec<(&str, String)> = vec![
        ("domain", s.domain.clone()),
        ("email domains", s.email_domains.join(", ")),
        (
            "group name filter",
            s.group_name_filter
                .clone()
                .unwrap_or_else(|| "(none)".into()),
        ),
        ("users", s.users.len().to_string()),
        (
            "  disabled",
            s.users.iter().filter(|u| u.disabled).count().to_string(),
        ),
        ("groups", s.groups.len().to_string()),
        ("standard roles", s.roles.len().to_string()),
        ("custom roles", s.custom_roles.len().to_string()),
        (
            "memberships",
            count(GrantKind::GroupMembership, PrincipalType::User).to_string(),
        ),
        (
            "user role grants",
            (count(GrantKind::RoleAssignment, PrincipalType::User)
                + count(GrantKind::CustomRoleAssignment, PrincipalType::User))
            .to_string(),
        ),
        (
            "group role grants",
            (count(GrantKind::RoleAssignment, PrincipalType::Group)
                + count(GrantKind::CustomRoleAssignment, PrincipalType::Group))
            .to_string(),
        ),
    ];
    let st = &s.stats;
    let floor = if st.request_floor > 0 {
        format!(
            " (floor {}, {:.2}x)",
            st.request_floor,
            st.requests as f64 / st.request_floor as f64
        )
    } else {
        String::new()
    };
    rows.push(("requests", format!("{}{floor}", st.requests)));
    rows.push((
        "mode",
        match (st.mode, &st.full_sync_reason) {
            (SyncMode::Incremental, _) => format!("incremental ({} log events)", st.log_events),
            (SyncMode::Full, Some(why)) => format!("full ({why})"),
            (SyncMode::Full, None) => "full".to_owned(),
        },
    ));
    if let Some(plan) = &st.membership_plan {
        rows.push((
            "membership reads",
            format!(
                "{} ({} requests per group vs {} per user)",
                match plan.strategy {
                    MembershipStrategy::PerGroup => "per group",
                    MembershipStrategy::PerUser => "per user",
                },
                plan.per_group_requests,
                plan.per_user_requests
            ),
        ));
    }
    if let Some(plan) = &st.role_plan {
        rows.push((
            "role reads",
            format!(
                "{} ({} requests via in-scope admins and group lists vs {} via every admin)",
                match plan.strategy {
                    RoleStrategy::GroupLists => "group lists",
                    RoleStrategy::AssigneeLists => "every admin",
                },
                plan.group_lists_requests,
                plan.assignee_lists_requests
            ),
        ));
    }
    if let Some(changes) = &s.changes {
        rows.push((
            "changes",
            format!("since {}: {}", changes.since, changes.counts()),
        ));
    }
    rows.push(("rate-limited (429)", st.rate_limited.to_string()));
    rows.push(("retries", st.retries.to_string()));
    rows.push((
        "rate-limit wait",
        format!("{:.1}s", st.rate_limit_wait_seconds),
    ));
    rows.push(("duration", format!("{:.1}s", st.duration_seconds)));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        let _ = writeln!(out, "{k:<width$}  {v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::snapshot::{Grant, SyncStats};

    #[test]
    fn update_line_names_phase_items_requests_and_waits() {
        let u = ProgressUpdate {
            phase: Phase::Memberships,
            items: 1200,
            requests: 34,
            rate_limited: 1,
            rate_limit_wait: Duration::from_millis(2500),
            done: true,
        };
        assert_eq!(
            u.to_string(),
            "memberships done: 1200 items, 34 requests, 1 rate-limited, 2.5s rate-limit wait"
        );
    }

    #[test]
    fn summary_counts_grants_by_kind() {
        let s = Snapshot {
            domain: "acme.okta.com".into(),
            synced_at: String::new(),
            email_domains: vec!["example.com".into()],
            group_name_filter: None,
            users: vec![],
            groups: vec![],
            roles: vec![],
            custom_roles: vec![],
            grants: vec![
                Grant::membership("u1", "g1"),
                Grant::membership("u2", "g1"),
                Grant {
                    kind: GrantKind::RoleAssignment,
                    principal_type: PrincipalType::Group,
                    principal_id: "g1".into(),
                    target_id: "ORG_ADMIN".into(),
                    resource_set: None,
                },
            ],
            notes: vec![],
            changes: None,
            log_cursor: None,
            stats: SyncStats {
                requests: 12,
                request_floor: 10,
                ..SyncStats::default()
            },
        };
        let table = summary_table(&s);
        assert!(table.contains("memberships         2"), "{table}");
        assert!(table.contains("group role grants   1"), "{table}");
        assert!(
            table.contains("requests            12 (floor 10, 1.20x)"),
            "{table}"
        );
        assert!(table.contains("group name filter   (none)"), "{table}");
    }
}
