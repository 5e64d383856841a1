//! Pure decisions of the connector reconciler: what an outcome means for the status, when the
//! next sync is due, how long to back off, and which Events to emit. No I/O here.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::controller::runtime::clients::SettingsChange;
use crate::crd::condition::{find_condition, is_true, new_condition, set_condition};
use crate::crd::{
    ConditionStatus, ConditionType, ConnectorReason, ConnectorStatus, OktaRequestStats,
    RateLimitSpec, SyncCounts,
};
use crate::okta::ClientOptions;
use crate::sync::changes::Changes;
use crate::sync::shrink::ScopeSize;
use crate::sync::snapshot::{GrantKind, Snapshot};

/// First delay after a transient failure; doubled per consecutive failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest delay between retries after transient failures.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// What one reconcile found, in pipeline order. The first failing stage decides.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The spec (or the domain policy) refuses the spec; no Okta call was made.
    InvalidSpec {
        /// Every problem, for the condition and the Event.
        message: String,
    },
    /// `spec.suspend` is true: nothing was read or synced.
    Suspended,
    /// The Secret named by `tokenSecretRef` does not exist.
    SecretNotFound {
        /// The Secret's name.
        secret: String,
    },
    /// The Secret exists but lacks the key (or the value is empty).
    SecretKeyMissing {
        /// The Secret's name.
        secret: String,
        /// The missing key.
        key: String,
    },
    /// The Secret's private key (`auth.oauth`) cannot be used.
    InvalidKey {
        /// The Secret's name.
        secret: String,
        /// The key in it.
        key: String,
        /// What is wrong with it (never the key).
        message: String,
    },
    /// An Okta call failed: the credential check (`sync_started` is `None`) or the sync.
    OktaFailed {
        /// One of `Unauthorized`, `Forbidden`, `OktaUnreachable`, `RateLimited`, `SyncFailed`.
        reason: ConnectorReason,
        /// What Okta or the transport said (never the token), without per-response ids so
        /// that a repeat of the failure reads the same.
        message: String,
        /// When the failed call returned: the retry is scheduled from here.
        failed_at: Timestamp,
        /// When the failed sync started, and how long it ran.
        sync_started: Option<(Timestamp, f64)>,
    },
    /// An earlier Okta failure is backing off and nothing that could fix it changed (same
    /// generation, same client): no Okta call was made and the status stays as it is.
    RetryPending {
        /// The reason of the failure being retried.
        reason: ConnectorReason,
        /// When the retry is due (`status.nextSyncTime`).
        retry_at: Timestamp,
    },
    /// A sync finished.
    Synced(SyncReport),
    /// A sync finished but saw far fewer users or groups than the last good one
    /// ([`crate::sync::shrink`]): its snapshot was not used and the last good index stays.
    SnapshotShrank {
        /// What dropped, by how much, and how to accept it.
        message: String,
        /// When the refused sync finished.
        finished_at: Timestamp,
        /// How long it ran, in seconds.
        duration_seconds: f64,
    },
    /// Credentials are valid and no sync was due.
    UpToDate,
}

/// The figures of a successful sync.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncReport {
    /// When it finished (`lastSyncTime` and `lastSuccessfulSyncTime`).
    pub finished_at: Timestamp,
    /// Wall time in seconds.
    pub duration_seconds: f64,
    /// Objects in the snapshot.
    pub counts: SyncCounts,
    /// Okta request counters of the sync.
    pub okta: OktaRequestStats,
    /// What changed since the previous snapshot in memory (none after a restart or a change
    /// of scope).
    pub changes: Option<Changes>,
}

impl Outcome {
    /// The reason written to `Ready`.
    pub fn reason(&self) -> ConnectorReason {
        match self {
            Outcome::InvalidSpec { .. } => ConnectorReason::InvalidSpec,
            Outcome::Suspended => ConnectorReason::Suspended,
            Outcome::SecretNotFound { .. } => ConnectorReason::SecretNotFound,
            Outcome::SecretKeyMissing { .. } => ConnectorReason::SecretKeyMissing,
            Outcome::InvalidKey { .. } => ConnectorReason::InvalidKey,
            Outcome::OktaFailed { reason, .. } | Outcome::RetryPending { reason, .. } => *reason,
            Outcome::Synced(_) | Outcome::UpToDate => ConnectorReason::Synced,
            Outcome::SnapshotShrank { .. } => ConnectorReason::SnapshotShrank,
        }
    }

    /// Whether the connector is ready to serve the membership reconciler.
    pub fn is_ready(&self) -> bool {
        matches!(self, Outcome::Synced(_) | Outcome::UpToDate)
    }

    /// Whether provisioning may go on with the index in memory: when ready, and when a
    /// shrunken snapshot was refused (the last good index is still the best knowledge).
    pub fn serves_index(&self) -> bool {
        self.is_ready() || matches!(self, Outcome::SnapshotShrank { .. })
    }

    /// Whether this outcome is a failed Okta attempt, retried after a back-off. Permanent
    /// failures are retried too (a token or its permissions can be fixed in Okta, which no
    /// watch sees), and back off the same way.
    pub fn backs_off(&self) -> bool {
        matches!(self, Outcome::OktaFailed { .. })
    }
}

/// The reasons of outcomes that back off ([`Outcome::backs_off`]).
const BACKOFF_REASONS: [ConnectorReason; 7] = [
    ConnectorReason::Unauthorized,
    ConnectorReason::InsufficientScope,
    ConnectorReason::InvalidKey,
    ConnectorReason::Forbidden,
    ConnectorReason::OktaUnreachable,
    ConnectorReason::RateLimited,
    ConnectorReason::SyncFailed,
];

/// The back-off the status is in, when a reconcile must not call Okta yet: `Ready` is False
/// for an Okta failure, the status describes this generation, the client is the one that
/// failed (`client_changed` is false: no new token, domain or rate limits) and
/// `nextSyncTime` is still ahead. Anything else (a new spec, a rotated token, a restart that
/// builds a new client, the retry time reached) attempts again.
pub fn retry_pending(
    status: Option<&ConnectorStatus>,
    generation: Option<i64>,
    client_changed: bool,
    now: Timestamp,
) -> Option<Outcome> {
    let status = status?;
    if client_changed || status.observed_generation != generation {
        return None;
    }
    let ready = find_condition(&status.conditions, ConditionType::Ready)?;
    if ready.status != ConditionStatus::False.as_str() {
        return None;
    }
    let reason = BACKOFF_REASONS
        .into_iter()
        .find(|r| r.as_str() == ready.reason)?;
    let retry_at = status.next_sync_time.as_ref()?.0;
    (retry_at > now).then_some(Outcome::RetryPending { reason, retry_at })
}

