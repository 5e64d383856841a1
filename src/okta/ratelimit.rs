//! Rate-limit bookkeeping: which bucket a request draws on, what Okta's headers say about
//! it, and the pure pacing and retry decisions. [`RateLimiter`] is the shared, stateful part.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderMap;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Extra wait after a window's reset. Okta's `Reset` and `Date` have one-second resolution,
/// so the true reset may be up to a second later than `Reset - Date` suggests (Okta's SDKs
/// add the same second).
const RESET_MARGIN: Duration = Duration::from_secs(1);

/// Upper bound of the random jitter added to waits, so waiters do not stampede together.
const MAX_JITTER: Duration = Duration::from_millis(250);

/// Endpoint family of a request: the stats label and the rate-limit bucket it draws on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Family {
    Org,
    Users,
    User,
    UserGroups,
    UserRoles,
    Groups,
    Group,
    GroupMembers,
    GroupRoles,
    Iam,
    Logs,
    Other,
}

impl Family {
    /// Classifies a URL path (`/api/v1/...`).
    pub(crate) fn of_path(path: &str) -> Family {
        let segments: Vec<&str> = path
            .trim_start_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        match segments.as_slice() {
            ["api", "v1", rest @ ..] => match rest {
                ["org", ..] => Family::Org,
                ["users"] => Family::Users,
                ["users", _] => Family::User,
                ["users", _, "groups", ..] => Family::UserGroups,
                ["users", _, "roles", ..] => Family::UserRoles,
                ["groups"] => Family::Groups,
                ["groups", _] => Family::Group,
                ["groups", _, "users", ..] => Family::GroupMembers,
                ["groups", _, "roles", ..] => Family::GroupRoles,
                ["iam", ..] => Family::Iam,
                ["logs"] => Family::Logs,
                _ => Family::Other,
            },
            _ => Family::Other,
        }
    }

    /// The stats label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Family::Org => "org",
            Family::Users => "users",
            Family::User => "user",
            Family::UserGroups => "user_groups",
            Family::UserRoles => "user_roles",
            Family::Groups => "groups",
            Family::Group => "group",
            Family::GroupMembers => "group_members",
            Family::GroupRoles => "group_roles",
            Family::Iam => "iam",
            Family::Logs => "logs",
            Family::Other => "other",
        }
    }

    /// The rate-limit bucket, after Okta's published Workforce table: users list, user by
    /// id or login, groups list and membership calls, group by id, everything else.
    /// Sub-resources such as `/users/{id}/roles` are assumed to count as "other"; the System
    /// Log has its own bucket.
    pub(crate) fn bucket(self) -> &'static str {
        match self {
            Family::Users => "users",
            Family::User => "user_by_id",
            Family::Groups | Family::GroupMembers => "groups",
            Family::Group => "group_by_id",
            Family::Logs => "logs",
            _ => "default",
        }
    }
}

/// The longest a window's reset is believed to be away. Okta's windows are about a minute;
/// five of them leaves room for a slow clock without trusting a reset days away.
pub(crate) const MAX_RESET_WAIT: Duration = Duration::from_secs(300);

/// `X-Rate-Limit-*` and `Date` of one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RateLimitHeaders {
    pub limit: u32,
    pub remaining: u32,
    /// Epoch seconds (server clock) when the window resets.
    pub reset: i64,
    /// Server clock at the response, epoch seconds.
    pub date: Option<i64>,
}

impl RateLimitHeaders {
    /// Reads the headers; `None` unless limit, remaining and reset are all present.
    pub(crate) fn parse(headers: &HeaderMap) -> Option<RateLimitHeaders> {
        let num =
            |name: &str| -> Option<i64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
        let limit = u32::try_from(num("x-rate-limit-limit")?).ok()?;
        let remaining = u32::try_from(num("x-rate-limit-remaining")?).ok()?;
        let reset = num("x-rate-limit-reset")?;
        let date = headers
            .get(http::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| {
                jiff::fmt::rfc2822::DateTimeParser::new()
                    .parse_timestamp(s)
                    .ok()
            })
            .map(|ts| ts.as_second());
        Some(RateLimitHeaders {
            limit,
            remaining,
            reset,
            date,
        })
    }

