//! The mass-revocation circuit breaker: per connector, at most `maxRevocationsPerHour`
//! membership removals in any sliding hour; removals beyond that are held until a person
//! releases them.
//!
//! Every path that removes a user from an Okta group through a connector asks
//! [`RevocationBreaker::request`] for budget **before** its DELETEs and makes only as many as
//! it was allowed; the rest wait. The breaker lives in the [`ClientRegistry`](super::clients::ClientRegistry)
//! ([`ClientRegistry::revocations`](super::clients::ClientRegistry::revocations)), so every
//! reconciler of one process shares one budget per connector.
//!
//! Releasing: every new value of the connector's annotation [`RELEASE_ANNOTATION`] forgives
//! the removals counted so far once (the window starts empty: another full limit of
//! removals may go); raising `spec.safety.maxRevocationsPerHour` raises the limit at once.
//!
//! A removal is counted when it is allowed, before its DELETE: one that then fails, or finds
//! the membership already gone, still counts (the breaker errs on the side of stopping).
//!
//! # Durability
//! With [`RevocationBreaker::persist_in`] (the operator always sets it) the window survives a
//! restart or a change of leader: it lives in the connector's `status.revocations`
//! ([`RevocationWindowStatus`]), written by server-side apply with its own field manager
//! ([`REVOCATIONS_FIELD_MANAGER`], so the connector reconciler's status writes never touch
//! it). The protocol:
//! - **Seed before budget.** A connector's window is read from its status on its first
//!   request, and again after every new leadership term ([`RevocationBreaker::forget_seeds`]),
//!   before any budget is given. A connector that does not exist yet starts empty. If the
//!   status cannot be read, every removal is held (the connector shows
//!   `RevocationWindowUnavailable`) until it can.
//! - **Write before DELETE.** Every request that allows removals (or acts on a new release)
//!   writes the window, counting them, before it answers; if that write fails nothing is
//!   allowed. So a crash loses no removal from the count: at worst the count keeps removals
//!   that were allowed but never made.
//! - **One writer at a time.** Requests are answered one after another, so windows are
//!   written in the order they were counted.
//!
//! The stored window rounds every removal up to the end of its minute
//! ([`stored_window`]), which keeps it at most 61 entries at any limit; a removal read back
//! counts up to a minute longer than an hour, never shorter. Held counts are not stored:
//! each requester reports them again on its next retry.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use tokio::sync::broadcast;

use super::clients::ConnectorKey;
use crate::crd::OktaCiamConnector;
use crate::crd::connector::{REVOCATIONS_FIELD_MANAGER, RemovalCount, RevocationWindowStatus};

/// The connector annotation whose every new value releases the held removals once.
pub const RELEASE_ANNOTATION: &str = "oktaciam.io/release-revocations";

/// The breaker's window: removals are counted over the last hour.
pub const WINDOW: SignedDuration = SignedDuration::from_hours(1);

/// How many of `wanted` removals may go now, given `done` removals already in the window and
/// the `limit` per window. The breaker's whole decision; the rest is bookkeeping.
pub fn allowance(done: usize, limit: usize, wanted: usize) -> usize {
    wanted.min(limit.saturating_sub(done))
}

/// The end of the minute `t` falls in (`t` itself when it is on a whole minute).
fn minute_end(t: Timestamp) -> Timestamp {
    let seconds = t.as_second() + i64::from(t.subsec_nanosecond() > 0);
    let minute = (seconds + 59).div_euclid(60) * 60;
    Timestamp::from_second(minute).unwrap_or(Timestamp::MAX)
}

/// The window as `status.revocations` stores it: the removals (oldest first) counted per
/// minute, each rounded up to the end of its minute.
pub fn stored_window(
    removals: &VecDeque<Timestamp>,
    released: Option<&str>,
) -> RevocationWindowStatus {
    let mut counts: Vec<RemovalCount> = Vec::new();
    for minute in removals.iter().copied().map(minute_end) {
        match counts.last_mut() {
            Some(last) if last.minute.0 == minute => last.count = last.count.saturating_add(1),
            _ => counts.push(RemovalCount {
                minute: Time(minute),
                count: 1,
            }),
        }
    }
    RevocationWindowStatus {
        removals: counts,
        released: released.map(str::to_owned),
    }
}

