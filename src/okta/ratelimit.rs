//! Rate-limit bookkeeping: which bucket a request draws on, what Okta's headers say about
//! it, and the pure pacing and retry decisions. [`RateLimiter`] is the shared, stateful part.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderMap;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Extra wait after a window's reset when the server's clock is not known to better than a
/// second (no `Date` seen yet): `Reset` and `Date` have one-second resolution, so the true
/// reset may be up to a second later than `Reset - Date` suggests (Okta's SDKs add the same
/// second).
const RESET_MARGIN: Duration = Duration::from_secs(1);

/// Extra wait after a window's reset once [`ServerClock`] has pinned the server's clock down
/// from many `Date`s. It covers what the estimate cannot see: Okta answers from many front
/// ends, and whether their clocks agree to better than this is not documented (an assumption;
/// a wake-up that is too early costs one 429, which is retried at the next reset).
const ESTIMATED_RESET_MARGIN: Duration = Duration::from_millis(100);

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

/// What the client has learnt of the server's clock: a lower bound on `server - local` in
/// milliseconds, local time counted from `anchor`.
///
/// A response stamped `Date: D` (whole seconds, rounded down) was made at a server time in
/// `[D, D + 1)`, after the request was sent and before its answer arrived; so at the local
/// arrival time the server's clock read at least `D`, and at the local sending time less than
/// `D + 1`. The highest lower bound over many responses is within a few milliseconds of the
/// truth once one of them was made just after the server's second ticked, which with
/// hundreds of requests per window happens early. A lower bound that contradicts a later
/// upper bound means the server's clock was stepped (or another front end's clock differs):
/// the estimate starts again from that response.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ServerClock {
    anchor: Instant,
    lower_ms: Option<i64>,
}

impl ServerClock {
    pub(crate) fn new(anchor: Instant) -> ServerClock {
        ServerClock {
            anchor,
            lower_ms: None,
        }
    }

    fn local_ms(&self, at: Instant) -> i64 {
        i64::try_from(at.saturating_duration_since(self.anchor).as_millis()).unwrap_or(i64::MAX)
    }

    /// Folds in one response: its `Date` (epoch seconds), when its request was sent and when
    /// its answer arrived.
    pub(crate) fn learn(&mut self, date: i64, sent: Instant, received: Instant) {
        let date_ms = date.saturating_mul(1000);
        let lower = date_ms.saturating_sub(self.local_ms(received));
        let upper = date_ms
            .saturating_add(1000)
            .saturating_sub(self.local_ms(sent));
        self.lower_ms = Some(match self.lower_ms {
            Some(known) if known < upper => known.max(lower),
            _ => lower,
        });
    }

    /// The local instant after which a window resetting at server epoch second `reset` is
    /// over, as seen `now`; `None` until a `Date` has been seen. Never further than
    /// [`MAX_RESET_WAIT`] from `now`.
    pub(crate) fn reset_instant(&self, reset: i64, now: Instant) -> Option<Instant> {
        let lower = self.lower_ms?;
        let local_ms = reset.saturating_mul(1000).saturating_sub(lower);
        let wait_ms = local_ms.saturating_sub(self.local_ms(now));
        let wait = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0));
        Some(now + wait.min(MAX_RESET_WAIT) + ESTIMATED_RESET_MARGIN)
    }
}