    /// A concurrency-limit answer (`Limit: 0`) says nothing about the bucket's window.
    pub(crate) fn is_concurrency(&self) -> bool {
        self.limit == 0
    }

    /// Time until the window resets by the server's clock (`Reset - Date`), falling back to
    /// the local clock when `Date` is missing; never more than [`MAX_RESET_WAIT`], whatever
    /// the headers claim (an absurd `Reset` such as `i64::MAX` must neither overflow nor park
    /// the client for ever).
    pub(crate) fn until_reset(&self) -> Duration {
        let now = self
            .date
            .unwrap_or_else(|| jiff::Timestamp::now().as_second());
        let seconds = u64::try_from(self.reset.saturating_sub(now)).unwrap_or(0);
        Duration::from_secs(seconds).min(MAX_RESET_WAIT)
    }
}

/// What the client knows about one bucket's current window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub limit: u32,
    pub remaining: u32,
    /// The server's reset epoch, to order observations.
    pub reset_epoch: i64,
    /// Local instant after which the window is over (margin included).
    pub reset_at: Instant,
}

/// Requests to keep in reserve for others: `limit * (100 - budget)%`, rounded up, but
/// always leaving at least one request for this client.
pub(crate) fn reserve(limit: u32, budget_percent: u8) -> u32 {
    let keep = 100 - u64::from(budget_percent.clamp(1, 100));
    let reserve = (u64::from(limit) * keep).div_ceil(100);
    u32::try_from(reserve)
        .unwrap_or(u32::MAX)
        .min(limit.saturating_sub(1))
}

/// The pacing decision for one more request on a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pace {
    /// Send now.
    Go,
    /// The budget of this window is spent: wait for its reset.
    WaitUntil(Instant),
    /// Nothing known yet, or too much in flight: wait for an in-flight request to answer.
    WaitForInFlight,
}

/// Decides whether one more request fits the budget, counting requests still in flight as
/// already spent so a concurrent burst cannot overshoot. Until the first response tells
/// the limit, only one request goes out at a time.
pub(crate) fn pace(
    window: Option<&Window>,
    in_flight: u32,
    now: Instant,
    budget_percent: u8,
) -> Pace {
    let Some(w) = window else {
        return if in_flight == 0 {
            Pace::Go
        } else {
            Pace::WaitForInFlight
        };
    };
    let reserve = reserve(w.limit, budget_percent);
    if now >= w.reset_at {
        // The window is over: the bucket starts full again.
        return if w.limit.saturating_sub(in_flight) > reserve {
            Pace::Go
        } else {
            Pace::WaitForInFlight
        };
    }
    if w.remaining.saturating_sub(in_flight) > reserve {
        Pace::Go
    } else {
        Pace::WaitUntil(w.reset_at)
    }
}

/// Folds one response's headers into the bucket's window. Observations of an older window
/// are ignored; within a window the lowest `remaining` wins, since responses may arrive out
/// of order. A 429 empties the window whatever `Remaining` said.
pub(crate) fn observe(
    window: &mut Option<Window>,
    h: &RateLimitHeaders,
    rate_limited: bool,
    now: Instant,
) {
    if h.is_concurrency() {
        return;
    }
    let remaining = if rate_limited { 0 } else { h.remaining };
    let fresh = Window {
        limit: h.limit,
        remaining,
        reset_epoch: h.reset,
        reset_at: now + h.until_reset() + RESET_MARGIN,
    };
    match window {
        Some(w) if h.reset == w.reset_epoch => {
            w.limit = h.limit;
            w.remaining = w.remaining.min(remaining);
        }
        Some(w) if h.reset < w.reset_epoch => {}
        _ => *window = Some(fresh),
    }
}

/// What to do with a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Final: success or an error that retrying cannot fix.
    Done,
    /// 429 for the bucket's window: retry once the window resets.
    RetryAtReset,
    /// Concurrency 429, 429 without headers, 5xx: retry after exponential backoff.
    Backoff,
}

