//! The shrink guard: whether a new snapshot saw so many fewer users or groups than the last
//! good one that it more likely lost access (a token scoped down, an API client without an
//! admin role answered with empty lists) than reflects the org.

/// Thresholds, from the connector's `spec.shrinkGuard` with defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShrinkThresholds {
    /// Largest accepted drop of users, in percent (100 accepts any).
    pub max_user_drop_percent: u8,
    /// Largest accepted drop of groups, in percent (100 accepts any).
    pub max_group_drop_percent: u8,
    /// Previous counts below this are never guarded.
    pub min_previous_count: u64,
}

/// Users and groups in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeSize {
    /// In-scope users.
    pub users: u64,
    /// In-scope groups.
    pub groups: u64,
}

/// A drop beyond its threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shrank {
    /// `users` or `groups`.
    pub what: &'static str,
    /// Count in the last good snapshot.
    pub before: u64,
    /// Count in the new one.
    pub after: u64,
    /// The threshold that was exceeded, in percent.
    pub limit_percent: u8,
}

impl Shrank {
    /// The drop in whole percent, rounded down.
    pub fn percent(&self) -> u64 {
        (self.before - self.after) * 100 / self.before
    }

    /// The condition message: what dropped, by how much, and how to accept it.
    pub fn message(&self) -> String {
        let field = match self.what {
            "users" => "maxUserDropPercent",
            _ => "maxGroupDropPercent",
        };
        format!(
            "the sync saw {} {} against {} in the last good sync (a {}% drop, more than \
             shrinkGuard.{field} {}%); the last good snapshot stays in use. If the drop is \
             real, raise shrinkGuard.{field}",
            self.after,
            self.what,
            self.before,
            self.percent(),
            self.limit_percent
        )
    }
}

/// The first of users, then groups, that dropped by more than its threshold from `previous`
/// (the last good sync) to `new`; `None` when the drop is acceptable or there is no previous.
pub fn check(previous: Option<ScopeSize>, new: ScopeSize, t: &ShrinkThresholds) -> Option<Shrank> {
    let previous = previous?;
    [
        ("users", previous.users, new.users, t.max_user_drop_percent),
        (
            "groups",
            previous.groups,
            new.groups,
            t.max_group_drop_percent,
        ),
    ]
    .into_iter()
    .find_map(|(what, before, after, limit)| {
        // before * (100 - limit) > after * 100, in integers: dropped more than `limit`%.
        let too_far = before >= t.min_previous_count
            && before > after
            && after * 100 < before * (100 - u64::from(limit.min(100)));
        too_far.then_some(Shrank {
            what,
            before,
            after,
            limit_percent: limit,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: ShrinkThresholds = ShrinkThresholds {
        max_user_drop_percent: 50,
        max_group_drop_percent: 20,
        min_previous_count: 10,
    };

    fn size(users: u64, groups: u64) -> ScopeSize {
        ScopeSize { users, groups }
    }

    #[test]
    fn a_drop_beyond_the_threshold_is_caught_with_a_message_that_says_how_to_accept_it() {
        let s = check(Some(size(20_000, 500)), size(0, 500), &T).unwrap();
        assert_eq!(
            (s.what, s.before, s.after, s.percent()),
            ("users", 20_000, 0, 100)
        );
        assert_eq!(
            s.message(),
            "the sync saw 0 users against 20000 in the last good sync (a 100% drop, more than \
             shrinkGuard.maxUserDropPercent 50%); the last good snapshot stays in use. If the \
             drop is real, raise shrinkGuard.maxUserDropPercent"
        );
        let g = check(Some(size(100, 500)), size(100, 399), &T).unwrap();
        assert_eq!((g.what, g.percent()), ("groups", 20));
    }

    #[test]
    fn drops_up_to_the_threshold_growth_small_orgs_and_first_syncs_pass() {
        // Exactly 50% and exactly 20%: accepted.
        assert_eq!(check(Some(size(100, 500)), size(50, 400), &T), None);
        assert_eq!(check(Some(size(100, 500)), size(500, 900), &T), None);
        // Below minPreviousCount.
        assert_eq!(check(Some(size(9, 9)), size(0, 0), &T), None);
        assert_eq!(check(None, size(0, 0), &T), None);
        // 100 accepts anything, 0 refuses any drop.
        let off = ShrinkThresholds {
            max_user_drop_percent: 100,
            max_group_drop_percent: 100,
            ..T
        };
        assert_eq!(check(Some(size(1000, 1000)), size(0, 0), &off), None);
        let strict = ShrinkThresholds {
            max_user_drop_percent: 0,
            ..T
        };
        assert!(check(Some(size(1000, 10)), size(999, 10), &strict).is_some());
    }
}