/// The removals of a stored window still inside the hour ending `now`, oldest first.
pub fn removals_from_stored(
    stored: &RevocationWindowStatus,
    now: Timestamp,
) -> VecDeque<Timestamp> {
    let start = now.checked_sub(WINDOW).unwrap_or(Timestamp::MIN);
    let mut minutes: Vec<&RemovalCount> = stored
        .removals
        .iter()
        .filter(|c| c.minute.0 > start)
        .collect();
    minutes.sort_by_key(|c| c.minute.0);
    minutes
        .into_iter()
        .flat_map(|c| std::iter::repeat_n(c.minute.0, usize::try_from(c.count).unwrap_or(0)))
        .collect()
}

/// What a removal path asks the breaker for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovalRequest<'a> {
    /// Who removes (e.g. the `GroupMembership`'s `namespace/name`): its held count replaces
    /// the one it reported before.
    pub requester: &'a str,
    /// How many removals it is about to make.
    pub wanted: usize,
    /// The connector's `spec.safety.maxRevocationsPerHour`.
    pub limit: usize,
    /// The connector's [`RELEASE_ANNOTATION`] value, if set.
    pub release: Option<&'a str>,
}

/// How a [`RemovalRequest`] was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Removals that may be made now (counted in the window).
    pub allowed: usize,
    /// Removals that must wait.
    pub held: usize,
}

/// A connector's breaker as its status reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BreakerState {
    /// Removals counted in the current window.
    pub done: usize,
    /// Removals held, summed over the requesters' last requests.
    pub held: usize,
    /// The stored window could not be read or written at the last request: every removal
    /// is held until it can.
    pub unavailable: bool,
}

/// One connector's window of removals.
#[derive(Debug, Default)]
struct Window {
    /// When each counted removal was allowed, oldest first.
    removals: VecDeque<Timestamp>,
    /// The release annotation value last acted on.
    released: Option<String>,
    /// Held removals per requester (only those holding some).
    held: BTreeMap<String, usize>,
    /// Whether `removals` and `released` were read from the stored window this term.
    seeded: bool,
    /// Whether the last read or write of the stored window failed.
    unavailable: bool,
}

impl Window {
    fn prune(&mut self, now: Timestamp) {
        let start = now.checked_sub(WINDOW).unwrap_or(Timestamp::MIN);
        while self.removals.front().is_some_and(|t| *t <= start) {
            self.removals.pop_front();
        }
    }

    fn seed(&mut self, stored: Option<&RevocationWindowStatus>, now: Timestamp) {
        self.removals = stored.map_or_else(VecDeque::new, |s| removals_from_stored(s, now));
        self.released = stored.and_then(|s| s.released.clone());
        self.seeded = true;
    }

    fn set_held(&mut self, requester: &str, held: usize) {
        if held == 0 {
            self.held.remove(requester);
        } else {
            self.held.insert(requester.to_owned(), held);
        }
    }

    /// Answers `request`; true as the second value when the window changed (and must be
    /// stored before the answer is given).
    fn request(&mut self, request: &RemovalRequest<'_>, now: Timestamp) -> (Allowance, bool) {
        let mut changed = false;
        if request.release.is_some() && request.release != self.released.as_deref() {
            self.released = request.release.map(str::to_owned);
            self.removals.clear();
            changed = true;
        }
        self.prune(now);
        let allowed = allowance(self.removals.len(), request.limit, request.wanted);
        self.removals.extend(std::iter::repeat_n(now, allowed));
        let held = request.wanted - allowed;
        self.set_held(request.requester, held);
        (Allowance { allowed, held }, changed || allowed > 0)
    }

    fn held(&self) -> usize {
        self.held.values().sum()
    }

    fn state(&mut self, now: Timestamp) -> BreakerState {
        self.prune(now);
        BreakerState {
            done: self.removals.len(),
            held: self.held(),
            unavailable: self.unavailable,
        }
    }
}