/// Classifies a response status. 4xx other than 429 never retry.
pub(crate) fn classify(status: u16, headers: Option<&RateLimitHeaders>) -> Action {
    match status {
        429 => match headers {
            Some(h) if !h.is_concurrency() => Action::RetryAtReset,
            _ => Action::Backoff,
        },
        500..=599 => Action::Backoff,
        _ => Action::Done,
    }
}

/// Capped exponential backoff with jitter: `min(cap, base * 2^attempt)` scaled by a factor
/// in `[0.5, 1.0)` drawn from `unit` (in `[0, 1)`).
pub(crate) fn backoff(attempt: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX));
    exp.min(cap).mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
}

/// Random jitter in `[0, MAX_JITTER)`.
pub(crate) fn jitter() -> Duration {
    MAX_JITTER.mul_f64(rand::random::<f64>())
}

#[derive(Default)]
struct Slot {
    window: Option<Window>,
    in_flight: u32,
}

/// Shared pacing state of one org: a window per bucket plus requests in flight.
pub(crate) struct RateLimiter {
    slots: Mutex<HashMap<&'static str, Slot>>,
    changed: Notify,
    /// Share of each bucket this org's clients may use; changeable while in use.
    budget_percent: AtomicU8,
}

/// A request counted as in flight on a bucket; dropping it (also on cancellation) releases
/// the count and wakes waiters.
pub(crate) struct Ticket {
    limiter: Arc<RateLimiter>,
    bucket: &'static str,
}

/// What [`RateLimiter::acquire`] may wait: a cap on the total, and how long to wait for an
/// in-flight request before looking again.
pub(crate) struct WaitBudget {
    pub waited: Duration,
    pub max: Duration,
    pub poll: Duration,
}

impl WaitBudget {
    /// Checks that waiting `wait` more stays within the budget.
    pub(crate) fn check(&self, bucket: &'static str, wait: Duration) -> super::Result<()> {
        if self.waited + wait > self.max {
            return Err(super::Error::RateLimitBudgetExceeded {
                bucket,
                wait: self.waited + wait,
                max_wait: self.max,
            });
        }
        Ok(())
    }
}

impl RateLimiter {
    pub(crate) fn new(budget_percent: u8) -> Arc<RateLimiter> {
        Arc::new(RateLimiter {
            slots: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            budget_percent: AtomicU8::new(budget_percent.clamp(1, 100)),
        })
    }

    pub(crate) fn budget_percent(&self) -> u8 {
        self.budget_percent.load(Ordering::Relaxed)
    }