/// The local instant after which the window of `h` is over: from the server-clock estimate
/// when there is one, else from `Reset - Date` (or the local clock) plus a second.
pub(crate) fn reset_at(h: &RateLimitHeaders, clock: &ServerClock, now: Instant) -> Instant {
    clock
        .reset_instant(h.reset, now)
        .unwrap_or_else(|| now + h.until_reset() + RESET_MARGIN)
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

/// Folds one response's headers into the bucket's window, `reset_at` being the local instant
/// its reset is now believed to be (see [`reset_at`]). Observations of an older window are
/// ignored; within a window the lowest `remaining` wins, since responses may arrive out of
/// order, and the latest reset estimate wins, since it is the best informed. A 429 empties the
/// window whatever `Remaining` said.
pub(crate) fn observe(
    window: &mut Option<Window>,
    h: &RateLimitHeaders,
    rate_limited: bool,
    reset_at: Instant,
) {
    if h.is_concurrency() {
        return;
    }
    let remaining = if rate_limited { 0 } else { h.remaining };
    let fresh = Window {
        limit: h.limit,
        remaining,
        reset_epoch: h.reset,
        reset_at,
    };
    match window {
        Some(w) if h.reset == w.reset_epoch => {
            w.limit = h.limit;
            w.remaining = w.remaining.min(remaining);
            w.reset_at = reset_at;
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

/// A window per bucket plus requests in flight, and the org's server clock.
struct Slots {
    buckets: HashMap<&'static str, Slot>,
    clock: ServerClock,
}

/// Shared pacing state of one org: a window per bucket plus requests in flight.
pub(crate) struct RateLimiter {
    slots: Mutex<Slots>,
    changed: Notify,
    /// Share of each bucket this org's clients may use; changeable while in use.
    budget_percent: AtomicU8,
}

/// A request counted as in flight on a bucket; dropping it (also on cancellation) releases
/// the count and wakes waiters.
pub(crate) struct Ticket {
    limiter: Arc<RateLimiter>,
    bucket: &'static str,
    /// When the request was let go (no later than it was sent), for the server clock.
    issued: Instant,
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
            slots: Mutex::new(Slots {
                buckets: HashMap::new(),
                clock: ServerClock::new(Instant::now()),
            }),
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
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
                let slot = slots.buckets.entry(bucket).or_default();
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
                        issued: now,
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
        let now = Instant::now();
        let mut slots = self.limiter.lock();
        if let Some(date) = headers.date {
            slots.clock.learn(date, self.issued, now);
        }
        let reset_at = reset_at(headers, &slots.clock, now);
        let slot = slots.buckets.entry(self.bucket).or_default();
        observe(&mut slot.window, headers, rate_limited, reset_at);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        {
            let mut slots = self.limiter.lock();
            let slot = slots.buckets.entry(self.bucket).or_default();
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
        let mut clock = ServerClock::new(now);
        let absurd = at(i64::MAX, Some(0));
        assert_eq!(
            reset_at(&absurd, &clock, now),
            now + MAX_RESET_WAIT + RESET_MARGIN
        );
        // The same bound once the server's clock is estimated, from either extreme of `Date`.
        clock.learn(0, now, now);
        assert_eq!(
            reset_at(&absurd, &clock, now),
            now + MAX_RESET_WAIT + ESTIMATED_RESET_MARGIN
        );
        clock.learn(i64::MIN, now, now);
        assert_eq!(
            reset_at(&absurd, &clock, now),
            now + MAX_RESET_WAIT + ESTIMATED_RESET_MARGIN
        );
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
        let at = |ms| now + Duration::from_millis(ms);
        let mut w = None;
        observe(&mut w, &h(8, 100), false, at(3000));
        assert_eq!(w.unwrap().remaining, 8);
        assert_eq!(w.unwrap().reset_at, at(3000));
        observe(&mut w, &h(9, 100), false, at(2500));
        assert_eq!(w.unwrap().remaining, 8, "late answer of the same window");
        assert_eq!(w.unwrap().reset_at, at(2500), "the latest estimate wins");
        observe(&mut w, &h(1, 99), false, at(1000));
        assert_eq!(w.unwrap().remaining, 8, "older window ignored");
        assert_eq!(w.unwrap().reset_at, at(2500));
        observe(&mut w, &h(9, 160), false, at(60_000));
        assert_eq!((w.unwrap().remaining, w.unwrap().reset_epoch), (9, 160));
        observe(&mut w, &h(5, 160), true, at(60_000));
        assert_eq!(w.unwrap().remaining, 0, "429 empties the window");
        let conc = RateLimitHeaders {
            limit: 0,
            remaining: 0,
            reset: 500,
            date: None,
        };
        observe(&mut w, &conc, true, at(1));
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

    /// The server's clock runs `OFFSET_MS` ahead of local time counted from the anchor.
    const OFFSET_MS: i64 = 1_000_000_000_500;

    /// The `Date` of a response made at local millisecond `made`.
    fn date_at(made: i64) -> i64 {
        (made + OFFSET_MS).div_euclid(1000)
    }

    #[test]
    fn server_clock_is_pinned_down_to_the_response_that_saw_its_second_tick() {
        let anchor = Instant::now();
        let local = |ms: u64| anchor + Duration::from_millis(ms);
        let mut clock = ServerClock::new(anchor);
        assert_eq!(clock.reset_instant(1_000_000_060, local(0)), None);
        // Made half a second into the server's second: the bound is half a second loose.
        clock.learn(date_at(5), local(0), local(10));
        assert_eq!(clock.lower_ms, Some(OFFSET_MS - 510));
        // Made just after the tick: within the 5 ms of its arrival.
        clock.learn(date_at(500), local(495), local(505));
        assert_eq!(clock.lower_ms, Some(OFFSET_MS - 5));
        // A looser bound later does not undo it.
        clock.learn(date_at(900), local(890), local(910));
        assert_eq!(clock.lower_ms, Some(OFFSET_MS - 5));
        // The window resetting at server second 1_000_000_060 is over at local 59_500 ms;
        // the estimate wakes 5 ms late plus the margin, where `Reset - Date + 1 s` would
        // wait until local 60_600 ms.
        assert_eq!(
            clock.reset_instant(1_000_000_060, local(600)),
            Some(local(59_505) + ESTIMATED_RESET_MARGIN)
        );
        let headers = RateLimitHeaders {
            limit: 10,
            remaining: 0,
            reset: 1_000_000_060,
            date: Some(date_at(600)),
        };
        assert_eq!(
            reset_at(&headers, &ServerClock::new(anchor), local(600)),
            local(60_600)
        );
        // A reset already past by the estimate waits only for the margin.
        assert_eq!(
            clock.reset_instant(1_000_000_000, local(600)),
            Some(local(600) + ESTIMATED_RESET_MARGIN)
        );
    }

    #[test]
    fn server_clock_starts_again_when_the_server_clock_steps_back() {
        let anchor = Instant::now();
        let local = |ms: u64| anchor + Duration::from_millis(ms);
        let mut clock = ServerClock::new(anchor);
        clock.learn(date_at(500), local(495), local(505));
        assert_eq!(clock.lower_ms, Some(OFFSET_MS - 5));
        // Ten seconds back: this response was made before the server's clock read
        // `date + 1`, which the old lower bound says had passed; the old bound is dropped.
        let stepped = date_at(2_000) - 10;
        clock.learn(stepped, local(1_990), local(2_010));
        assert_eq!(clock.lower_ms, Some(stepped * 1000 - 2_010));
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
