//! Request counters, for metrics and the sync snapshot.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Counters since the client was created.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClientStats {
    /// HTTP requests sent (every attempt, retries included).
    pub requests: u64,
    /// Requests by endpoint family (`users`, `user`, `groups`, `group`, `group_members`, `iam`, `org`, ...).
    pub requests_by_endpoint: BTreeMap<String, u64>,
    /// Responses by HTTP status (transport failures have no status and are not counted here).
    pub requests_by_status: BTreeMap<u16, u64>,
    /// 429 responses received.
    pub rate_limited: u64,
    /// Retries (after 429, 5xx, timeouts or dropped connections).
    pub retries: u64,
    /// Time spent waiting on rate limits (pacing and 429 waits).
    pub rate_limit_wait: Duration,
}

impl ClientStats {
    /// The difference `self - earlier`, for per-sync figures.
    pub fn since(&self, earlier: &ClientStats) -> ClientStats {
        fn diff<K: Ord + Clone>(
            now: &BTreeMap<K, u64>,
            then: &BTreeMap<K, u64>,
        ) -> BTreeMap<K, u64> {
            now.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.saturating_sub(then.get(k).copied().unwrap_or(0)),
                    )
                })
                .filter(|(_, v)| *v > 0)
                .collect()
        }
        ClientStats {
            requests: self.requests.saturating_sub(earlier.requests),
            requests_by_endpoint: diff(&self.requests_by_endpoint, &earlier.requests_by_endpoint),
            requests_by_status: diff(&self.requests_by_status, &earlier.requests_by_status),
            rate_limited: self.rate_limited.saturating_sub(earlier.rate_limited),
            retries: self.retries.saturating_sub(earlier.retries),
            rate_limit_wait: self.rate_limit_wait.saturating_sub(earlier.rate_limit_wait),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_subtracts() {
        let mut a = ClientStats {
            requests: 3,
            ..ClientStats::default()
        };
        a.requests_by_endpoint.insert("users".into(), 3);
        a.requests_by_status.insert(200, 3);
        let mut b = a.clone();
        b.requests = 5;
        b.requests_by_endpoint.insert("users".into(), 4);
        b.requests_by_endpoint.insert("groups".into(), 1);
        b.requests_by_status.insert(200, 4);
        b.requests_by_status.insert(429, 1);
        b.rate_limited = 1;
        b.rate_limit_wait = Duration::from_secs(2);
        let d = b.since(&a);
        assert_eq!(d.requests, 2);
        assert_eq!(d.requests_by_endpoint.get("users"), Some(&1));
        assert_eq!(d.requests_by_endpoint.get("groups"), Some(&1));
        assert_eq!(d.requests_by_status.get(&200), Some(&1));
        assert_eq!(d.requests_by_status.get(&429), Some(&1));
        assert_eq!(d.rate_limited, 1);
        assert_eq!(d.rate_limit_wait, Duration::from_secs(2));
    }
}