/// Consecutive failed Okta attempts after `outcome`, given the count before it: a failure
/// adds one (starting again at one when `inputs_changed`: a new spec generation or client),
/// a pending retry was no attempt, anything else ends the streak.
pub fn failures_after(previous: u32, outcome: &Outcome, inputs_changed: bool) -> u32 {
    match outcome {
        Outcome::RetryPending { .. } => previous,
        Outcome::OktaFailed { .. } if inputs_changed => 1,
        Outcome::OktaFailed { .. } => previous.saturating_add(1),
        _ => 0,
    }
}

/// Maps a failed Okta call to the reason shown to users.
pub fn classify_okta(err: &crate::okta::Error) -> ConnectorReason {
    use crate::okta::Error as E;
    match err {
        E::Unauthorized(_) => ConnectorReason::Unauthorized,
        E::Forbidden(_) => ConnectorReason::Forbidden,
        E::InsufficientScope { .. } | E::ScopeNotGranted(_) => ConnectorReason::InsufficientScope,
        E::InvalidKey(_) => ConnectorReason::InvalidKey,
        E::RateLimited(_) | E::RateLimitBudgetExceeded { .. } => ConnectorReason::RateLimited,
        E::Server(_) | E::Transport { .. } => ConnectorReason::OktaUnreachable,
        _ => ConnectorReason::SyncFailed,
    }
}

/// Maps a failed sync to the reason shown to users.
pub fn classify_sync(err: &crate::sync::Error) -> ConnectorReason {
    match err {
        crate::sync::Error::Okta(e) => classify_okta(e),
        _ => ConnectorReason::SyncFailed,
    }
}

/// The client options a connector's `rateLimit` asks for (client defaults where unset).
pub fn client_options(rate_limit: &RateLimitSpec) -> ClientOptions {
    let defaults = ClientOptions::default();
    ClientOptions {
        max_concurrency: rate_limit
            .max_concurrency
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(defaults.max_concurrency),
        budget_percent: rate_limit
            .budget_percent
            .and_then(|n| u8::try_from(n).ok())
            .unwrap_or(defaults.budget_percent),
        ..defaults
    }
}

/// Whether a sync must run now: the credentials were just checked (a new token, or one not
/// known to be valid before: the last sync may have used other credentials), the spec changed
/// since the last status, the last sync did not succeed, or the interval has elapsed since the
/// last success.
pub fn sync_due(
    status: Option<&ConnectorStatus>,
    generation: Option<i64>,
    interval: Duration,
    now: Timestamp,
    credentials_checked: bool,
) -> bool {
    let Some(status) = status else { return true };
    let Some(last) = status.last_successful_sync_time.as_ref() else {
        return true;
    };
    credentials_checked
        || status.observed_generation != generation
        || !is_true(&status.conditions, ConditionType::Synced)
        || add(last.0, interval) <= now
}

/// Delay before retry number `failures` (1-based) after transient failures, doubling up to
/// [`BACKOFF_CAP`].
pub fn backoff(failures: u32) -> Duration {
    crate::controller::retry_delay(BACKOFF_BASE, BACKOFF_CAP, failures)
}

/// When the reconciler next acts on its own (`None`: only on a change of the connector or
/// its Secret). After a success, one interval after the last successful sync; after an Okta
/// failure, transient or not, the back-off for `failures` consecutive failures after the
/// failed call; while a retry is pending, its time, unchanged. Never derived from `now` where
/// the status already says when, so re-deciding an unchanged state writes nothing.
pub fn next_attempt(
    outcome: &Outcome,
    last_successful: Option<Timestamp>,
    interval: Duration,
    failures: u32,
    now: Timestamp,
) -> Option<Timestamp> {
    match outcome {
        Outcome::InvalidSpec { .. }
        | Outcome::Suspended
        | Outcome::SecretNotFound { .. }
        | Outcome::SecretKeyMissing { .. }
        | Outcome::InvalidKey { .. } => None,
        Outcome::OktaFailed { failed_at, .. } => Some(add(*failed_at, backoff(failures))),
        Outcome::RetryPending { retry_at, .. } => Some(*retry_at),
        Outcome::Synced(report) => Some(add(report.finished_at, interval)),
        Outcome::SnapshotShrank { finished_at, .. } => Some(add(*finished_at, interval)),
        Outcome::UpToDate => Some(
            last_successful
                .map(|t| add(t, interval))
                .filter(|t| *t > now)
                .unwrap_or_else(|| add(now, interval)),
        ),
    }
}

/// How long to wait from `now` until `at`, at least one second (never a hot loop).
pub fn delay_until(at: Timestamp, now: Timestamp) -> Duration {
    let wait = at.duration_since(now);
    Duration::try_from(wait)
        .unwrap_or(Duration::ZERO)
        .max(Duration::from_secs(1))
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    t.saturating_add(d).unwrap_or(Timestamp::MAX)
}

