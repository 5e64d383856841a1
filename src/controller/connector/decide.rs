//! Pure decisions of the connector reconciler: what an outcome means for the status, when the
//! next sync is due, how long to back off, and which Events to emit. No I/O here.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::crd::condition::{find_condition, is_true, new_condition, set_condition};
use crate::crd::{
    ConditionStatus, ConditionType, ConnectorReason, ConnectorStatus, OktaRequestStats,
    RateLimitSpec, SyncCounts,
};
use crate::okta::ClientOptions;
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
    /// An Okta call failed: the credential check (`sync_started` is `None`) or the sync.
    OktaFailed {
        /// One of `Unauthorized`, `Forbidden`, `OktaUnreachable`, `RateLimited`, `SyncFailed`.
        reason: ConnectorReason,
        /// What Okta or the transport said (never the token).
        message: String,
        /// When the failed sync started, and how long it ran.
        sync_started: Option<(Timestamp, f64)>,
    },
    /// A sync finished.
    Synced(SyncReport),
    /// Credentials are valid and no sync was due.
    UpToDate,
}

/// The figures of a successful sync.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncReport {
    /// When the sync started.
    pub started_at: Timestamp,
    /// When it finished.
    pub finished_at: Timestamp,
    /// Wall time in seconds.
    pub duration_seconds: f64,
    /// Objects in the snapshot.
    pub counts: SyncCounts,
    /// Okta request counters of the sync.
    pub okta: OktaRequestStats,
}

impl Outcome {
    /// The reason written to `Ready`.
    pub fn reason(&self) -> ConnectorReason {
        match self {
            Outcome::InvalidSpec { .. } => ConnectorReason::InvalidSpec,
            Outcome::Suspended => ConnectorReason::Suspended,
            Outcome::SecretNotFound { .. } => ConnectorReason::SecretNotFound,
            Outcome::SecretKeyMissing { .. } => ConnectorReason::SecretKeyMissing,
            Outcome::OktaFailed { reason, .. } => *reason,
            Outcome::Synced(_) | Outcome::UpToDate => ConnectorReason::Synced,
        }
    }

    /// Whether the connector is ready to serve the membership reconciler.
    pub fn is_ready(&self) -> bool {
        matches!(self, Outcome::Synced(_) | Outcome::UpToDate)
    }

    /// Whether waiting and retrying alone may fix it (back off, do not wait for a change).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Outcome::OktaFailed {
                reason: ConnectorReason::OktaUnreachable | ConnectorReason::RateLimited,
                ..
            }
        )
    }
}

