//! Prometheus metrics of the operator, one registry per process.
//!
//! Everything the reconcilers and the Okta client report goes through [`Metrics`]; the HTTP
//! server in [`super::server`] only renders [`Metrics::encode`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

use crate::okta::ClientStats;

/// Prefix of every metric name.
pub const METRIC_PREFIX: &str = "okta_ciam";

/// The outcome of one reconcile, as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReconcileResult {
    /// The reconcile finished without error.
    Success,
    /// The reconcile returned an error (and will be retried with back-off).
    Error,
}

impl ReconcileResult {
    fn as_str(self) -> &'static str {
        match self {
            ReconcileResult::Success => "success",
            ReconcileResult::Error => "error",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    kind: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FamilyLabels {
    family: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectorLabels {
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    namespace: String,
    name: String,
    /// `users`, `groups`, `memberships` or `role_grants`.
    kind: String,
    /// `added` or `removed`.
    change: String,
}

type HistogramFamily = Family<KindLabels, Histogram, fn() -> Histogram>;

fn reconcile_duration_histogram() -> Histogram {
    // 10 ms .. ~164 s: a membership reconcile is one or two Okta calls, a full sync can take
    // minutes on a large org.
    Histogram::new(exponential_buckets(0.01, 2.0, 15))
}

/// The operator's metrics. Cheap to clone; every clone updates the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_duration: HistogramFamily,
    okta_requests: Family<FamilyLabels, Counter>,
    okta_responses: Family<StatusLabels, Counter>,
    rate_limited: Counter,
    rate_limit_wait_seconds: Counter<f64, AtomicU64>,
    last_successful_sync: Family<ConnectorLabels, Gauge<f64, AtomicU64>>,
    managed_memberships: Gauge,
    access_changes: Family<ChangeLabels, Counter>,
    revocations_held: Family<ConnectorLabels, Gauge>,
    ownership_grants_lost: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Creates a registry with every metric registered (and no samples yet).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(METRIC_PREFIX);
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles finished, by kind and result",
            reconciles.clone(),
        );
        let reconcile_duration: HistogramFamily =
            Family::new_with_constructor(reconcile_duration_histogram);
        registry.register_with_unit(
            "reconcile_duration",
            "Duration of reconciles, by kind",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        // The client counts requests per endpoint family and responses per status separately
        // (not crossed), so they are two metrics.
        let okta_requests = Family::<FamilyLabels, Counter>::default();
        registry.register(
            "okta_requests",
            "HTTP requests sent to Okta (retries included), by endpoint family",
            okta_requests.clone(),
        );
        let okta_responses = Family::<StatusLabels, Counter>::default();
        registry.register(
            "okta_responses",
            "HTTP responses received from Okta, by status",
            okta_responses.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "okta_rate_limited",
            "Okta 429 responses, each waited out before a retry",
            rate_limited.clone(),
        );
        let rate_limit_wait_seconds = Counter::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "okta_rate_limit_wait",
            "Time spent waiting on Okta rate limits (pacing and 429 waits)",
            Unit::Seconds,
            rate_limit_wait_seconds.clone(),
        );
        let last_successful_sync = Family::<ConnectorLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "connector_last_successful_sync_timestamp_seconds",
            "Unix time of the last successful sync, per connector",
            last_successful_sync.clone(),
        );
        let managed_memberships = Gauge::default();
        registry.register(
            "managed_memberships",
            "Okta group memberships currently managed by GroupMembership resources",
            managed_memberships.clone(),
        );
        let access_changes = Family::<ChangeLabels, Counter>::default();
        registry.register(
            "access_changes",
            "Changes seen between consecutive syncs, per connector: users and groups into or \
             out of scope, memberships and role grants added or removed",
            access_changes.clone(),
        );
        let revocations_held = Family::<ConnectorLabels, Gauge>::default();
        registry.register(
            "revocations_held",
            "Membership removals held by the connector's mass-revocation circuit breaker \
             (spec.safety.maxRevocationsPerHour) until a person releases them",
            revocations_held.clone(),
        );
        let ownership_grants_lost = Counter::default();
        registry.register(
            "ownership_grants_lost",
            "Operator grants found missing from their group's ownership record (the record \
             was deleted or restored from an old backup) and recorded again from the \
             GroupMembership's status",
            ownership_grants_lost.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                reconciles,
                reconcile_duration,
                okta_requests,
                okta_responses,
                rate_limited,
                rate_limit_wait_seconds,
                last_successful_sync,
                managed_memberships,
                access_changes,
                revocations_held,
                ownership_grants_lost,
            }),
        }
    }

    /// Counts one finished reconcile of `kind` (e.g. `OktaCiamConnector`) and records its
    /// duration.
    pub fn record_reconcile(&self, kind: &str, result: ReconcileResult, duration: Duration) {
        self.inner
            .reconciles
            .get_or_create(&ReconcileLabels {
                kind: kind.to_owned(),
                result: result.as_str().to_owned(),
            })
            .inc();
        self.inner
            .reconcile_duration
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .observe(duration.as_secs_f64());
    }

    /// Adds `count` Okta requests to endpoint `family` (e.g. `users`, `groups`).
    pub fn record_okta_requests(&self, family: &str, count: u64) {
        if count > 0 {
            self.inner
                .okta_requests
                .get_or_create(&FamilyLabels {
                    family: family.to_owned(),
                })
                .inc_by(count);
        }
    }

    /// Adds `count` Okta responses with HTTP `status`.
    pub fn record_okta_responses(&self, status: u16, count: u64) {
        if count > 0 {
            self.inner
                .okta_responses
                .get_or_create(&StatusLabels {
                    status: status.to_string(),
                })
                .inc_by(count);
        }
    }

    /// Adds `count` 429 responses and `waited` time spent on rate limits.
    pub fn record_rate_limiting(&self, count: u64, waited: Duration) {
        self.inner.rate_limited.inc_by(count);
        self.inner
            .rate_limit_wait_seconds
            .inc_by(waited.as_secs_f64());
    }

    /// Adds a client statistics *delta* (`now.since(&before)`) to the Okta metrics. Callers
    /// keep the previous snapshot per client and feed only the difference, so nothing is
    /// counted twice.
    pub fn record_client_stats(&self, delta: &ClientStats) {
        for (family, count) in &delta.requests_by_endpoint {
            self.record_okta_requests(family, *count);
        }
        for (status, count) in &delta.requests_by_status {
            self.record_okta_responses(*status, *count);
        }
        self.record_rate_limiting(delta.rate_limited, delta.rate_limit_wait);
    }

    /// Records that connector `namespace/name` finished a successful sync at `at`.
    pub fn set_last_successful_sync(&self, namespace: &str, name: &str, at: SystemTime) {
        // A clock before 1970 is not worth failing over: report 0.
        let seconds = at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.inner
            .last_successful_sync
            .get_or_create(&connector_labels(namespace, name))
            .set(seconds);
    }

    /// Adds one sync's change counts to connector `namespace/name`'s change counters.
    pub fn record_access_changes(
        &self,
        namespace: &str,
        name: &str,
        c: &crate::sync::changes::ChangeCounts,
    ) {
        for (kind, change, n) in access_change_series(c) {
            self.inner
                .access_changes
                .get_or_create(&change_labels(namespace, name, kind, change))
                .inc_by(n);
        }
    }

    /// Sets how many membership removals connector `namespace/name`'s circuit breaker holds.
    pub fn set_revocations_held(&self, namespace: &str, name: &str, held: usize) {
        self.inner
            .revocations_held
            .get_or_create(&connector_labels(namespace, name))
            .set(i64::try_from(held).unwrap_or(i64::MAX));
    }

    /// Counts operator grants found missing from their ownership record and recorded again.
    pub fn record_ownership_grants_lost(&self, count: usize) {
        self.inner.ownership_grants_lost.inc_by(count as u64);
    }

    /// Drops the per-connector series of a deleted connector so it stops being exported.
    pub fn remove_connector(&self, namespace: &str, name: &str) {
        self.inner
            .last_successful_sync
            .remove(&connector_labels(namespace, name));
        self.inner
            .revocations_held
            .remove(&connector_labels(namespace, name));
        for (kind, change, _) in access_change_series(&Default::default()) {
            self.inner
                .access_changes
                .remove(&change_labels(namespace, name, kind, change));
        }
    }

    /// Sets the number of Okta group memberships currently managed by the operator.
    pub fn set_managed_memberships(&self, count: u64) {
        self.inner
            .managed_memberships
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Renders every metric in the OpenMetrics text format (which Prometheus scrapes).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; the encoder only propagates fmt errors.
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)
            .expect("encoding metrics into a String cannot fail");
        out
    }
}