/// The status after `outcome`, starting from the previous one so that fields the outcome
/// says nothing about (counts, last sync times, unrelated conditions) are kept. A Secret
/// problem only touches `CredentialsValid` and `Ready`.
pub fn next_status(
    previous: Option<&ConnectorStatus>,
    outcome: &Outcome,
    generation: Option<i64>,
    next_attempt: Option<Timestamp>,
    now: Timestamp,
) -> ConnectorStatus {
    let mut status = previous.cloned().unwrap_or_default();
    if matches!(outcome, Outcome::RetryPending { .. }) {
        return status;
    }
    status.observed_generation = generation;
    status.next_sync_time = next_attempt.map(Time);
    let reason = outcome.reason();
    let synced_message = find_condition(&status.conditions, ConditionType::Synced)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let mut set =
        |type_: ConditionType, value: ConditionStatus, reason: ConnectorReason, message: String| {
            set_condition(
                &mut status.conditions,
                new_condition(
                    type_,
                    value,
                    reason.as_str(),
                    message,
                    generation,
                    Time(now),
                ),
            );
        };
    let credentials_ok = || "Okta accepted the credentials".to_owned();
    match outcome {
        Outcome::InvalidSpec { message } => {
            set(
                ConditionType::Ready,
                ConditionStatus::False,
                reason,
                message.clone(),
            );
        }
        Outcome::Suspended => set(
            ConditionType::Ready,
            ConditionStatus::False,
            reason,
            "spec.suspend is true: nothing is synced or provisioned".to_owned(),
        ),
        Outcome::SecretNotFound { secret } => {
            let message = format!("Secret {secret:?} not found in the connector's namespace");
            for type_ in [ConditionType::CredentialsValid, ConditionType::Ready] {
                set(type_, ConditionStatus::False, reason, message.clone());
            }
        }
        Outcome::SecretKeyMissing { secret, key } => {
            let message = format!("Secret {secret:?} has no non-empty key {key:?}");
            for type_ in [ConditionType::CredentialsValid, ConditionType::Ready] {
                set(type_, ConditionStatus::False, reason, message.clone());
            }
        }
        Outcome::InvalidKey {
            secret,
            key,
            message,
        } => {
            let message = format!("Secret {secret:?} key {key:?}: {message}");
            for type_ in [ConditionType::CredentialsValid, ConditionType::Ready] {
                set(type_, ConditionStatus::False, reason, message.clone());
            }
        }
        Outcome::RetryPending { .. } => {}
        Outcome::OktaFailed {
            reason,
            message,
            failed_at,
            sync_started,
        } => {
            let credential_problem = matches!(
                reason,
                ConnectorReason::Unauthorized
                    | ConnectorReason::Forbidden
                    | ConnectorReason::InsufficientScope
            );
            if credential_problem {
                set(
                    ConditionType::CredentialsValid,
                    ConditionStatus::False,
                    *reason,
                    message.clone(),
                );
            } else if sync_started.is_none() {
                // The check got no answer: the token is neither known good nor bad, so the
                // next reconcile checks it again.
                set(
                    ConditionType::CredentialsValid,
                    ConditionStatus::Unknown,
                    *reason,
                    message.clone(),
                );
            }
            if let Some((_, duration)) = sync_started {
                if !credential_problem {
                    // The sync got past the credential check, so the token works.
                    set(
                        ConditionType::CredentialsValid,
                        ConditionStatus::True,
                        ConnectorReason::Synced,
                        credentials_ok(),
                    );
                }
                set(
                    ConditionType::Synced,
                    ConditionStatus::False,
                    *reason,
                    message.clone(),
                );
                // When the failed sync finished, as the field is documented.
                status.last_sync_time = Some(Time(*failed_at));
                status.last_sync_duration_seconds = Some(*duration);
            }
            set(
                ConditionType::Ready,
                ConditionStatus::False,
                *reason,
                message.clone(),
            );
        }
        Outcome::Synced(report) => {
            let message = format!(
                "Synced {} users and {} groups",
                report.counts.users, report.counts.groups
            );
            set(
                ConditionType::CredentialsValid,
                ConditionStatus::True,
                reason,
                credentials_ok(),
            );
            set(
                ConditionType::Synced,
                ConditionStatus::True,
                reason,
                message.clone(),
            );
            set(ConditionType::Ready, ConditionStatus::True, reason, message);
            status.last_sync_time = Some(Time(report.finished_at));
            status.last_successful_sync_time = Some(Time(report.finished_at));
            status.last_sync_duration_seconds = Some(report.duration_seconds);
            status.counts = Some(report.counts);
            status.okta = Some(report.okta);
        }
        Outcome::SnapshotShrank {
            message,
            finished_at,
            duration_seconds,
        } => {
            set(
                ConditionType::CredentialsValid,
                ConditionStatus::True,
                ConnectorReason::Synced,
                credentials_ok(),
            );
            for type_ in [ConditionType::Synced, ConditionType::Ready] {
                set(type_, ConditionStatus::False, reason, message.clone());
            }
            // `counts` and `lastSuccessfulSyncTime` stay those of the last good sync: they
            // are the baseline the next sync is checked against.
            status.last_sync_time = Some(Time(*finished_at));
            status.last_sync_duration_seconds = Some(*duration_seconds);
        }
        Outcome::UpToDate => {
            let message = synced_message;
            set(
                ConditionType::CredentialsValid,
                ConditionStatus::True,
                reason,
                credentials_ok(),
            );
            set(ConditionType::Ready, ConditionStatus::True, reason, message);
        }
    }
    status
}

/// Severity of a planned Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Something worked or changed as asked.
    Normal,
    /// Something needs attention or failed.
    Warning,
}

/// An Event the reconciler should publish about the connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    /// Normal or Warning.
    pub kind: EventKind,
    /// PascalCase reason.
    pub reason: String,
    /// What the reconciler was doing.
    pub action: &'static str,
    /// Human-readable note (never the token).
    pub note: String,
}