/// Maps a failed Okta call to the reason shown to users.
pub fn classify_okta(err: &crate::okta::Error) -> ConnectorReason {
    use crate::okta::Error as E;
    match err {
        E::Unauthorized(_) => ConnectorReason::Unauthorized,
        E::Forbidden(_) => ConnectorReason::Forbidden,
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

/// Whether a sync must run now: the credentials changed, the spec changed since the last
/// status, the last sync did not succeed, or the interval has elapsed since the last success.
pub fn sync_due(
    status: Option<&ConnectorStatus>,
    generation: Option<i64>,
    interval: Duration,
    now: Timestamp,
    credentials_changed: bool,
) -> bool {
    let Some(status) = status else { return true };
    let Some(last) = status.last_successful_sync_time.as_ref() else {
        return true;
    };
    credentials_changed
        || status.observed_generation != generation
        || !is_true(&status.conditions, ConditionType::Synced)
        || add(last.0, interval) <= now
}

/// Delay before retry number `failures` (1-based) after transient failures, doubling up to
/// [`BACKOFF_CAP`].
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    BACKOFF_BASE
        .saturating_mul(1u32 << exponent)
        .min(BACKOFF_CAP)
}

/// When the reconciler next acts on its own (`None`: only on a change of the connector or
/// its Secret). After a success, one interval after the last successful sync; after a
/// transient failure, after the back-off; after a permanent Okta failure, one interval later
/// (someone may fix the token or its permissions in Okta, which no watch can see).
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
        | Outcome::SecretKeyMissing { .. } => None,
        Outcome::OktaFailed { .. } if outcome.is_transient() => Some(add(now, backoff(failures))),
        Outcome::OktaFailed { .. } => Some(add(now, interval)),
        Outcome::Synced(report) => Some(add(report.finished_at, interval)),
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
    status.observed_generation = generation;
    status.next_sync_time = next_attempt.map(Time);
    let reason = outcome.reason();
    let synced_message = find_condition(&status.conditions, ConditionType::Synced)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let mut set = |type_: ConditionType, holds: bool, reason: ConnectorReason, message: String| {
        set_condition(
            &mut status.conditions,
            new_condition(
                type_,
                ConditionStatus::from(holds),
                reason.as_str(),
                message,
                generation,
                Time(now),
            ),
        );
    };
    let credentials_ok = || "Okta accepted the API token".to_owned();
    match outcome {
        Outcome::InvalidSpec { message } => {
            set(ConditionType::Ready, false, reason, message.clone());
        }
        Outcome::Suspended => set(
            ConditionType::Ready,
            false,
            reason,
            "spec.suspend is true: nothing is synced or provisioned".to_owned(),
        ),
        Outcome::SecretNotFound { secret } => {
            let message = format!("Secret {secret:?} not found in the connector's namespace");
            set(ConditionType::CredentialsValid, false, reason, message.clone());
            set(ConditionType::Ready, false, reason, message);
        }
        Outcome::SecretKeyMissing { secret, key } => {
            let message = format!("Secret {secret:?} has no non-empty key {key:?}");
            set(ConditionType::CredentialsValid, false, reason, message.clone());
            set(ConditionType::Ready, false, reason, message);
        }
        Outcome::OktaFailed {
            reason,
            message,
            sync_started,
        } => {
            let credential_problem = matches!(
                reason,
                ConnectorReason::Unauthorized | ConnectorReason::Forbidden
            );
            if credential_problem {
                set(ConditionType::CredentialsValid, false, *reason, message.clone());
            }
            if let Some((started, duration)) = sync_started {
                if !credential_problem {
                    // The sync got past the credential check, so the token works.
                    set(
                        ConditionType::CredentialsValid,
                        true,
                        ConnectorReason::Synced,
                        credentials_ok(),
                    );
                }
                set(ConditionType::Synced, false, *reason, message.clone());
                status.last_sync_time = Some(Time(*started));
                status.last_sync_duration_seconds = Some(*duration);
            }
            set(ConditionType::Ready, false, *reason, message.clone());
        }
        Outcome::Synced(report) => {
            let message = format!(
                "Synced {} users and {} groups",
                report.counts.users, report.counts.groups
            );
            set(
                ConditionType::CredentialsValid,
                true,
                reason,
                credentials_ok(),
            );
            set(ConditionType::Synced, true, reason, message.clone());
            set(ConditionType::Ready, true, reason, message);
            status.last_sync_time = Some(Time(report.started_at));
            status.last_successful_sync_time = Some(Time(report.finished_at));
            status.last_sync_duration_seconds = Some(report.duration_seconds);
            status.counts = Some(report.counts.clone());
            status.okta = Some(report.okta.clone());
        }
        Outcome::UpToDate => {
            let message = synced_message;
            set(
                ConditionType::CredentialsValid,
                true,
                reason,
                credentials_ok(),
            );
            set(ConditionType::Ready, true, reason, message);
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
/// `CredentialsChanged` when a new token or domain was accepted, `Recovered` when a failure
/// ends, `Suspended` when suspension starts. Nothing for a periodic sync that keeps working.
pub fn plan_events(
    previous: Option<&ConnectorStatus>,
    outcome: &Outcome,
    generation: Option<i64>,
    credentials_changed: bool,
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
            reason: ConnectorReason::Unauthorized | ConnectorReason::Forbidden,
            ..
        }
    );
    if credentials_changed && !credentials_failed && !matches!(outcome, Outcome::InvalidSpec { .. })
    {
        events.push(PlannedEvent {
            kind: EventKind::Normal,
            reason: "CredentialsChanged".to_owned(),
            action: "CheckCredentials",
            note: "The API token or domain changed and Okta accepted the new credentials"
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
            note: format!(
                "Ready again after {}",
                prev_reason.unwrap_or("a failure")
            ),
        });
    }
    events
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