fn connector_labels(namespace: &str, name: &str) -> ConnectorLabels {
    ConnectorLabels {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

fn change_labels(namespace: &str, name: &str, kind: &str, change: &str) -> ChangeLabels {
    ChangeLabels {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        kind: kind.to_owned(),
        change: change.to_owned(),
    }
}

/// The `access_changes` series (kind, change, count) of one sync's counts.
fn access_change_series(
    c: &crate::sync::changes::ChangeCounts,
) -> [(&'static str, &'static str, u64); 8] {
    [
        ("users", "added", c.users_added),
        ("users", "removed", c.users_removed),
        ("groups", "added", c.groups_added),
        ("groups", "removed", c.groups_removed),
        ("memberships", "added", c.memberships_added),
        ("memberships", "removed", c.memberships_removed),
        ("role_grants", "added", c.roles_added),
        ("role_grants", "removed", c.roles_removed),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_with<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn reconciles_are_counted_by_kind_and_result() {
        let m = Metrics::new();
        m.record_reconcile(
            "GroupMembership",
            ReconcileResult::Success,
            Duration::from_millis(30),
        );
        m.record_reconcile(
            "GroupMembership",
            ReconcileResult::Success,
            Duration::from_millis(5),
        );
        m.record_reconcile(
            "GroupMembership",
            ReconcileResult::Error,
            Duration::from_secs(1),
        );
        let text = m.encode();
        assert_eq!(
            line_with(
                &text,
                r#"okta_ciam_reconciles_total{kind="GroupMembership",result="success"}"#
            ),
            Some(r#"okta_ciam_reconciles_total{kind="GroupMembership",result="success"} 2"#)
        );
        assert!(
            text.contains(r#"okta_ciam_reconciles_total{kind="GroupMembership",result="error"} 1"#)
        );
        assert!(
            text.contains(
                r#"okta_ciam_reconcile_duration_seconds_count{kind="GroupMembership"} 3"#
            ),
            "{text}"
        );
    }

    #[test]
    fn client_stats_deltas_accumulate_and_zeroes_add_no_series() {
        let m = Metrics::new();
        let mut delta = ClientStats::default();
        delta.requests_by_endpoint.insert("users".into(), 3);
        delta.requests_by_endpoint.insert("groups".into(), 0);
        delta.requests_by_status.insert(200, 2);
        delta.requests_by_status.insert(429, 1);
        delta.rate_limited = 1;
        delta.rate_limit_wait = Duration::from_millis(1500);
        m.record_client_stats(&delta);
        m.record_client_stats(&delta);
        let text = m.encode();
        assert!(
            text.contains(r#"okta_ciam_okta_requests_total{family="users"} 6"#),
            "{text}"
        );
        assert!(!text.contains(r#"family="groups""#), "{text}");
        assert!(
            text.contains(r#"okta_ciam_okta_responses_total{status="200"} 4"#),
            "{text}"
        );
        assert!(
            text.contains(r#"okta_ciam_okta_responses_total{status="429"} 2"#),
            "{text}"
        );
        assert!(
            text.contains("okta_ciam_okta_rate_limited_total 2"),
            "{text}"
        );
        assert!(
            text.contains("okta_ciam_okta_rate_limit_wait_seconds_total 3.0"),
            "{text}"
        );
    }

    #[test]
    fn connector_series_are_removed_on_deletion() {
        let m = Metrics::new();
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        m.set_last_successful_sync("team-a", "corp", at);
        m.set_last_successful_sync("team-b", "corp", at);
        let text = m.encode();
        assert!(text.contains(
            r#"okta_ciam_connector_last_successful_sync_timestamp_seconds{namespace="team-a",name="corp"} 1700000000"#
        ), "{text}");
        m.remove_connector("team-a", "corp");
        let text = m.encode();
        assert!(!text.contains(r#"namespace="team-a""#));
        assert!(text.contains(r#"namespace="team-b""#));
    }

    #[test]
    fn memberships_are_exported() {
        let m = Metrics::new();
        m.set_managed_memberships(42);
        let text = m.encode();
        assert!(text.contains("okta_ciam_managed_memberships 42"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
