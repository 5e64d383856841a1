//! Leader election on a `coordination.k8s.io/v1` Lease.
//!
//! One replica at a time holds the Lease and reconciles; the others wait. The rules follow
//! client-go's lease lock:
//! - expiry is judged on the *local* clock from the moment a replica first saw the current
//!   version of the Lease, never by comparing `renewTime` with the local clock, so clock skew
//!   between nodes cannot make two replicas lead;
//! - the leader renews every `retry_period`; if it has not renewed successfully within
//!   `renew_deadline` (counted from the moment its last successful write was *sent*) it steps
//!   down. Because `renew_deadline < lease_duration`, it stops before any other replica can
//!   consider the Lease expired;
//! - every write carries the `resourceVersion` it was decided on, so a 409 means somebody
//!   else wrote first: re-read and decide again;
//! - on shutdown the leader clears `holderIdentity` so another replica takes over at once.
//!
//! The decision itself is the pure [`decide`]; [`LeaderElector`] does the I/O around it.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Error, Result};

/// How a replica takes part in the election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseSettings {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity, written to `holderIdentity`; unique per process.
    pub identity: String,
    /// How long a Lease stays valid after its last renewal (`leaseDurationSeconds`).
    pub lease_duration: Duration,
    /// How long the leader keeps acting without a successful renewal; shorter than
    /// `lease_duration` so the leader stops before others could take over.
    pub renew_deadline: Duration,
    /// Time between attempts, both renewing and waiting to acquire.
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// Client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry period.
    pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
    /// See [`LeaseSettings::DEFAULT_LEASE_DURATION`].
    pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
    /// See [`LeaseSettings::DEFAULT_LEASE_DURATION`].
    pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);

    /// Checks the timing invariants the safety argument rests on.
    pub fn validate(&self) -> Result<()> {
        let fail = |why: &str| Err(Error::InvalidArgs(format!("leader election: {why}")));
        if self.identity.is_empty() {
            return fail("identity must not be empty");
        }
        if self.namespace.is_empty() || self.name.is_empty() {
            return fail("lease namespace and name must not be empty");
        }
        if self.lease_duration < Duration::from_secs(1) || self.lease_duration.subsec_nanos() != 0 {
            return fail("lease duration must be a whole number of seconds, at least 1s");
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return fail("retry period must be positive and shorter than the renew deadline");
        }
        if self.renew_deadline >= self.lease_duration {
            return fail("renew deadline must be shorter than the lease duration");
        }
        Ok(())
    }

    fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// The parts of a Lease the decision looks at.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LeaseRecord {
    /// `spec.holderIdentity`; `None` or empty when released.
    pub holder: Option<String>,
    /// `spec.leaseDurationSeconds`, when set.
    pub lease_duration: Option<Duration>,
}

impl LeaseRecord {
    /// Extracts the record from a Lease object.
    pub fn from_lease(lease: &Lease) -> Self {
        let spec = lease.spec.as_ref();
        LeaseRecord {
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty()),
            lease_duration: spec
                .and_then(|s| s.lease_duration_seconds)
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs),
        }
    }
}

/// What a replica should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The Lease does not exist, was released or has expired: take it.
    Acquire,
    /// The Lease names this replica: renew it.
    Renew,
    /// Another replica holds a live Lease: wait and look again.
    Follow,
    /// This replica was leading but the Lease now names another holder: stop at once.
    Lost,
}

/// Decides from the current Lease (`None` when it does not exist), the local instant at which
/// this version of it was first seen, the current instant, this replica's identity and whether
/// it currently leads. `default_duration` applies when the Lease has no duration.
pub fn decide(
    record: Option<&LeaseRecord>,
    observed_at: Instant,
    now: Instant,
    identity: &str,
    leading: bool,
    default_duration: Duration,
) -> Decision {
    let Some(record) = record else {
        return if leading {
            // Somebody deleted the Lease under us: we cannot know who acts now.
            Decision::Lost
        } else {
            Decision::Acquire
        };
    };
    match record.holder.as_deref() {
        None => {
            if leading {
                Decision::Lost
            } else {
                Decision::Acquire
            }
        }
        Some(holder) if holder == identity => Decision::Renew,
        Some(_) if leading => Decision::Lost,
        Some(_) => {
            let duration = record.lease_duration.unwrap_or(default_duration);
            if now >= observed_at + duration {
                Decision::Acquire
            } else {
                Decision::Follow
            }
        }
    }
}

