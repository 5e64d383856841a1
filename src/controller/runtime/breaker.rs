//! The mass-revocation circuit breaker: per connector, at most `maxRevocationsPerHour`
//! membership removals in any sliding hour; removals beyond that are held until a person
//! releases them.
//!
//! Every path that removes a user from an Okta group through a connector asks
//! [`RevocationBreaker::request`] for budget **before** its DELETEs and makes only as many as
//! it was allowed; the rest wait. The breaker lives in the [`ClientRegistry`](super::clients::ClientRegistry)
//! ([`ClientRegistry::revocations`](super::clients::ClientRegistry::revocations)), so every
//! reconciler of one process shares one budget per connector. It is kept in memory only: a
//! restarted operator starts with an empty window (documented in `docs/provisioning.md`).
//!
//! Releasing: every new value of the connector's annotation [`RELEASE_ANNOTATION`] forgives
//! the removals counted so far once (the window starts empty: another full limit of
//! removals may go); raising `spec.safety.maxRevocationsPerHour` raises the limit at once.
//!
//! A removal is counted when it is allowed, before its DELETE: one that then fails, or finds
//! the membership already gone, still counts (the breaker errs on the side of stopping).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use jiff::{SignedDuration, Timestamp};
use tokio::sync::broadcast;

use super::clients::ConnectorKey;

/// The connector annotation whose every new value releases the held removals once.
pub const RELEASE_ANNOTATION: &str = "oktaciam.io/release-revocations";

/// The breaker's window: removals are counted over the last hour.
pub const WINDOW: SignedDuration = SignedDuration::from_hours(1);

/// How many of `wanted` removals may go now, given `done` removals already in the window and
/// the `limit` per window. The breaker's whole decision; the rest is bookkeeping.
pub fn allowance(done: usize, limit: usize, wanted: usize) -> usize {
    wanted.min(limit.saturating_sub(done))
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
}

impl Window {
    fn prune(&mut self, now: Timestamp) {
        let start = now.checked_sub(WINDOW).unwrap_or(Timestamp::MIN);
        while self.removals.front().is_some_and(|t| *t <= start) {
            self.removals.pop_front();
        }
    }

    fn request(&mut self, request: &RemovalRequest<'_>, now: Timestamp) -> Allowance {
        if request.release.is_some() && request.release != self.released.as_deref() {
            self.released = request.release.map(str::to_owned);
            self.removals.clear();
        }
        self.prune(now);
        let allowed = allowance(self.removals.len(), request.limit, request.wanted);
        self.removals.extend(std::iter::repeat_n(now, allowed));
        let held = request.wanted - allowed;
        if held == 0 {
            self.held.remove(request.requester);
        } else {
            self.held.insert(request.requester.to_owned(), held);
        }
        Allowance { allowed, held }
    }

    fn state(&mut self, now: Timestamp) -> BreakerState {
        self.prune(now);
        BreakerState {
            done: self.removals.len(),
            held: self.held.values().sum(),
        }
    }
}

/// The breakers of every connector of this process.
#[derive(Debug)]
pub struct RevocationBreaker {
    windows: Mutex<HashMap<ConnectorKey, Window>>,
    /// Connectors whose held count changed (their status must say so).
    changed: broadcast::Sender<ConnectorKey>,
}

impl Default for RevocationBreaker {
    fn default() -> Self {
        RevocationBreaker {
            windows: Mutex::default(),
            changed: broadcast::channel(256).0,
        }
    }
}

impl RevocationBreaker {
    fn lock(&self) -> MutexGuard<'_, HashMap<ConnectorKey, Window>> {
        // Every update leaves a window consistent.
        self.windows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// **The one entry point for every removal path**: asks for budget for
    /// `request.wanted` removals through `connector`; make only [`Allowance::allowed`] of
    /// them and report the rest as held. Call it again (with `wanted` the removals still to
    /// make, zero when none) on each retry, so the held count stays true.
    pub fn request(
        &self,
        connector: &ConnectorKey,
        request: &RemovalRequest<'_>,
        now: Timestamp,
    ) -> Allowance {
        let mut windows = self.lock();
        let window = windows.entry(connector.clone()).or_default();
        let held_before = window.held.values().sum::<usize>();
        let allowance = window.request(request, now);
        let held_after = window.held.values().sum::<usize>();
        drop(windows);
        if held_before != held_after {
            // No receiver (no connector controller) is fine.
            let _ = self.changed.send(connector.clone());
        }
        allowance
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

    #[test]
    fn twelve_removals_against_a_limit_of_five_let_five_go_and_hold_seven() {
        let breaker = RevocationBreaker::default();
        let key = ConnectorKey::new("ns", "acme");
        let mut allowed = 0;
        for i in 0..12 {
            let name = format!("gm{i}");
            allowed += breaker.request(&key, &ask(&name, 1, None), at(0)).allowed;
        }
        assert_eq!(allowed, 5);
        assert_eq!(
            breaker.state(&key, at(1)),
            BreakerState { done: 5, held: 7 }
        );
        // Another connector has its own budget.
        let other = ConnectorKey::new("ns", "other");
        assert_eq!(
            breaker.request(&other, &ask("x", 2, None), at(0)).allowed,
            2
        );
    }

    #[test]
    fn the_window_slides_by_the_hour() {
        let breaker = RevocationBreaker::default();
        let key = ConnectorKey::new("ns", "acme");
        assert_eq!(breaker.request(&key, &ask("a", 5, None), at(0)).allowed, 5);
        assert_eq!(breaker.request(&key, &ask("b", 1, None), at(59)).held, 1);
        let later = breaker.request(&key, &ask("b", 1, None), at(60));
        assert_eq!(
            later,
            Allowance {
                allowed: 1,
                held: 0
            }
        );
        assert_eq!(
            breaker.state(&key, at(60)),
            BreakerState { done: 1, held: 0 }
        );
    }

    #[test]
    fn each_new_release_value_forgives_the_window_once() {
        let breaker = RevocationBreaker::default();
        let key = ConnectorKey::new("ns", "acme");
        breaker.request(&key, &ask("a", 5, None), at(0));
        assert_eq!(breaker.request(&key, &ask("b", 7, None), at(1)).held, 7);
        let released = breaker.request(&key, &ask("b", 7, Some("1")), at(2));
        assert_eq!(
            released,
            Allowance {
                allowed: 5,
                held: 2
            }
        );
        // The same value again releases nothing more.
        assert_eq!(
            breaker.request(&key, &ask("b", 2, Some("1")), at(3)).held,
            2
        );
        let again = breaker.request(&key, &ask("b", 2, Some("2")), at(4));
        assert_eq!(
            again,
            Allowance {
                allowed: 2,
                held: 0
            }
        );
        assert_eq!(breaker.state(&key, at(4)).held, 0);
    }

    #[test]
    fn a_changed_held_count_is_announced() {
        let breaker = RevocationBreaker::default();
        let key = ConnectorKey::new("ns", "acme");
        let mut rx = breaker.subscribe();
        breaker.request(&key, &ask("a", 5, None), at(0));
        assert!(rx.try_recv().is_err(), "nothing held, nothing to say");
        breaker.request(&key, &ask("b", 1, None), at(0));
        assert_eq!(rx.try_recv().unwrap(), key);
        breaker.request(&key, &ask("b", 1, None), at(0));
        assert!(rx.try_recv().is_err(), "still one held");
    }
}