/// The Events that follow from moving from `previous` to `outcome`: a Warning when a failure
/// starts or its reason changes (or a new generation of the spec is still invalid), a Normal
/// `CredentialsChanged` when a new token or domain was accepted, a Normal `RateLimitsChanged`
/// when only the rate limits of the client changed, `Recovered` when a failure ends,
/// `Suspended` when suspension starts. Nothing for a periodic sync that keeps working.
/// `client_change` says which settings of the connector's Okta client changed.
pub fn plan_events(
    previous: Option<&ConnectorStatus>,
    outcome: &Outcome,
    generation: Option<i64>,
    client_change: SettingsChange,
) -> Vec<PlannedEvent> {
    let prev_ready = previous.and_then(|s| find_condition(&s.conditions, ConditionType::Ready));
    let prev_reason = prev_ready.map(|c| c.reason.as_str());
    let new_generation = previous.and_then(|s| s.observed_generation) != generation;
    let reason = outcome.reason();
    let mut events = Vec::new();
    let warn = |action: &'static str, note: String| PlannedEvent {
        kind: EventKind::Warning,
        reason: reason.as_str().to_owned(),
        action,
        note,
    };
    let changed_reason = prev_reason != Some(reason.as_str());
    match outcome {
        Outcome::InvalidSpec { message } if changed_reason || new_generation => {
            events.push(warn("ValidateSpec", message.clone()));
        }
        Outcome::SecretNotFound { secret } if changed_reason => events.push(warn(
            "ReadSecret",
            format!("Secret {secret:?} not found; waiting for it to be created"),
        )),
        Outcome::SecretKeyMissing { secret, key } if changed_reason => events.push(warn(
            "ReadSecret",
            format!("Secret {secret:?} has no non-empty key {key:?}"),
        )),
        Outcome::InvalidKey {
            secret,
            key,
            message,
        } if changed_reason => events.push(warn(
            "ReadSecret",
            format!("Secret {secret:?} key {key:?}: {message}"),
        )),
        Outcome::OktaFailed {
            message,
            sync_started,
            ..
        } if changed_reason => {
            let action = if sync_started.is_some() {
                "Sync"
            } else {
                "CheckCredentials"
            };
            events.push(warn(action, message.clone()));
        }
        Outcome::SnapshotShrank { message, .. } if changed_reason => {
            events.push(warn("Sync", message.clone()));
        }
        Outcome::Suspended if changed_reason => events.push(PlannedEvent {
            kind: EventKind::Normal,
            reason: reason.as_str().to_owned(),
            action: "Suspend",
            note: "spec.suspend is true: syncing and provisioning stopped".to_owned(),
        }),
        _ => {}
    }
    let credentials_failed = matches!(
        outcome,
        Outcome::OktaFailed {
            reason: ConnectorReason::Unauthorized
                | ConnectorReason::Forbidden
                | ConnectorReason::InsufficientScope,
            ..
        }
    );
    let invalid = matches!(outcome, Outcome::InvalidSpec { .. });
    let credentials_changed = client_change.token || client_change.domain;
    if credentials_changed && !credentials_failed && !invalid {
        let what = match (client_change.token, client_change.domain) {
            (true, true) => "The credentials (API token or OAuth app) and the org domain changed",
            (true, false) => "The credentials (API token or OAuth app) changed",
            _ => "The org domain changed",
        };
        let also = if client_change.rate_limits {
            " (the client also uses the new rate limits)"
        } else {
            ""
        };
        events.push(PlannedEvent {
            kind: EventKind::Normal,
            reason: "CredentialsChanged".to_owned(),
            action: "CheckCredentials",
            note: format!("{what} and Okta accepted the new credentials{also}"),
        });
    } else if client_change.rate_limits && !credentials_changed && !invalid {
        events.push(PlannedEvent {
            kind: EventKind::Normal,
            reason: "RateLimitsChanged".to_owned(),
            action: "ConfigureClient",
            note: "spec.rateLimit changed: the Okta client was rebuilt with the new limits; \
                   the credentials and domain are unchanged"
                .to_owned(),
        });
    }
    let was_failing = prev_ready.is_some_and(|c| {
        c.status == ConditionStatus::False.as_str()
            && c.reason != ConnectorReason::Suspended.as_str()
    });
    if outcome.is_ready() && was_failing {
        events.push(PlannedEvent {
            kind: EventKind::Normal,
            reason: "Recovered".to_owned(),
            action: "Sync",
            note: format!("Ready again after {}", prev_reason.unwrap_or("a failure")),
        });
    }
    events
}

/// Most Events one sync's change log becomes.
pub const CHANGE_EVENT_LIMIT: usize = 10;

/// The change log of a sync as `AccessChanged` Events: one per change while they fit in
/// `limit`, otherwise `limit - 1` of them and one summary with the counts of the rest.
pub fn change_events(changes: &Changes, limit: usize) -> Vec<PlannedEvent> {
    let lines = changes.lines();
    let event = |note: String| PlannedEvent {
        kind: EventKind::Normal,
        reason: "AccessChanged".to_owned(),
        action: "Sync",
        note,
    };
    if lines.len() <= limit {
        return lines.into_iter().map(event).collect();
    }
    let shown = limit.saturating_sub(1);
    let mut events: Vec<PlannedEvent> = lines.iter().take(shown).cloned().map(event).collect();
    events.push(event(format!(
        "{} more changes since {} (in all: {})",
        lines.len() - shown,
        changes.since,
        changes.counts()
    )));
    events
}

/// The shrink guard's view of status counts.
pub fn scope_size(counts: &SyncCounts) -> ScopeSize {
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    ScopeSize {
        users: n(counts.users),
        groups: n(counts.groups),
    }
}

/// The status counts of a snapshot.
pub fn counts(snapshot: &Snapshot) -> SyncCounts {
    let grants = |pred: fn(GrantKind) -> bool| {
        snapshot.grants.iter().filter(|g| pred(g.kind)).count() as i64
    };
    SyncCounts {
        users: snapshot.users.len() as i64,
        groups: snapshot.groups.len() as i64,
        roles: snapshot.roles.len() as i64,
        custom_roles: snapshot.custom_roles.len() as i64,
        group_memberships: grants(|k| k == GrantKind::GroupMembership),
        role_assignments: grants(|k| k != GrantKind::GroupMembership),
    }
}

