//! A short-lived view of each group's members, shared by the rounds of every
//! `GroupMembership` of that group.
//!
//! Okta has no "is this user in this group" call: the cheapest exact membership check is the
//! group's member list (`GET /api/v1/groups/{id}/users`, 1000 a page), which draws on the
//! same bucket as the membership writes. Reading it once per round would double the cost of
//! 1,000 single-user `GroupMembership`s. So a round reuses a list read at most `max_age` ago
//! **by this leadership term**, updated with the term's own successful writes. A list is
//! dropped when it is older than `max_age`, when the connector has synced since it was read
//! (the drift check after each sync always reads Okta), and after a write whose effect is
//! unknown (a failure other than 404).
//!
//! A group's rounds run in batches, one batch per group at a time ([`batch`](super::batch)),
//! so a list and the writes applied to it never interleave with another batch of the group.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::decide::WriteError;

#[derive(Debug)]
struct Entry {
    read_at: Instant,
    /// The connector's sync this list was read under (its last sync time).
    sync: String,
    members: BTreeSet<String>,
}

/// Member lists by group key (the record name: org domain and group id).
#[derive(Debug)]
pub struct MemberCache {
    max_age: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl MemberCache {
    /// An empty cache whose lists are trusted for `max_age` (zero: never reused).
    pub fn new(max_age: Duration) -> Self {
        MemberCache {
            max_age,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The group's members if a list read under `sync` is younger than `max_age` at `now`.
    pub fn get(&self, key: &str, sync: &str, now: Instant) -> Option<BTreeSet<String>> {
        let entries = self.entries();
        let e = entries.get(key)?;
        let fresh = e.sync == sync && now.saturating_duration_since(e.read_at) < self.max_age;
        fresh.then(|| e.members.clone())
    }

    /// Stores a list just read from Okta.
    pub fn put(&self, key: &str, sync: &str, members: BTreeSet<String>, now: Instant) {
        self.entries().insert(
            key.to_owned(),
            Entry {
                read_at: now,
                sync: sync.to_owned(),
                members,
            },
        );
    }

    /// Forgets the group's list.
    pub fn forget(&self, key: &str) {
        self.entries().remove(key);
    }

    /// Applies a round's writes: a confirmed PUT adds, a confirmed (or 404) DELETE removes, a
    /// refused write changes nothing; any other failure leaves Okta's state unknown and drops
    /// the list.
    pub fn apply(
        &self,
        key: &str,
        grants: &[String],
        revokes: &[String],
        failures: &BTreeMap<String, WriteError>,
    ) {
        let mut entries = self.entries();
        if failures
            .values()
            .any(|f| matches!(f, WriteError::Failed(_)))
        {
            entries.remove(key);
            return;
        }
        let Some(e) = entries.get_mut(key) else {
            return;
        };
        for g in grants.iter().filter(|g| !failures.contains_key(*g)) {
            e.members.insert(g.clone());
        }
        // A refused DELETE left the membership in place.
        for r in revokes
            .iter()
            .filter(|r| !matches!(failures.get(*r), Some(WriteError::Refused(_))))
        {
            e.members.remove(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn lists_are_reused_within_max_age_and_the_same_sync_only() {
        let cache = MemberCache::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(cache.get("g", "s1", t0), None);
        cache.put("g", "s1", set(&["a"]), t0);
        assert_eq!(
            cache.get("g", "s1", t0 + Duration::from_secs(9)),
            Some(set(&["a"]))
        );
        assert_eq!(cache.get("g", "s1", t0 + Duration::from_secs(10)), None);
        assert_eq!(cache.get("g", "s2", t0), None, "a sync since the read");
        assert_eq!(cache.get("other", "s1", t0), None);
        cache.forget("g");
        assert_eq!(cache.get("g", "s1", t0), None);
        let never = MemberCache::new(Duration::ZERO);
        never.put("g", "s1", set(&["a"]), t0);
        assert_eq!(never.get("g", "s1", t0), None);
    }

    #[test]
    fn confirmed_writes_update_the_list_and_unknown_outcomes_drop_it() {
        let cache = MemberCache::new(Duration::from_secs(10));
        let t0 = Instant::now();
        cache.put("g", "s", set(&["a", "b"]), t0);
        let grants = ["c".to_string(), "gone".to_string()];
        let revokes = ["a".to_string(), "x".to_string()];
        let failures = BTreeMap::from([
            ("gone".to_string(), WriteError::NotFound("404".into())),
            ("x".to_string(), WriteError::NotFound("404".into())),
        ]);
        cache.apply("g", &grants, &revokes, &failures);
        assert_eq!(cache.get("g", "s", t0), Some(set(&["b", "c"])));
        let refused = BTreeMap::from([
            ("b".to_string(), WriteError::Refused("403".into())),
            ("d".to_string(), WriteError::Refused("403".into())),
        ]);
        cache.apply("g", &["d".to_string()], &["b".to_string()], &refused);
        assert_eq!(
            cache.get("g", "s", t0),
            Some(set(&["b", "c"])),
            "refused: unchanged"
        );

        let failed = BTreeMap::from([("d".to_string(), WriteError::Failed("timeout".into()))]);
        cache.apply("g", &["d".to_string()], &[], &failed);
        assert_eq!(cache.get("g", "s", t0), None);
        // Applying to a group without a list is a no-op.
        cache.apply("g", &["e".to_string()], &[], &BTreeMap::new());
        assert_eq!(cache.get("g", "s", t0), None);
    }
}