    /// Changes the share; waiters look again at once.
    pub(crate) fn set_budget_percent(&self, budget_percent: u8) {
        self.budget_percent
            .store(budget_percent.clamp(1, 100), Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, Slot>> {
        // A panic while holding the lock cannot leave the map inconsistent (plain fields).
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the bucket has room within the budget, then counts one request in flight.
    /// Every wait is added to `budget.waited`; exceeding `budget.max` is an error.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        bucket: &'static str,
        budget: &mut WaitBudget,
    ) -> super::Result<Ticket> {
        // Each round either returns or sleeps at least until a response or a deadline, and
        // the sleeps are capped by the budget; the count cap is a backstop.
        for _ in 0..10_000 {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = Instant::now();
            let decision = {
                let mut slots = self.lock();
                let slot = slots.entry(bucket).or_default();
                let decision = pace(
                    slot.window.as_ref(),
                    slot.in_flight,
                    now,
                    self.budget_percent(),
                );
                if decision == Pace::Go {
                    slot.in_flight += 1;
                }
                decision
            };
            let deadline = match decision {
                Pace::Go => {
                    return Ok(Ticket {
                        limiter: Arc::clone(self),
                        bucket,
                    });
                }
                Pace::WaitUntil(at) => {
                    let at = at + jitter();
                    budget.check(bucket, at.saturating_duration_since(now))?;
                    tracing::debug!(
                        bucket,
                        wait_ms = at.saturating_duration_since(now).as_millis() as u64,
                        "pacing: waiting for the rate-limit window to reset"
                    );
                    at
                }
                Pace::WaitForInFlight => {
                    budget.check(bucket, Duration::ZERO)?;
                    now + budget.poll
                }
            };
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = &mut notified => {}
            }
            budget.waited += Instant::now().saturating_duration_since(now);
        }
        Err(super::Error::RateLimitBudgetExceeded {
            bucket,
            wait: budget.waited,
            max_wait: budget.max,
        })
    }
}

impl Ticket {
    /// Records a response's rate-limit headers for the bucket.
    pub(crate) fn observe(&self, headers: &RateLimitHeaders, rate_limited: bool) {
        let mut slots = self.limiter.lock();
        let slot = slots.entry(self.bucket).or_default();
        observe(&mut slot.window, headers, rate_limited, Instant::now());
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        {
            let mut slots = self.limiter.lock();
            let slot = slots.entry(self.bucket).or_default();
            slot.in_flight = slot.in_flight.saturating_sub(1);
        }
        self.limiter.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_buckets() {
        let cases = [
            ("/api/v1/org", "org", "default"),
            ("/api/v1/users", "users", "users"),
            ("/api/v1/users/", "users", "users"),
            ("/api/v1/users/00u1", "user", "user_by_id"),
            ("/api/v1/users/a%40b.io", "user", "user_by_id"),
            ("/api/v1/users/00u1/groups", "user_groups", "default"),
            ("/api/v1/users/00u1/roles", "user_roles", "default"),
            ("/api/v1/groups", "groups", "groups"),
            ("/api/v1/groups/00g1", "group", "group_by_id"),
            ("/api/v1/groups/00g1/users", "group_members", "groups"),
            ("/api/v1/groups/00g1/users/00u1", "group_members", "groups"),
            ("/api/v1/groups/00g1/roles", "group_roles", "default"),
            ("/api/v1/iam/roles/cr1/permissions", "iam", "default"),
            ("/api/v1/apps", "other", "default"),
            ("/other", "other", "default"),
        ];
        for (path, label, bucket) in cases {
            let f = Family::of_path(path);
            assert_eq!((f.label(), f.bucket()), (label, bucket), "{path}");
        }
    }

    #[test]
    fn parses_headers_with_server_clock() {
        let mut h = HeaderMap::new();
        h.insert("x-rate-limit-limit", "600".parse().unwrap());
        h.insert("x-rate-limit-remaining", "599".parse().unwrap());
        h.insert("x-rate-limit-reset", "1609459260".parse().unwrap());
        h.insert("date", "Fri, 01 Jan 2021 00:00:30 GMT".parse().unwrap());
        let rl = RateLimitHeaders::parse(&h).unwrap();
        assert_eq!(rl.limit, 600);
        assert_eq!(rl.date, Some(1609459230));
        assert_eq!(rl.until_reset(), Duration::from_secs(30));
        assert_eq!(classify(429, Some(&rl)), Action::RetryAtReset);
        h.remove("x-rate-limit-reset");
        assert_eq!(RateLimitHeaders::parse(&h), None);
    }

    #[test]
    fn absurd_resets_and_dates_are_bounded_not_overflowed() {
        let at = |reset: i64, date: Option<i64>| RateLimitHeaders {
            limit: 10,
            remaining: 0,
            reset,
            date,
        };
        assert_eq!(at(i64::MAX, Some(i64::MIN)).until_reset(), MAX_RESET_WAIT);
        assert_eq!(at(i64::MAX, None).until_reset(), MAX_RESET_WAIT);
        assert_eq!(at(i64::MIN, Some(i64::MAX)).until_reset(), Duration::ZERO);
        // The window built from it is a valid instant (no `Instant + Duration` overflow).
        let now = Instant::now();
        let mut window = None;
        observe(&mut window, &at(i64::MAX, Some(0)), false, now);
        let w = window.unwrap();
        assert_eq!(w.reset_at, now + MAX_RESET_WAIT + RESET_MARGIN);
        // An RFC 2822 date far in the past parses and is bounded the same way.
        let mut h = HeaderMap::new();
        h.insert("x-rate-limit-limit", "10".parse().unwrap());
        h.insert("x-rate-limit-remaining", "0".parse().unwrap());
        h.insert("x-rate-limit-reset", i64::MAX.to_string().parse().unwrap());
        h.insert("date", "Mon, 01 Jan 1900 00:00:00 GMT".parse().unwrap());
        let parsed = RateLimitHeaders::parse(&h).unwrap();
        assert_eq!(parsed.until_reset(), MAX_RESET_WAIT);
    }

    #[test]
    fn reserve_rounds_up_and_leaves_one() {
        assert_eq!(reserve(600, 50), 300);
        assert_eq!(reserve(5, 50), 3);
        assert_eq!(reserve(1, 50), 0);
        assert_eq!(reserve(10, 100), 0);
        assert_eq!(reserve(10, 0), 9);
        assert_eq!(reserve(0, 50), 0);
    }

    fn window(limit: u32, remaining: u32, reset_at: Instant) -> Window {
        Window {
            limit,
            remaining,
            reset_epoch: 100,
            reset_at,
        }
    }

    #[test]
    fn pacing_counts_in_flight_and_keeps_reserve() {
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        assert_eq!(pace(None, 0, now, 50), Pace::Go);
        assert_eq!(pace(None, 1, now, 50), Pace::WaitForInFlight);
        let w = window(10, 7, later);
        assert_eq!(pace(Some(&w), 0, now, 50), Pace::Go);
        assert_eq!(pace(Some(&w), 1, now, 50), Pace::Go);
        assert_eq!(pace(Some(&w), 2, now, 50), Pace::WaitUntil(later));
        assert_eq!(
            pace(Some(&window(10, 5, later)), 0, now, 50),
            Pace::WaitUntil(later)
        );
        // Once the window is over the bucket is full again.
        assert_eq!(pace(Some(&window(10, 0, now)), 0, now, 50), Pace::Go);
        assert_eq!(
            pace(Some(&window(10, 0, now)), 5, now, 50),
            Pace::WaitForInFlight
        );
    }

    #[test]
    fn observe_orders_windows() {
        let now = Instant::now();
        let h = |remaining, reset| RateLimitHeaders {
            limit: 10,
            remaining,
            reset,
            date: Some(reset - 2),
        };
        let mut w = None;
        observe(&mut w, &h(8, 100), false, now);
        assert_eq!(w.unwrap().remaining, 8);
        assert_eq!(w.unwrap().reset_at, now + Duration::from_secs(3));
        observe(&mut w, &h(9, 100), false, now);
        assert_eq!(w.unwrap().remaining, 8, "late answer of the same window");
        observe(&mut w, &h(1, 99), false, now);
        assert_eq!(w.unwrap().remaining, 8, "older window ignored");
        observe(&mut w, &h(9, 160), false, now);
        assert_eq!((w.unwrap().remaining, w.unwrap().reset_epoch), (9, 160));
        observe(&mut w, &h(5, 160), true, now);
        assert_eq!(w.unwrap().remaining, 0, "429 empties the window");
        let conc = RateLimitHeaders {
            limit: 0,
            remaining: 0,
            reset: 500,
            date: None,
        };
        observe(&mut w, &conc, true, now);
        assert_eq!(
            w.unwrap().reset_epoch,
            160,
            "concurrency 429 leaves the window"
        );
        assert_eq!(classify(429, Some(&conc)), Action::Backoff);
        assert_eq!(classify(429, None), Action::Backoff);
        assert_eq!(classify(503, None), Action::Backoff);
        assert_eq!(classify(404, None), Action::Done);
        assert_eq!(classify(200, None), Action::Done);
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        assert_eq!(backoff(0, base, cap, 0.0), Duration::from_millis(50));
        assert_eq!(backoff(3, base, cap, 0.0), Duration::from_millis(400));
        assert_eq!(backoff(10, base, cap, 0.0), Duration::from_secs(1));
        assert!(backoff(40, base, cap, 0.999) < cap);
        assert!(backoff(2, base, cap, 0.999) > backoff(2, base, cap, 0.0));
    }
}