/// The local instant at which the current version of the Lease was first seen.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Observed {
    resource_version: Option<String>,
    at: Instant,
}

impl Observed {
    /// Keeps the old instant while the version is unchanged, so a Lease nobody renews expires.
    fn update(
        previous: Option<Observed>,
        resource_version: Option<&str>,
        now: Instant,
    ) -> Observed {
        match previous {
            Some(prev) if prev.resource_version.as_deref() == resource_version => prev,
            _ => Observed {
                resource_version: resource_version.map(str::to_owned),
                at: now,
            },
        }
    }
}

/// What controllers see of the election: whether this replica leads, and a token cancelled as
/// soon as the current leadership term ends (lost, not renewed in time, or shutdown).
#[derive(Clone, Debug)]
pub struct Leadership {
    is_leader: watch::Receiver<bool>,
    term: watch::Receiver<Option<CancellationToken>>,
    shutdown: CancellationToken,
}

/// The writing side of [`Leadership`]. Clones share the same channels.
#[derive(Clone, Debug)]
struct LeadershipPublisher {
    inner: Arc<PublisherInner>,
}

#[derive(Debug)]
struct PublisherInner {
    is_leader: watch::Sender<bool>,
    term: watch::Sender<Option<CancellationToken>>,
    shutdown: CancellationToken,
}

impl LeadershipPublisher {
    /// Creates the channels and a task that ends the term the moment `shutdown` is cancelled,
    /// so "is leader" turns false at shutdown even while the Lease is still held for release.
    /// Must be called inside a Tokio runtime.
    fn new(shutdown: CancellationToken) -> (Self, Leadership) {
        let (is_leader, is_leader_rx) = watch::channel(false);
        let (term, term_rx) = watch::channel(None);
        let publisher = LeadershipPublisher {
            inner: Arc::new(PublisherInner {
                is_leader,
                term,
                shutdown: shutdown.clone(),
            }),
        };
        let on_shutdown = publisher.clone();
        tokio::spawn(async move {
            on_shutdown.inner.shutdown.cancelled().await;
            on_shutdown.end_term();
        });
        (
            publisher,
            Leadership {
                is_leader: is_leader_rx,
                term: term_rx,
                shutdown,
            },
        )
    }

    fn leading(&self) -> bool {
        *self.inner.is_leader.borrow()
    }

    /// Starts a term unless one is running or shutdown has begun; returns whether it started.
    fn start_term(&self) -> bool {
        if self.leading() || self.inner.shutdown.is_cancelled() {
            return false;
        }
        // A term never outlives shutdown: cancelling the shutdown token ends it too.
        self.inner
            .term
            .send_replace(Some(self.inner.shutdown.child_token()));
        self.inner.is_leader.send_replace(true);
        true
    }

    fn end_term(&self) {
        // Cancel first so writers stop before anyone reads "not leader".
        if let Some(token) = self.inner.term.send_replace(None) {
            token.cancel();
        }
        self.inner.is_leader.send_replace(false);
    }
}

impl Leadership {
    /// Leadership without an election: leads from now until `shutdown` is cancelled. Used when
    /// `--leader-elect` is off (a single replica). Must be called inside a Tokio runtime.
    pub fn always(shutdown: &CancellationToken) -> Leadership {
        let (publisher, leadership) = LeadershipPublisher::new(shutdown.clone());
        publisher.start_term();
        leadership
    }

    /// Whether this replica leads right now.
    pub fn is_leader(&self) -> bool {
        *self.is_leader.borrow()
    }