/// The Okta request counters of a snapshot, for `status.okta`.
pub fn okta_stats(snapshot: &Snapshot) -> OktaRequestStats {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    OktaRequestStats {
        requests: n(snapshot.stats.requests),
        rate_limited: n(snapshot.stats.rate_limited),
        retries: n(snapshot.stats.retries),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::condition::find_condition;
    use crate::okta::OktaErrorInfo;
    use crate::sync::snapshot::Grant;

    const HOUR: Duration = Duration::from_secs(3600);
    const UNCHANGED: SettingsChange = SettingsChange {
        domain: false,
        token: false,
        rate_limits: false,
    };
    const TOKEN: SettingsChange = SettingsChange {
        token: true,
        ..UNCHANGED
    };

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn report(finished: i64) -> SyncReport {
        SyncReport {
            finished_at: at(finished),
            duration_seconds: 10.0,
            counts: SyncCounts {
                users: 3,
                groups: 2,
                ..SyncCounts::default()
            },
            okta: OktaRequestStats {
                requests: 9,
                ..OktaRequestStats::default()
            },
            changes: None,
        }
    }

    fn failed(reason: ConnectorReason, during_sync: bool) -> Outcome {
        Outcome::OktaFailed {
            reason,
            message: format!("{reason} happened"),
            failed_at: at(102),
            sync_started: during_sync.then(|| (at(100), 1.5)),
        }
    }

    fn cond(status: &ConnectorStatus, t: ConditionType) -> Option<(String, String)> {
        find_condition(&status.conditions, t).map(|c| (c.status.clone(), c.reason.clone()))
    }

    fn pair(status: &str, reason: &str) -> Option<(String, String)> {
        Some((status.to_owned(), reason.to_owned()))
    }

    fn synced_status(finished: i64, generation: i64) -> ConnectorStatus {
        next_status(
            None,
            &Outcome::Synced(report(finished)),
            Some(generation),
            None,
            at(finished),
        )
    }

    #[test]
    fn okta_errors_map_to_specific_reasons() {
        use crate::okta::Error as E;
        let info = || OktaErrorInfo::default();
        let cases = [
            (E::Unauthorized(info()), ConnectorReason::Unauthorized),
            (E::Forbidden(info()), ConnectorReason::Forbidden),
            (E::RateLimited(info()), ConnectorReason::RateLimited),
            (E::Server(info()), ConnectorReason::OktaUnreachable),
            (
                E::Transport {
                    message: "refused".into(),
                },
                ConnectorReason::OktaUnreachable,
            ),
            (E::InvalidRequest(info()), ConnectorReason::SyncFailed),
            (
                E::InsufficientScope {
                    scope: "okta.roles.read".into(),
                    info: Box::new(info()),
                },
                ConnectorReason::InsufficientScope,
            ),
            (
                E::ScopeNotGranted(info()),
                ConnectorReason::InsufficientScope,
            ),
            (
                E::InvalidKey(crate::okta::oauth::KeyError::Sign),
                ConnectorReason::InvalidKey,
            ),
        ];
        for (err, want) in cases {
            assert_eq!(classify_okta(&err), want, "{err}");
        }
        assert_eq!(
            classify_sync(&crate::sync::Error::NoEmailDomains),
            ConnectorReason::SyncFailed
        );
        assert_eq!(
            classify_sync(&crate::sync::Error::Okta(E::Server(info()))),
            ConnectorReason::OktaUnreachable
        );
    }

    #[test]
    fn rate_limit_spec_overrides_client_defaults() {
        let defaults = ClientOptions::default();
        assert_eq!(client_options(&RateLimitSpec::default()), defaults);
        let o = client_options(&RateLimitSpec {
            max_concurrency: Some(3),
            budget_percent: Some(20),
        });
        assert_eq!((o.max_concurrency, o.budget_percent), (3, 20));
        assert_eq!(o.max_retries, defaults.max_retries);
    }

    #[test]
    fn sync_is_due_without_history_after_changes_failures_or_the_interval() {
        assert!(sync_due(None, Some(1), HOUR, at(0), false));
        let ok = synced_status(1000, 1);
        assert!(!sync_due(Some(&ok), Some(1), HOUR, at(1000 + 3599), false));
        assert!(sync_due(Some(&ok), Some(1), HOUR, at(1000 + 3600), false));
        assert!(sync_due(Some(&ok), Some(2), HOUR, at(1001), false));
        assert!(sync_due(Some(&ok), Some(1), HOUR, at(1001), true));
        let after_failure = next_status(
            Some(&ok),
            &failed(ConnectorReason::OktaUnreachable, true),
            Some(1),
            None,
            at(1100),
        );
        assert!(sync_due(
            Some(&after_failure),
            Some(1),
            HOUR,
            at(1101),
            false
        ));
        let never = ConnectorStatus {
            observed_generation: Some(1),
            ..ConnectorStatus::default()
        };
        assert!(sync_due(Some(&never), Some(1), HOUR, at(0), false));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(0), BACKOFF_BASE);
        assert_eq!(backoff(1), BACKOFF_BASE);
        assert_eq!(backoff(2), BACKOFF_BASE * 2);
        assert_eq!(backoff(3), BACKOFF_BASE * 4);
        assert_eq!(backoff(10), BACKOFF_CAP);
        assert_eq!(backoff(u32::MAX), BACKOFF_CAP);
    }

    #[test]
    fn next_attempt_waits_for_changes_backs_off_or_follows_the_interval() {
        let now = at(5000);
        for outcome in [
            Outcome::InvalidSpec {
                message: "bad".into(),
            },
            Outcome::Suspended,
            Outcome::SecretNotFound { secret: "s".into() },
            Outcome::SecretKeyMissing {
                secret: "s".into(),
                key: "k".into(),
            },
        ] {
            assert_eq!(
                next_attempt(&outcome, None, HOUR, 0, now),
                None,
                "{outcome:?}"
            );
        }
        // Every Okta failure, permanent ones included, backs off from when it failed.
        for reason in BACKOFF_REASONS {
            assert_eq!(
                next_attempt(&failed(reason, true), None, HOUR, 3, now),
                Some(at(102 + 20)),
                "{reason}"
            );
            assert_eq!(
                next_attempt(&failed(reason, false), None, HOUR, 1, now),
                Some(at(102 + 5)),
                "{reason}"
            );
        }
        let pending = Outcome::RetryPending {
            reason: ConnectorReason::Unauthorized,
            retry_at: at(5040),
        };
        assert_eq!(next_attempt(&pending, None, HOUR, 7, now), Some(at(5040)));
        assert_eq!(
            next_attempt(&Outcome::Synced(report(4990)), None, HOUR, 0, now),
            Some(at(4990 + 3600))
        );
        assert_eq!(
            next_attempt(&Outcome::UpToDate, Some(at(4000)), HOUR, 0, now),
            Some(at(4000 + 3600))
        );
        // A stale last success never schedules in the past.
        assert_eq!(
            next_attempt(&Outcome::UpToDate, Some(at(0)), HOUR, 0, now),
            Some(at(5000 + 3600))
        );
        assert_eq!(delay_until(at(5030), now), Duration::from_secs(30));
        assert_eq!(delay_until(at(10), now), Duration::from_secs(1));
    }

    #[test]
    fn re_deciding_the_same_failure_later_writes_the_same_status() {
        let ok = synced_status(1000, 1);
        for reason in BACKOFF_REASONS {
            let outcome = failed(reason, reason != ConnectorReason::Unauthorized);
            let decide_at = |now: Timestamp| {
                let next = next_attempt(&outcome, Some(at(1000)), HOUR, 2, now);
                next_status(Some(&ok), &outcome, Some(1), next, now)
            };
            let first = decide_at(at(2000));
            // Later, the status from the first decision is the previous one.
            let next = next_attempt(&outcome, Some(at(1000)), HOUR, 2, at(2100));
            let again = next_status(Some(&first), &outcome, Some(1), next, at(2100));
            assert_eq!(again, first, "{reason}");
            assert_eq!(decide_at(at(3000)).next_sync_time, first.next_sync_time);
        }
    }

    #[test]
    fn a_retry_is_pending_only_while_nothing_changed_and_its_time_is_ahead() {
        let ok = synced_status(1000, 1);
        let outcome = failed(ConnectorReason::Unauthorized, false);
        let next = next_attempt(&outcome, None, HOUR, 1, at(102));
        let failing = next_status(Some(&ok), &outcome, Some(1), next, at(102));
        let retry_at = at(107);
        assert_eq!(failing.next_sync_time, Some(Time(retry_at)));
        let pending = Outcome::RetryPending {
            reason: ConnectorReason::Unauthorized,
            retry_at,
        };
        assert_eq!(
            retry_pending(Some(&failing), Some(1), false, at(106)),
            Some(pending.clone())
        );
        // The retry time reached, a new generation, a new client: attempt again.
        assert_eq!(retry_pending(Some(&failing), Some(1), false, at(107)), None);
        assert_eq!(retry_pending(Some(&failing), Some(2), false, at(106)), None);
        assert_eq!(retry_pending(Some(&failing), Some(1), true, at(106)), None);
        assert_eq!(retry_pending(None, Some(1), false, at(106)), None);
        // A healthy connector waiting for its interval is not backing off.
        let up = ConnectorStatus {
            next_sync_time: Some(Time(at(4600))),
            ..ok.clone()
        };
        assert_eq!(retry_pending(Some(&up), Some(1), false, at(2000)), None);
        // Nor one waiting for a Secret to appear.
        let no_secret = next_status(
            Some(&failing),
            &Outcome::SecretNotFound { secret: "s".into() },
            Some(1),
            Some(at(9999)),
            at(106),
        );
        assert_eq!(
            retry_pending(Some(&no_secret), Some(1), false, at(106)),
            None
        );
        // While pending, nothing is written and nothing is announced.
        assert_eq!(
            next_status(Some(&failing), &pending, Some(1), Some(retry_at), at(106)),
            failing
        );
        assert!(plan_events(Some(&failing), &pending, Some(1), UNCHANGED).is_empty());
        assert!(!pending.is_ready() && !pending.backs_off());
    }

    #[test]
    fn failures_count_attempts_and_restart_on_changes_or_success() {
        let failure = failed(ConnectorReason::OktaUnreachable, true);
        let pending = Outcome::RetryPending {
            reason: ConnectorReason::OktaUnreachable,
            retry_at: at(1),
        };
        assert_eq!(failures_after(0, &failure, false), 1);
        assert_eq!(failures_after(3, &failure, false), 4);
        assert_eq!(failures_after(3, &failure, true), 1);
        assert_eq!(failures_after(3, &pending, false), 3);
        assert_eq!(failures_after(u32::MAX, &failure, false), u32::MAX);
        for other in [
            Outcome::UpToDate,
            Outcome::Synced(report(10)),
            Outcome::Suspended,
            Outcome::SecretNotFound { secret: "s".into() },
        ] {
            assert_eq!(failures_after(3, &other, false), 0, "{other:?}");
        }
        for reason in BACKOFF_REASONS {
            assert!(failed(reason, false).backs_off());
        }
        assert!(!Outcome::Suspended.backs_off() && !Outcome::UpToDate.backs_off());
    }

    #[test]
    fn a_successful_sync_sets_every_condition_true_and_the_figures() {
        let s = synced_status(1000, 4);
        assert_eq!(cond(&s, ConditionType::Ready), pair("True", "Synced"));
        assert_eq!(
            cond(&s, ConditionType::CredentialsValid),
            pair("True", "Synced")
        );
        assert_eq!(cond(&s, ConditionType::Synced), pair("True", "Synced"));
        assert_eq!(s.observed_generation, Some(4));
        assert_eq!(s.last_successful_sync_time, Some(Time(at(1000))));
        assert_eq!(s.last_sync_time, Some(Time(at(1000))), "when it finished");
        assert_eq!(s.counts.as_ref().unwrap().users, 3);
        assert_eq!(s.okta.as_ref().unwrap().requests, 9);
        // Re-deciding an up-to-date connector changes nothing (no status write).
        let again = next_status(Some(&s), &Outcome::UpToDate, Some(4), None, at(2000));
        assert_eq!(again, s);
    }

    #[test]
    fn secret_problems_touch_only_credentials_and_ready() {
        let ok = synced_status(1000, 1);
        for outcome in [
            Outcome::SecretNotFound {
                secret: "okta".into(),
            },
            Outcome::SecretKeyMissing {
                secret: "okta".into(),
                key: "apiToken".into(),
            },
            Outcome::InvalidKey {
                secret: "okta".into(),
                key: "privateKey".into(),
                message: "the private key is neither PEM nor a JSON Web Key".into(),
            },
        ] {
            let s = next_status(Some(&ok), &outcome, Some(1), None, at(2000));
            let reason = outcome.reason().as_str();
            assert_eq!(
                cond(&s, ConditionType::CredentialsValid),
                pair("False", reason)
            );
            assert_eq!(cond(&s, ConditionType::Ready), pair("False", reason));
            assert_eq!(cond(&s, ConditionType::Synced), pair("True", "Synced"));
            assert_eq!(s.counts, ok.counts);
            assert_eq!(s.last_successful_sync_time, ok.last_successful_sync_time);
            assert_eq!(s.next_sync_time, None);
        }
    }

    #[test]
    fn a_missing_scope_mid_sync_marks_the_credentials_invalid() {
        let ok = synced_status(1000, 1);
        let s = next_status(
            Some(&ok),
            &failed(ConnectorReason::InsufficientScope, true),
            Some(1),
            None,
            at(2000),
        );
        for type_ in [
            ConditionType::CredentialsValid,
            ConditionType::Synced,
            ConditionType::Ready,
        ] {
            assert_eq!(
                cond(&s, type_),
                pair("False", "InsufficientScope"),
                "{type_}"
            );
        }
    }

    #[test]
    fn okta_failures_set_the_conditions_their_stage_speaks_for() {
        let ok = synced_status(1000, 1);
        let s = next_status(
            Some(&ok),
            &failed(ConnectorReason::Unauthorized, false),
            Some(1),
            None,
            at(2000),
        );
        assert_eq!(
            cond(&s, ConditionType::CredentialsValid),
            pair("False", "Unauthorized")
        );
        assert_eq!(
            cond(&s, ConditionType::Ready),
            pair("False", "Unauthorized")
        );
        assert_eq!(cond(&s, ConditionType::Synced), pair("True", "Synced"));

        let s = next_status(
            Some(&ok),
            &failed(ConnectorReason::OktaUnreachable, false),
            Some(1),
            None,
            at(2000),
        );
        assert_eq!(
            cond(&s, ConditionType::CredentialsValid),
            pair("Unknown", "OktaUnreachable"),
            "an unanswered check leaves the token to be checked again"
        );
        assert_eq!(cond(&s, ConditionType::Synced), pair("True", "Synced"));

        let s = next_status(
            Some(&ok),
            &failed(ConnectorReason::RateLimited, true),
            Some(1),
            Some(at(2005)),
            at(2000),
        );
        assert_eq!(
            cond(&s, ConditionType::CredentialsValid),
            pair("True", "Synced")
        );
        assert_eq!(
            cond(&s, ConditionType::Synced),
            pair("False", "RateLimited")
        );
        assert_eq!(cond(&s, ConditionType::Ready), pair("False", "RateLimited"));
        assert_eq!(
            s.last_sync_time,
            Some(Time(at(102))),
            "when the failed sync finished"
        );
        assert_eq!(s.last_successful_sync_time, ok.last_successful_sync_time);
        assert_eq!(s.next_sync_time, Some(Time(at(2005))));

        let s = next_status(
            None,
            &failed(ConnectorReason::Forbidden, true),
            Some(1),
            None,
            at(2000),
        );
        assert_eq!(
            cond(&s, ConditionType::CredentialsValid),
            pair("False", "Forbidden")
        );
        assert_eq!(cond(&s, ConditionType::Synced), pair("False", "Forbidden"));
    }

    #[test]
    fn invalid_spec_and_suspension_only_change_ready() {
        let ok = synced_status(1000, 1);
        let s = next_status(
            Some(&ok),
            &Outcome::InvalidSpec {
                message: "domain is bad".into(),
            },
            Some(2),
            None,
            at(2000),
        );
        assert_eq!(cond(&s, ConditionType::Ready), pair("False", "InvalidSpec"));
        assert_eq!(
            cond(&s, ConditionType::CredentialsValid),
            pair("True", "Synced")
        );
        assert_eq!(s.observed_generation, Some(2));
        let s = next_status(Some(&ok), &Outcome::Suspended, Some(2), None, at(2000));
        assert_eq!(cond(&s, ConditionType::Ready), pair("False", "Suspended"));
        assert_eq!(cond(&s, ConditionType::Synced), pair("True", "Synced"));
        assert_eq!(s.counts, ok.counts, "suspending deletes nothing");
    }

    fn reasons(events: &[PlannedEvent]) -> Vec<(EventKind, &str)> {
        events.iter().map(|e| (e.kind, e.reason.as_str())).collect()
    }

    #[test]
    fn periodic_successful_syncs_emit_no_event() {
        let ok = synced_status(1000, 1);
        assert!(
            plan_events(
                Some(&ok),
                &Outcome::Synced(report(5000)),
                Some(1),
                UNCHANGED
            )
            .is_empty()
        );
        assert!(plan_events(Some(&ok), &Outcome::UpToDate, Some(1), UNCHANGED).is_empty());
        assert!(plan_events(None, &Outcome::Synced(report(5000)), Some(1), UNCHANGED).is_empty());
    }

    #[test]
    fn failures_warn_once_per_reason_and_recoveries_are_announced() {
        let ok = synced_status(1000, 1);
        let outcome = failed(ConnectorReason::OktaUnreachable, false);
        let events = plan_events(Some(&ok), &outcome, Some(1), UNCHANGED);
        assert_eq!(reasons(&events), [(EventKind::Warning, "OktaUnreachable")]);
        assert_eq!(events[0].action, "CheckCredentials");
        let down = next_status(Some(&ok), &outcome, Some(1), None, at(2000));
        assert!(plan_events(Some(&down), &outcome, Some(1), UNCHANGED).is_empty());
        let sync_failed = failed(ConnectorReason::SyncFailed, true);
        let events = plan_events(Some(&down), &sync_failed, Some(1), UNCHANGED);
        assert_eq!(reasons(&events), [(EventKind::Warning, "SyncFailed")]);
        assert_eq!(events[0].action, "Sync");
        let events = plan_events(
            Some(&down),
            &Outcome::Synced(report(3000)),
            Some(1),
            UNCHANGED,
        );
        assert_eq!(reasons(&events), [(EventKind::Normal, "Recovered")]);
    }

    #[test]
    fn invalid_spec_warns_again_for_each_new_generation_only() {
        let bad = Outcome::InvalidSpec {
            message: "bad".into(),
        };
        let events = plan_events(None, &bad, Some(1), UNCHANGED);
        assert_eq!(reasons(&events), [(EventKind::Warning, "InvalidSpec")]);
        let s = next_status(None, &bad, Some(1), None, at(1));
        assert!(plan_events(Some(&s), &bad, Some(1), UNCHANGED).is_empty());
        assert_eq!(plan_events(Some(&s), &bad, Some(2), UNCHANGED).len(), 1);
    }

    #[test]
    fn credential_changes_are_announced_unless_rejected() {
        let s = next_status(
            None,
            &failed(ConnectorReason::Unauthorized, false),
            Some(1),
            None,
            at(1),
        );
        let events = plan_events(Some(&s), &Outcome::Synced(report(50)), Some(1), TOKEN);
        assert_eq!(
            reasons(&events),
            [
                (EventKind::Normal, "CredentialsChanged"),
                (EventKind::Normal, "Recovered")
            ]
        );
        let ok = synced_status(1000, 1);
        let rejected = failed(ConnectorReason::Unauthorized, false);
        let events = plan_events(Some(&ok), &rejected, Some(1), TOKEN);
        assert_eq!(reasons(&events), [(EventKind::Warning, "Unauthorized")]);
    }

    #[test]
    fn client_change_events_say_what_changed() {
        let ok = synced_status(1000, 1);
        let synced = Outcome::Synced(report(2000));
        let note = |change: SettingsChange| {
            let events = plan_events(Some(&ok), &synced, Some(2), change);
            assert_eq!(events.len(), 1, "{events:?}");
            (events[0].reason.clone(), events[0].note.clone())
        };
        let (reason, text) = note(TOKEN);
        assert_eq!(reason, "CredentialsChanged");
        assert!(
            text.starts_with("The credentials (API token or OAuth app) changed"),
            "{text}"
        );
        let (_, text) = note(SettingsChange {
            domain: true,
            ..UNCHANGED
        });
        assert!(text.starts_with("The org domain changed"), "{text}");
        let (_, text) = note(SettingsChange {
            domain: true,
            rate_limits: true,
            ..TOKEN
        });
        assert!(text.contains("OAuth app) and the org domain"), "{text}");
        assert!(text.contains("rate limits"), "{text}");
        // Only the rate limits: not a credential change.
        let rate_limits = SettingsChange {
            rate_limits: true,
            ..UNCHANGED
        };
        let (reason, text) = note(rate_limits);
        assert_eq!(reason, "RateLimitsChanged");
        assert!(
            text.contains("rateLimit") && text.contains("unchanged"),
            "{text}"
        );
        let invalid = Outcome::InvalidSpec {
            message: "bad".into(),
        };
        assert_eq!(
            reasons(&plan_events(Some(&ok), &invalid, Some(2), rate_limits)),
            [(EventKind::Warning, "InvalidSpec")]
        );
    }

    #[test]
    fn a_shrunken_snapshot_keeps_the_last_good_counts_and_warns_once() {
        let good = synced_status(1000, 1);
        let shrank = Outcome::SnapshotShrank {
            message: "the sync saw 0 users against 3".into(),
            finished_at: at(2000),
            duration_seconds: 4.0,
        };
        assert!(!shrank.is_ready() && shrank.serves_index() && !shrank.backs_off());
        assert_eq!(
            next_attempt(&shrank, Some(at(1000)), HOUR, 0, at(2000)),
            Some(at(2000 + 3600))
        );
        let s = next_status(Some(&good), &shrank, Some(1), None, at(2000));
        assert_eq!(
            cond(&s, ConditionType::Ready),
            pair("False", "SnapshotShrank")
        );
        assert_eq!(
            cond(&s, ConditionType::Synced),
            pair("False", "SnapshotShrank")
        );
        assert_eq!(
            cond(&s, ConditionType::CredentialsValid),
            pair("True", "Synced")
        );
        assert_eq!(s.counts, good.counts, "the baseline stays");
        assert_eq!(s.last_successful_sync_time, good.last_successful_sync_time);
        assert_eq!(s.last_sync_time, Some(Time(at(2000))));
        let events = plan_events(Some(&good), &shrank, Some(1), UNCHANGED);
        assert_eq!(reasons(&events), [(EventKind::Warning, "SnapshotShrank")]);
        assert!(plan_events(Some(&s), &shrank, Some(1), UNCHANGED).is_empty());
        let recovered = plan_events(Some(&s), &Outcome::Synced(report(3000)), Some(1), UNCHANGED);
        assert_eq!(reasons(&recovered), [(EventKind::Normal, "Recovered")]);
    }

    #[test]
    fn change_events_are_one_per_change_up_to_the_limit_then_summarised() {
        use crate::sync::changes::{GrantChange, diff};
        let old = Snapshot::empty_for_tests("acme.okta.com", &["example.com"]);
        let changes = diff(old.access(), old.access(), &|_| None);
        assert!(change_events(&changes, 3).is_empty());
        let mut changes = changes;
        changes.grants_added = (0..5)
            .map(|i| GrantChange {
                grant: Grant::membership(format!("u{i}"), "g1"),
                by: None,
            })
            .collect();
        let few = change_events(&changes, 5);
        assert_eq!(few.len(), 5);
        assert!(
            few.iter()
                .all(|e| e.reason == "AccessChanged" && e.kind == EventKind::Normal)
        );
        assert_eq!(few[0].note, "+ membership user u0 in g1");
        let many = change_events(&changes, 3);
        assert_eq!(many.len(), 3);
        assert_eq!(many[1].note, "+ membership user u1 in g1");
        assert_eq!(
            many[2].note,
            "3 more changes since 2026-01-01T00:00:00Z (in all: users +0 -0, groups +0 -0, \
             memberships +5 -0, role grants +0 -0)"
        );
    }

    #[test]
    fn suspension_is_announced_and_resuming_is_not_a_recovery() {
        let ok = synced_status(1000, 1);
        let events = plan_events(Some(&ok), &Outcome::Suspended, Some(2), UNCHANGED);
        assert_eq!(reasons(&events), [(EventKind::Normal, "Suspended")]);
        let suspended = next_status(Some(&ok), &Outcome::Suspended, Some(2), None, at(2000));
        assert!(
            plan_events(
                Some(&suspended),
                &Outcome::Synced(report(3000)),
                Some(3),
                UNCHANGED
            )
            .is_empty()
        );
    }

    #[test]
    fn counts_split_memberships_from_role_assignments() {
        let json = serde_json::json!({
            "domain": "d", "syncedAt": "2026-01-01T00:00:00Z", "emailDomains": ["example.com"],
            "users": [
                {"id": "u1", "login": "a@example.com", "status": "ACTIVE", "disabled": false, "displayName": "A"},
                {"id": "u2", "login": "b@example.com", "status": "ACTIVE", "disabled": false, "displayName": "B"}
            ],
            "groups": [{"id": "g1", "name": "G", "type": "OKTA_GROUP", "memberCount": 2}],
            "roles": [{"type": "ORG_ADMIN", "label": "Org Admin"}],
            "customRoles": [], "grants": [], "notes": [],
            "stats": {"requests": 7, "requestsByEndpoint": {}, "rateLimited": 1, "retries": 2,
                      "rateLimitWaitSeconds": 0.0, "durationSeconds": 0.0, "requestFloor": 0}
        });
        let mut snapshot: Snapshot = serde_json::from_value(json).unwrap();
        snapshot.grants = vec![
            Grant::membership("u1", "g1"),
            Grant::membership("u2", "g1"),
            Grant {
                kind: GrantKind::RoleAssignment,
                ..Grant::membership("u1", "ORG_ADMIN")
            },
        ];
        let c = counts(&snapshot);
        assert_eq!(
            (
                c.users,
                c.groups,
                c.roles,
                c.custom_roles,
                c.group_memberships,
                c.role_assignments
            ),
            (2, 1, 1, 0, 2, 1)
        );
        let o = okta_stats(&snapshot);
        assert_eq!((o.requests, o.rate_limited, o.retries), (7, 1, 2));
    }
}
