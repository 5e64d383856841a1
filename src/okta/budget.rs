//! The rate-limit state and concurrency bound of one org, shareable by several clients.
//!
//! Okta counts rate limits and concurrent requests per org, not per API token or per
//! integration, so every client talking to one org should pace on one view of its buckets and
//! one bound on requests in flight. [`OrgBudget`] is that state; give the same one to each
//! client of an org with [`OktaClient::with_budget`](super::OktaClient::with_budget).

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, SemaphorePermit};

use super::ratelimit::RateLimiter;

/// One org's pacing state (a window per rate-limit bucket, requests in flight per bucket) and
/// its bound on concurrent requests. Cheap to clone; clones are the same budget.
#[derive(Clone)]
pub struct OrgBudget {
    inner: Arc<Inner>,
}

struct Inner {
    limiter: Arc<RateLimiter>,
    in_flight: Semaphore,
    /// The bound now; the semaphore holds `size - in use - debt` free permits.
    size: Mutex<usize>,
    /// Permits still to retire after a shrink that found them in use: they are forgotten on
    /// release instead of returned.
    debt: AtomicUsize,
}

impl fmt::Debug for OrgBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (max_concurrency, budget_percent) = self.limits();
        f.debug_struct("OrgBudget")
            .field("max_concurrency", &max_concurrency)
            .field("budget_percent", &budget_percent)
            .finish_non_exhaustive()
    }
}

/// A slot of the concurrency bound, released on drop.
pub(crate) struct InFlightPermit<'a> {
    permit: Option<SemaphorePermit<'a>>,
    debt: &'a AtomicUsize,
}

impl Drop for InFlightPermit<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            let retire = self
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
                .is_ok();
            if retire {
                permit.forget();
            }
        }
    }
}

impl OrgBudget {
    /// A fresh budget: at most `max_concurrency` requests in flight (at least 1) and
    /// `budget_percent` of each rate-limit bucket (clamped to 1..=100).
    pub fn new(max_concurrency: usize, budget_percent: u8) -> OrgBudget {
        let size = max_concurrency.max(1);
        OrgBudget {
            inner: Arc::new(Inner {
                limiter: RateLimiter::new(budget_percent),
                in_flight: Semaphore::new(size),
                size: Mutex::new(size),
                debt: AtomicUsize::new(0),
            }),
        }
    }

    /// The bound on requests in flight and the share of each bucket in use now.
    pub fn limits(&self) -> (usize, u8) {
        (*self.lock_size(), self.inner.limiter.budget_percent())
    }

    /// Changes the bound and the share for every client of this budget, keeping what it has
    /// learnt of the buckets. A lower bound takes effect as requests in flight finish.
    pub fn set_limits(&self, max_concurrency: usize, budget_percent: u8) {
        let inner = &self.inner;
        inner.limiter.set_budget_percent(budget_percent);
        let new = max_concurrency.max(1);
        let mut size = self.lock_size();
        if new > *size {
            let grow = new - *size;
            // Cancel retirements still pending before adding permits.
            let mut cancelled = 0;
            let _ = inner
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                    cancelled = d.min(grow);
                    Some(d - cancelled)
                });
            inner.in_flight.add_permits(grow - cancelled);
        } else if new < *size {
            let shrink = *size - new;
            let forgotten = inner.in_flight.forget_permits(shrink);
            inner.debt.fetch_add(shrink - forgotten, Ordering::AcqRel);
        }
        *size = new;
    }

    /// Whether `self` and `other` are the same budget.
    pub fn same_as(&self, other: &OrgBudget) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn lock_size(&self) -> std::sync::MutexGuard<'_, usize> {
        self.inner.size.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn limiter(&self) -> &Arc<RateLimiter> {
        &self.inner.limiter
    }

    /// Waits for a slot of the concurrency bound.
    pub(crate) async fn acquire_in_flight(&self) -> Option<InFlightPermit<'_>> {
        let permit = self.inner.in_flight.acquire().await.ok()?;
        Some(InFlightPermit {
            permit: Some(permit),
            debt: &self.inner.debt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn available(b: &OrgBudget) -> usize {
        b.inner.in_flight.available_permits()
    }

    #[tokio::test]
    async fn shrinking_below_the_requests_in_flight_retires_permits_on_release() {
        let b = OrgBudget::new(4, 50);
        let p1 = b.acquire_in_flight().await.unwrap();
        let p2 = b.acquire_in_flight().await.unwrap();
        let p3 = b.acquire_in_flight().await.unwrap();
        b.set_limits(1, 20);
        assert_eq!(b.limits(), (1, 20));
        // One free permit was forgotten at once; two of the three in use retire on release.
        assert_eq!(available(&b), 0);
        drop(p1);
        drop(p2);
        assert_eq!(available(&b), 0);
        drop(p3);
        assert_eq!(available(&b), 1);
    }

    #[tokio::test]
    async fn growing_first_cancels_pending_retirements() {
        let b = OrgBudget::new(3, 50);
        let p1 = b.acquire_in_flight().await.unwrap();
        let p2 = b.acquire_in_flight().await.unwrap();
        b.set_limits(1, 50); // one free forgotten, one retirement pending
        b.set_limits(2, 50); // cancels the pending retirement instead of adding a permit
        assert_eq!(available(&b), 0);
        drop(p1);
        drop(p2);
        assert_eq!(available(&b), 2);
        b.set_limits(5, 50);
        assert_eq!(available(&b), 5);
    }

    #[test]
    fn clones_are_the_same_budget() {
        let a = OrgBudget::new(8, 50);
        assert!(a.same_as(&a.clone()));
        assert!(!a.same_as(&OrgBudget::new(8, 50)));
        assert_eq!(OrgBudget::new(0, 50).limits(), (1, 50));
    }
}