    /// A receiver of "is leader" changes.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.is_leader.clone()
    }

    /// The token of the current term, if leading. It is cancelled the moment the term ends;
    /// writers check it (or select on `cancelled()`) before and during every write.
    pub fn current_term(&self) -> Option<CancellationToken> {
        self.term.borrow().clone().filter(|t| !t.is_cancelled())
    }

    /// Waits until this replica leads and returns the term's token, or `None` once shutdown
    /// has begun (or the election is gone) without this replica leading.
    pub async fn acquired(&self) -> Option<CancellationToken> {
        let mut term = self.term.clone();
        loop {
            if self.shutdown.is_cancelled() {
                return None;
            }
            if let Some(token) = term
                .borrow_and_update()
                .clone()
                .filter(|t| !t.is_cancelled())
            {
                return Some(token);
            }
            tokio::select! {
                changed = term.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                _ = self.shutdown.cancelled() => return None,
            }
        }
    }
}

/// Runs the election loop for one replica.
pub struct LeaderElector {
    api: Api<Lease>,
    settings: LeaseSettings,
    publisher: LeadershipPublisher,
    observed: Option<Observed>,
    /// When the last successful write was sent, while leading.
    renewed_at: Option<Instant>,
}

/// Handle on a running election: the [`Leadership`] view and the means to stop it.
#[derive(Debug)]
pub struct ElectionHandle {
    leadership: Leadership,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl ElectionHandle {
    /// The leadership view controllers use.
    pub fn leadership(&self) -> Leadership {
        self.leadership.clone()
    }

    /// Stops the election: ends the current term and, if this replica holds the Lease,
    /// releases it so another replica can take over at once. Call only after the controllers
    /// have stopped writing.
    pub async fn release(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "leader election task ended abnormally");
        }
    }
}

/// Outcome of one write attempt.
enum Write {
    /// Written; carries the new `resourceVersion`.
    Done(Option<String>),
    Conflict,
}

/// How many times one round re-reads after a 409 before waiting for the next round.
const MAX_CONFLICT_RETRIES: usize = 3;

/// Bound on the release call at shutdown, so a dead API server cannot hold the process.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

impl LeaderElector {
    /// Starts the election loop in the background. `shutdown` ends every leadership term the
    /// moment it is cancelled (controllers stop writing); the Lease itself is held until
    /// [`ElectionHandle::release`].
    pub fn spawn(
        client: kube::Client,
        settings: LeaseSettings,
        shutdown: &CancellationToken,
    ) -> Result<ElectionHandle> {
        settings.validate()?;
        let (publisher, leadership) = LeadershipPublisher::new(shutdown.clone());
        let stop = CancellationToken::new();
        let elector = LeaderElector {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            publisher,
            observed: None,
            renewed_at: None,
        };
        let task = tokio::spawn(elector.run(stop.clone()));
        Ok(ElectionHandle {
            leadership,
            stop,
            task,
        })
    }