/// The breakers of every connector of this process.
pub struct RevocationBreaker {
    windows: Mutex<HashMap<ConnectorKey, Window>>,
    /// Connectors whose held count changed (their status must say so).
    changed: broadcast::Sender<ConnectorKey>,
    /// Where windows are stored; unset, they live in memory only.
    store: OnceLock<kube::Client>,
    /// Held while a request is answered, so stored windows are written in order.
    turn: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for RevocationBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationBreaker")
            .field("windows", &self.lock())
            .field("stored", &self.store.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Default for RevocationBreaker {
    fn default() -> Self {
        RevocationBreaker {
            windows: Mutex::default(),
            changed: broadcast::channel(256).0,
            store: OnceLock::new(),
            turn: tokio::sync::Mutex::new(()),
        }
    }
}

impl RevocationBreaker {
    fn lock(&self) -> MutexGuard<'_, HashMap<ConnectorKey, Window>> {
        // Every update leaves a window consistent.
        self.windows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps every connector's window in its `status.revocations` from now on (see the
    /// module docs). Set once, before the reconcilers start; a second call changes nothing.
    pub fn persist_in(&self, kube: kube::Client) {
        let _ = self.store.set(kube);
    }

    /// Makes every window be read again from its connector before its next budget: called
    /// when a leadership term starts, since another replica may have removed meanwhile.
    /// Held counts stay (their requesters report them again anyway).
    pub fn forget_seeds(&self) {
        for window in self.lock().values_mut() {
            window.seeded = false;
        }
    }

    /// **The one entry point for every removal path**: asks for budget for
    /// `request.wanted` removals through `connector`; make only [`Allowance::allowed`] of
    /// them and report the rest as held. Call it again (with `wanted` the removals still to
    /// make, zero when none) on each retry, so the held count stays true. With a store, the
    /// window is read first if needed and the allowed removals are stored before the answer.
    pub async fn request(
        &self,
        connector: &ConnectorKey,
        request: &RemovalRequest<'_>,
        now: Timestamp,
    ) -> Allowance {
        let _turn = self.turn.lock().await;
        let held_before = self.lock().get(connector).map_or(0, Window::held);
        let allowance = match self.store.get() {
            Some(kube) => self.request_stored(kube, connector, request, now).await,
            None => {
                self.lock()
                    .entry(connector.clone())
                    .or_default()
                    .request(request, now)
                    .0
            }
        };
        let held_after = self.lock().get(connector).map_or(0, Window::held);
        if held_before != held_after {
            // No receiver (no connector controller) is fine.
            let _ = self.changed.send(connector.clone());
        }
        allowance
    }

    /// [`RevocationBreaker::request`] with the window kept in the connector's status.
    async fn request_stored(
        &self,
        kube: &kube::Client,
        connector: &ConnectorKey,
        request: &RemovalRequest<'_>,
        now: Timestamp,
    ) -> Allowance {
        let api: Api<OktaCiamConnector> = Api::namespaced(kube.clone(), &connector.namespace);
        let hold_all = |window: &mut Window| {
            window.unavailable = true;
            window.set_held(request.requester, request.wanted);
            Allowance {
                allowed: 0,
                held: request.wanted,
            }
        };
        let seeded = self.lock().get(connector).is_some_and(|w| w.seeded);
        if !seeded {
            let stored = api
                .get_opt(&connector.name)
                .await
                .map(|found| found.and_then(|c| c.status).and_then(|s| s.revocations));
            let mut windows = self.lock();
            let window = windows.entry(connector.clone()).or_default();
            match stored {
                Ok(stored) => window.seed(stored.as_ref(), now),
                Err(error) => {
                    tracing::warn!(%connector, %error, "cannot read the stored revocation window; holding removals");
                    return hold_all(window);
                }
            }
        }
        let (allowance, stored) = {
            let mut windows = self.lock();
            let window = windows.entry(connector.clone()).or_default();
            let (allowance, changed) = window.request(request, now);
            let stored =
                changed.then(|| stored_window(&window.removals, window.released.as_deref()));
            (allowance, stored)
        };
        let Some(stored) = stored else {
            // Read fine and nothing new to store: the window is available again.
            if let Some(window) = self.lock().get_mut(connector) {
                window.unavailable = false;
            }
            return allowance;
        };
        let body = serde_json::json!({
            "apiVersion": OktaCiamConnector::api_version(&()),
            "kind": OktaCiamConnector::kind(&()),
            "status": {"revocations": stored},
        });
        let params = PatchParams::apply(REVOCATIONS_FIELD_MANAGER).force();
        let written = api
            .patch_status(&connector.name, &params, &Patch::Apply(&body))
            .await;
        let mut windows = self.lock();
        let window = windows.entry(connector.clone()).or_default();
        match written {
            Ok(_) => {
                window.unavailable = false;
                allowance
            }
            Err(error) => {
                // The removals stay counted (erring on the side of stopping) but none is made.
                tracing::warn!(%connector, %error, "cannot store the revocation window; holding removals");
                hold_all(window)
            }
        }
    }

    /// The connector's window now, for its status.
    pub fn state(&self, connector: &ConnectorKey, now: Timestamp) -> BreakerState {
        self.lock()
            .get_mut(connector)
            .map_or_else(BreakerState::default, |w| w.state(now))
    }

    /// Connectors whose held count changed, as they change.
    pub fn subscribe(&self) -> broadcast::Receiver<ConnectorKey> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_mins(minutes)
    }

    fn ask<'a>(requester: &'a str, wanted: usize, release: Option<&'a str>) -> RemovalRequest<'a> {
        RemovalRequest {
            requester,
            wanted,
            limit: 5,
            release,
        }
    }

    #[test]
    fn allowance_is_what_is_left_of_the_limit() {
        assert_eq!(allowance(0, 5, 3), 3);
        assert_eq!(allowance(3, 5, 3), 2);
        assert_eq!(allowance(5, 5, 1), 0);
        assert_eq!(allowance(7, 5, 1), 0, "a lowered limit holds everything");
        assert_eq!(allowance(0, 0, 4), 0, "a zero limit holds every removal");
    }

    #[tokio::test]
    async fn twelve_removals_against_a_limit_of_five_let_five_go_and_hold_seven() {
        let breaker = RevocationBreaker::default();
        let key = ConnectorKey::new("ns", "acme");
        let mut allowed = 0;
        for i in 0..12 {
            let name = format!("gm{i}");
            allowed += breaker
                .request(&key, &ask(&name, 1, None), at(0))
                .await
                .allowed;
        }
        assert_eq!(allowed, 5);
        assert_eq!(
            breaker.state(&key, at(1)),
            BreakerState {
                done: 5,
                held: 7,
                unavailable: false
            }
        );
        // Another connector has its own budget.
        let other = ConnectorKey::new("ns", "other");
        assert_eq!(
            breaker
                .request(&other, &ask("x", 2, None), at(0))
                .await
                .allowed,
            2
        );
    }

    #[tokio::test]
    async fn the_window_slides_by_the_hour() {
        let breaker = RevocationBreaker::default();
        let key = ConnectorKey::new("ns", "acme");
        assert_eq!(
            breaker
                .request(&key, &ask("a", 5, None), at(0))
                .await
                .allowed,
            5
        );
        assert_eq!(
            breaker.request(&key, &ask("b", 1, None), at(59)).await.held,
            1
        );
        let later = breaker.request(&key, &ask("b", 1, None), at(60)).await;
        assert_eq!(
            later,
            Allowance {
                allowed: 1,
                held: 0
            }
        );
        assert_eq!(
            breaker.state(&key, at(60)),
            BreakerState {
                done: 1,
                held: 0,
                unavailable: false
            }
        );
    }

    #[tokio::test]
    async fn each_new_release_value_forgives_the_window_once() {
        let breaker = RevocationBreaker::default();
        let key = ConnectorKey::new("ns", "acme");
        breaker.request(&key, &ask("a", 5, None), at(0)).await;
        assert_eq!(
            breaker.request(&key, &ask("b", 7, None), at(1)).await.held,
            7
        );
        let released = breaker.request(&key, &ask("b", 7, Some("1")), at(2)).await;
        assert_eq!(
            released,
            Allowance {
                allowed: 5,
                held: 2
            }
        );
        // The same value again releases nothing more.
        assert_eq!(
            breaker
                .request(&key, &ask("b", 2, Some("1")), at(3))
                .await
                .held,
            2
        );
        let again = breaker.request(&key, &ask("b", 2, Some("2")), at(4)).await;
        assert_eq!(
            again,
            Allowance {
                allowed: 2,
                held: 0
            }
        );
        assert_eq!(breaker.state(&key, at(4)).held, 0);
    }

    #[tokio::test]
    async fn a_changed_held_count_is_announced() {
        let breaker = RevocationBreaker::default();
        let key = ConnectorKey::new("ns", "acme");
        let mut rx = breaker.subscribe();
        breaker.request(&key, &ask("a", 5, None), at(0)).await;
        assert!(rx.try_recv().is_err(), "nothing held, nothing to say");
        breaker.request(&key, &ask("b", 1, None), at(0)).await;
        assert_eq!(rx.try_recv().unwrap(), key);
        breaker.request(&key, &ask("b", 1, None), at(0)).await;
        assert!(rx.try_recv().is_err(), "still one held");
    }

    fn at_second(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn the_stored_window_counts_per_minute_rounding_up() {
        let removals: VecDeque<Timestamp> = [
            at_second(60),
            at_second(61),
            at_second(119),
            at_second(3000),
        ]
        .into();
        let stored = stored_window(&removals, Some("r1"));
        let minutes: Vec<(i64, i32)> = stored
            .removals
            .iter()
            .map(|c| (c.minute.0.as_second(), c.count))
            .collect();
        assert_eq!(minutes, [(60, 1), (120, 2), (3000, 1)]);
        assert_eq!(stored.released.as_deref(), Some("r1"));
        let json = serde_json::to_value(&stored).unwrap();
        assert_eq!(json["removals"][1]["minute"], "1970-01-01T00:02:00Z");
    }

    #[test]
    fn the_stored_window_stays_one_entry_per_minute_at_the_largest_limit() {
        let removals: VecDeque<Timestamp> = (0..100_000)
            .map(|i| at_second(i * 3600 / 100_000))
            .collect();
        let stored = stored_window(&removals, None);
        assert!(stored.removals.len() <= 61, "{}", stored.removals.len());
        let bytes = serde_json::to_vec(&stored).unwrap().len();
        assert!(bytes < 4096, "{bytes} bytes");
        let back = removals_from_stored(&stored, at_second(3599));
        assert_eq!(back.len(), 100_000, "nothing is lost within the hour");
    }

    #[test]
    fn reading_back_drops_what_left_the_hour_and_never_shortens_a_count() {
        let removals: VecDeque<Timestamp> = [at_second(10), at_second(70), at_second(70)].into();
        let stored = stored_window(&removals, None);
        // At 01:00:30 the removal made at 00:00:10 still counts (rounded up to 00:01:00 + 1h
        // > now); at 01:01:00 it has left the window while those at 00:01:10 stay.
        assert_eq!(removals_from_stored(&stored, at_second(3630)).len(), 3);
        assert_eq!(removals_from_stored(&stored, at_second(3660)).len(), 2);
        assert_eq!(removals_from_stored(&stored, at_second(3720)).len(), 0);
        let unordered = RevocationWindowStatus {
            removals: stored.removals.iter().rev().cloned().collect(),
            released: None,
        };
        let back = removals_from_stored(&unordered, at_second(3630));
        assert!(
            back.iter().is_sorted(),
            "oldest first, whatever order was stored"
        );
    }

    #[test]
    fn a_seeded_window_goes_on_counting_and_remembers_its_release() {
        let mut window = Window::default();
        let (allowed, changed) = window.request(&ask("a", 3, Some("r1")), at(0));
        assert_eq!(allowed.allowed, 3);
        assert!(changed);
        let stored = stored_window(&window.removals, window.released.as_deref());
        // A restart: a fresh window seeded from what was stored.
        let mut restarted = Window::default();
        restarted.seed(Some(&stored), at(10));
        let (again, _) = restarted.request(&ask("b", 4, Some("r1")), at(10));
        assert_eq!(
            again,
            Allowance {
                allowed: 2,
                held: 2
            },
            "the same release value forgives nothing after a restart"
        );
        let (nothing, changed) = restarted.request(&ask("c", 0, Some("r1")), at(11));
        assert_eq!(nothing.allowed, 0);
        assert!(!changed, "nothing allowed, nothing to store");
    }
}
