//! Okta's per-endpoint-family rate-limit windows, as pure bookkeeping over a clock the caller
//! passes in.

use std::time::Duration;

/// The endpoint families Okta counts separately (see `shared/okta/NOTES.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// `GET /api/v1/users` (list).
    Users,
    /// `GET /api/v1/users/{idOrLogin}`.
    UserById,
    /// `/api/v1/groups` list and the membership calls under `/api/v1/groups/{id}/users`.
    Groups,
    /// `GET /api/v1/groups/{groupId}`.
    GroupById,
    /// `GET /api/v1/logs` (the System Log has its own limit).
    Logs,
    /// Every other `/api/v1` call.
    Default,
}

impl Bucket {
    const ALL: [Bucket; 6] = [
        Bucket::Users,
        Bucket::UserById,
        Bucket::Groups,
        Bucket::GroupById,
        Bucket::Logs,
        Bucket::Default,
    ];

    fn index(self) -> usize {
        Bucket::ALL.iter().position(|b| *b == self).unwrap_or(5)
    }
}

/// Limits per window for each bucket, and the concurrency limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Length of one window (Okta: about a minute).
    pub window: Duration,
    /// `GET /api/v1/users` per window.
    pub users: u32,
    /// `GET /api/v1/users/{idOrLogin}` per window.
    pub user_by_id: u32,
    /// Group list and membership calls per window.
    pub groups: u32,
    /// `GET /api/v1/groups/{groupId}` per window.
    pub group_by_id: u32,
    /// `GET /api/v1/logs` per window.
    pub logs: u32,
    /// Any other `/api/v1` call per window.
    pub default: u32,
    /// Requests in flight at once before answering 429 with `X-Rate-Limit-Limit: 0`.
    pub concurrency: u32,
}

impl Default for RateLimits {
    /// Okta's published Workforce defaults.
    fn default() -> Self {
        RateLimits {
            window: Duration::from_secs(60),
            users: 600,
            user_by_id: 2000,
            groups: 500,
            group_by_id: 1000,
            // Not in NOTES.md's table; 120 a minute is the System Log figure third-party
            // summaries of Okta's rate-limit page give (unverified against Okta itself).
            logs: 120,
            default: 1200,
            concurrency: 75,
        }
    }
}

impl RateLimits {
    /// The per-window limit of `bucket`.
    pub fn limit(&self, bucket: Bucket) -> u32 {
        match bucket {
            Bucket::Users => self.users,
            Bucket::UserById => self.user_by_id,
            Bucket::Groups => self.groups,
            Bucket::GroupById => self.group_by_id,
            Bucket::Logs => self.logs,
            Bucket::Default => self.default,
        }
    }
}

/// What the limiter decided for one request: whether it may proceed, and the header values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The request may proceed.
    pub allowed: bool,
    /// `X-Rate-Limit-Limit`.
    pub limit: u32,
    /// `X-Rate-Limit-Remaining`.
    pub remaining: u32,
    /// `X-Rate-Limit-Reset`, UTC epoch seconds.
    pub reset: i64,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start_ms: i64,
    used: u32,
}

/// Window state for every bucket. Windows open at a bucket's first request after the previous
/// one ended, so they are not aligned to the minute (as on Okta).
#[derive(Debug, Default)]
pub struct Limiter {
    windows: [Option<Window>; 6],
}

impl Limiter {
    /// Accounts one request to `bucket` at `now_ms` (epoch milliseconds). With `consume` false
    /// (requests refused before reaching the bucket, e.g. bad tokens) it only reports the state.
    pub fn check(
        &mut self,
        bucket: Bucket,
        limits: &RateLimits,
        now_ms: i64,
        consume: bool,
    ) -> Decision {
        let window_ms = i64::try_from(limits.window.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let limit = limits.limit(bucket);
        let slot = &mut self.windows[bucket.index()];
        let current = match slot {
            Some(w) if now_ms < w.start_ms + window_ms => w,
            _ => slot.insert(Window {
                start_ms: now_ms,
                used: 0,
            }),
        };
        let allowed = current.used < limit;
        if allowed && consume {
            current.used += 1;
        }
        let end_ms = current.start_ms + window_ms;
        Decision {
            allowed,
            limit,
            remaining: limit.saturating_sub(current.used),
            reset: end_ms.div_euclid(1000) + i64::from(end_ms.rem_euclid(1000) != 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RateLimits {
        RateLimits {
            window: Duration::from_secs(10),
            users: 3,
            ..RateLimits::default()
        }
    }

    #[test]
    fn counts_down_then_refuses_until_the_window_ends() {
        let mut l = Limiter::default();
        let lim = limits();
        let t0 = 1_000_500;
        let seen: Vec<_> = (0..4)
            .map(|i| l.check(Bucket::Users, &lim, t0 + i, true))
            .collect();
        assert_eq!(
            seen.iter().map(|d| d.remaining).collect::<Vec<_>>(),
            [2, 1, 0, 0]
        );
        assert!(seen[..3].iter().all(|d| d.allowed));
        assert!(!seen[3].allowed);
        // Reset rounds the window end up to whole seconds.
        assert_eq!(seen[0].reset, 1011);
        let after = l.check(Bucket::Users, &lim, t0 + 10_000, true);
        assert!(after.allowed);
        assert_eq!(after.remaining, 2);
    }

    #[test]
    fn buckets_are_independent_and_peeking_does_not_consume() {
        let mut l = Limiter::default();
        let lim = limits();
        for _ in 0..3 {
            l.check(Bucket::Users, &lim, 0, true);
        }
        assert!(l.check(Bucket::Groups, &lim, 0, true).allowed);
        let peek = l.check(Bucket::Groups, &lim, 0, false);
        assert_eq!(peek.remaining, 499);
        assert!(!l.check(Bucket::Users, &lim, 1, false).allowed);
    }
}