    async fn run(mut self, stop: CancellationToken) {
        tracing::info!(
            lease = %format!("{}/{}", self.settings.namespace, self.settings.name),
            identity = %self.settings.identity,
            "joining leader election"
        );
        loop {
            let round_deadline = self.step_down_deadline();
            let round = async {
                match round_deadline {
                    Some(deadline) => tokio::time::timeout_at(deadline, self.round()).await.ok(),
                    None => {
                        self.round().await;
                        Some(())
                    }
                }
            };
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                outcome = round => {
                    if outcome.is_none() {
                        tracing::warn!("lease not renewed within the renew deadline; stepping down");
                        self.step_down();
                    }
                }
            }
            // Wait for the next round, but never past the step-down deadline.
            let next = Instant::now() + self.settings.retry_period;
            let wake = match self.step_down_deadline() {
                Some(deadline) => next.min(deadline),
                None => next,
            };
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(wake) => {}
            }
            if self
                .step_down_deadline()
                .is_some_and(|d| Instant::now() >= d)
            {
                tracing::warn!("lease not renewed within the renew deadline; stepping down");
                self.step_down();
            }
        }
        self.publisher.end_term();
        match tokio::time::timeout(RELEASE_TIMEOUT, self.release_lease()).await {
            Ok(Ok(true)) => tracing::info!("released the lease"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not release the lease; it will expire"),
            Err(_) => tracing::warn!("releasing the lease timed out; it will expire"),
        }
    }

    fn step_down_deadline(&self) -> Option<Instant> {
        self.renewed_at
            .filter(|_| self.publisher.leading())
            .map(|at| at + self.settings.renew_deadline)
    }

    fn step_down(&mut self) {
        if self.publisher.leading() {
            tracing::warn!("lost leadership");
        }
        self.publisher.end_term();
        self.renewed_at = None;
    }

    /// One round: read, decide, write; re-read a bounded number of times on conflict.
    async fn round(&mut self) {
        for _ in 0..=MAX_CONFLICT_RETRIES {
            match self.attempt().await {
                Ok(true) => return,
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "leader election round failed");
                    return;
                }
            }
        }
    }

    /// Returns `Ok(false)` when a write conflicted and the round should re-read.
    async fn attempt(&mut self) -> Result<bool> {
        let current = self
            .api
            .get_opt(&self.settings.name)
            .await
            .map_err(|e| self.lease_error(e))?;
        let now = Instant::now();
        let rv = current
            .as_ref()
            .and_then(|l| l.metadata.resource_version.as_deref());
        let observed = Observed::update(self.observed.take(), rv, now);
        let observed_at = observed.at;
        self.observed = Some(observed);
        let record = current.as_ref().map(LeaseRecord::from_lease);
        let decision = decide(
            record.as_ref(),
            observed_at,
            now,
            &self.settings.identity,
            self.publisher.leading(),
            self.settings.lease_duration,
        );
        match decision {
            Decision::Follow => Ok(true),
            Decision::Lost => {
                self.step_down();
                Ok(true)
            }
            Decision::Acquire | Decision::Renew => {
                let sent_at = Instant::now();
                let desired = self.desired_lease(current.as_ref(), decision);
                match self.write(current.is_some(), &desired).await? {
                    Write::Conflict => Ok(false),
                    Write::Done(resource_version) => {
                        self.observed = Some(Observed {
                            resource_version,
                            at: sent_at,
                        });
                        self.renewed_at = Some(sent_at);
                        if self.publisher.start_term() {
                            tracing::info!(identity = %self.settings.identity, "became leader");
                        }
                        Ok(true)
                    }
                }
            }
        }
    }

    fn desired_lease(&self, current: Option<&Lease>, decision: Decision) -> Lease {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let mut lease = current.cloned().unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(self.settings.name.clone()),
                namespace: Some(self.settings.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: None,
        });
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if decision == Decision::Acquire {
            let previous = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
            if previous.is_some_and(|h| h != self.settings.identity) {
                spec.lease_transitions =
                    Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            }
            spec.lease_transitions.get_or_insert(0);
            spec.acquire_time = Some(now.clone());
        }
        spec.holder_identity = Some(self.settings.identity.clone());
        spec.lease_duration_seconds = Some(self.settings.lease_duration_seconds());
        spec.renew_time = Some(now);
        lease
    }

    async fn write(&self, exists: bool, lease: &Lease) -> Result<Write> {
        let pp = PostParams::default();
        let result = if exists {
            // `lease` carries the resourceVersion we decided on: a 409 means we lost a race.
            self.api.replace(&self.settings.name, &pp, lease).await
        } else {
            self.api.create(&pp, lease).await
        };
        match result {
            Ok(written) => Ok(Write::Done(written.metadata.resource_version)),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Write::Conflict),
            Err(e) => Err(self.lease_error(e)),
        }
    }

    /// Clears `holderIdentity` if this replica still holds the Lease. Returns whether it did.
    async fn release_lease(&mut self) -> Result<bool> {
        for _ in 0..=MAX_CONFLICT_RETRIES {
            let Some(mut lease) = self
                .api
                .get_opt(&self.settings.name)
                .await
                .map_err(|e| self.lease_error(e))?
            else {
                return Ok(false);
            };
            if LeaseRecord::from_lease(&lease).holder.as_deref()
                != Some(self.settings.identity.as_str())
            {
                return Ok(false);
            }
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = None;
            // As client-go does: a 1 s duration so stale readers also see it free almost at once.
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
            match self.write(true, &lease).await? {
                Write::Done(_) => return Ok(true),
                Write::Conflict => continue,
            }
        }
        Ok(false)
    }

    fn lease_error(&self, source: kube::Error) -> Error {
        Error::Lease {
            namespace: self.settings.namespace.clone(),
            name: self.settings.name.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "me";
    const OTHER: &str = "other";
    const DEFAULT: Duration = Duration::from_secs(15);

    fn record(holder: Option<&str>, secs: Option<u64>) -> LeaseRecord {
        LeaseRecord {
            holder: holder.map(str::to_owned),
            lease_duration: secs.map(Duration::from_secs),
        }
    }

    /// Every combination of lease state, age and current leadership, with the expected answer.
    #[test]
    fn decision_table() {
        let t0 = Instant::now();
        let fresh = t0 + Duration::from_secs(3);
        let expired = t0 + Duration::from_secs(15);
        let cases: Vec<(Option<LeaseRecord>, Instant, bool, Decision)> = vec![
            // No Lease object.
            (None, fresh, false, Decision::Acquire),
            (None, fresh, true, Decision::Lost),
            // Released Lease (no holder).
            (
                Some(record(None, Some(15))),
                fresh,
                false,
                Decision::Acquire,
            ),
            (Some(record(None, Some(15))), fresh, true, Decision::Lost),
            // Held by us: renew whether or not we think we lead, fresh or not.
            (
                Some(record(Some(ME), Some(15))),
                fresh,
                true,
                Decision::Renew,
            ),
            (
                Some(record(Some(ME), Some(15))),
                fresh,
                false,
                Decision::Renew,
            ),
            (
                Some(record(Some(ME), Some(15))),
                expired,
                true,
                Decision::Renew,
            ),
            (
                Some(record(Some(ME), Some(15))),
                expired,
                false,
                Decision::Renew,
            ),
            // Held by another, live.
            (
                Some(record(Some(OTHER), Some(15))),
                fresh,
                false,
                Decision::Follow,
            ),
            (
                Some(record(Some(OTHER), Some(15))),
                fresh,
                true,
                Decision::Lost,
            ),
            // Held by another, expired by our observation.
            (
                Some(record(Some(OTHER), Some(15))),
                expired,
                false,
                Decision::Acquire,
            ),
            (
                Some(record(Some(OTHER), Some(15))),
                expired,
                true,
                Decision::Lost,
            ),
        ];
        for (i, (rec, now, leading, want)) in cases.into_iter().enumerate() {
            let got = decide(rec.as_ref(), t0, now, ME, leading, DEFAULT);
            assert_eq!(got, want, "case {i}: {rec:?} leading={leading}");
        }
    }

    #[test]
    fn expiry_uses_the_lease_duration_and_falls_back_to_ours() {
        let t0 = Instant::now();
        let short = record(Some(OTHER), Some(2));
        assert_eq!(
            decide(
                Some(&short),
                t0,
                t0 + Duration::from_millis(1999),
                ME,
                false,
                DEFAULT
            ),
            Decision::Follow
        );
        assert_eq!(
            decide(
                Some(&short),
                t0,
                t0 + Duration::from_secs(2),
                ME,
                false,
                DEFAULT
            ),
            Decision::Acquire
        );
        let unset = record(Some(OTHER), None);
        assert_eq!(
            decide(
                Some(&unset),
                t0,
                t0 + Duration::from_secs(14),
                ME,
                false,
                DEFAULT
            ),
            Decision::Follow
        );
        assert_eq!(
            decide(Some(&unset), t0, t0 + DEFAULT, ME, false, DEFAULT),
            Decision::Acquire
        );
    }

    #[test]
    fn empty_holder_counts_as_released() {
        let lease = Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(String::new()),
                lease_duration_seconds: Some(1),
                ..LeaseSpec::default()
            }),
        };
        let rec = LeaseRecord::from_lease(&lease);
        assert_eq!(rec, record(None, Some(1)));
        assert_eq!(
            decide(
                Some(&rec),
                Instant::now(),
                Instant::now(),
                ME,
                false,
                DEFAULT
            ),
            Decision::Acquire
        );
    }

    #[test]
    fn negative_duration_is_ignored() {
        let lease = Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(OTHER.into()),
                lease_duration_seconds: Some(-5),
                ..LeaseSpec::default()
            }),
        };
        assert_eq!(LeaseRecord::from_lease(&lease), record(Some(OTHER), None));
    }

    #[test]
    fn observation_time_only_moves_when_the_version_changes() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(5);
        let first = Observed::update(None, Some("1"), t0);
        assert_eq!(first.at, t0);
        let same = Observed::update(Some(first.clone()), Some("1"), t1);
        assert_eq!(same.at, t0, "an unrenewed lease must keep ageing");
        let changed = Observed::update(Some(first), Some("2"), t1);
        assert_eq!(changed.at, t1);
    }

    #[test]
    fn settings_validation_enforces_the_safety_margins() {
        let ok = LeaseSettings {
            namespace: "ns".into(),
            name: "lease".into(),
            identity: "me".into(),
            lease_duration: LeaseSettings::DEFAULT_LEASE_DURATION,
            renew_deadline: LeaseSettings::DEFAULT_RENEW_DEADLINE,
            retry_period: LeaseSettings::DEFAULT_RETRY_PERIOD,
        };
        ok.validate().unwrap();
        let bad = [
            LeaseSettings {
                renew_deadline: ok.lease_duration,
                ..ok.clone()
            },
            LeaseSettings {
                retry_period: ok.renew_deadline,
                ..ok.clone()
            },
            LeaseSettings {
                retry_period: Duration::ZERO,
                ..ok.clone()
            },
            LeaseSettings {
                lease_duration: Duration::from_millis(15_500),
                ..ok.clone()
            },
            LeaseSettings {
                identity: String::new(),
                ..ok.clone()
            },
            LeaseSettings {
                namespace: String::new(),
                ..ok.clone()
            },
        ];
        for s in bad {
            assert!(s.validate().is_err(), "{s:?}");
        }
    }

    #[tokio::test]
    async fn always_leads_until_shutdown() {
        let shutdown = CancellationToken::new();
        let leadership = Leadership::always(&shutdown);
        assert!(leadership.is_leader());
        let term = leadership.acquired().await.expect("leads");
        assert!(!term.is_cancelled());
        let mut rx = leadership.subscribe();
        shutdown.cancel();
        assert!(term.is_cancelled());
        assert!(leadership.current_term().is_none());
        // The shutdown task flips "is leader" off.
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|leading| !leading))
            .await
            .expect("is-leader turns false after shutdown")
            .unwrap();
    }

    #[tokio::test]
    async fn ending_a_term_cancels_its_token_before_reporting_not_leader() {
        let shutdown = CancellationToken::new();
        let (publisher, leadership) = LeadershipPublisher::new(shutdown.clone());
        assert!(!leadership.is_leader());
        assert!(leadership.current_term().is_none());
        publisher.start_term();
        let term = leadership.acquired().await.expect("leads");
        let mut rx = leadership.subscribe();
        assert!(*rx.borrow_and_update());
        publisher.end_term();
        assert!(term.is_cancelled());
        rx.changed().await.unwrap();
        assert!(!*rx.borrow());
        // A new term gets a fresh token.
        publisher.start_term();
        let second = leadership.acquired().await.expect("leads again");
        assert!(!second.is_cancelled());
        // Shutdown ends the term and no new term starts afterwards.
        shutdown.cancel();
        assert!(second.is_cancelled());
        publisher.start_term();
        assert!(leadership.current_term().is_none());
        assert!(leadership.acquired().await.is_none());
    }

    #[tokio::test]
    async fn acquired_returns_none_when_shutdown_begins_without_leading() {
        let shutdown = CancellationToken::new();
        let (_publisher, leadership) = LeadershipPublisher::new(shutdown.clone());
        let waiter = tokio::spawn({
            let leadership = leadership.clone();
            async move { leadership.acquired().await }
        });
        shutdown.cancel();
        let got = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("acquired() returns once the publisher is gone")
            .unwrap();
        assert!(got.is_none());
    }
}
