//! Request planning: page sizes, the choice of how to read memberships, and the request floor
//! (the fewest requests any client could make for the same snapshot).

use serde::{Deserialize, Serialize};

/// Users per page of `GET /api/v1/users` (Okta's maximum).
pub const USERS_PAGE: u32 = 200;
/// Groups per page of `GET /api/v1/groups` (Okta's documented default and recommendation).
pub const GROUPS_PAGE: u32 = 200;
/// Members per page of `GET /api/v1/groups/{id}/users` (default; the maximum is undocumented).
pub const MEMBERS_PAGE: u32 = 1000;
/// Assignees per page of `GET /api/v1/iam/assignees/users` (default).
pub const ASSIGNEES_PAGE: u32 = 100;

/// Pages needed to read `items` items at `page` a page when the list must be asked at least
/// once (an empty list still costs one request).
pub fn list_pages(items: u64, page: u32) -> u64 {
    items.div_ceil(u64::from(page)).max(1)
}

/// How group memberships are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MembershipStrategy {
    /// `GET /groups/{id}/users` for each in-scope group with members.
    #[default]
    PerGroup,
    /// `GET /users/{id}/groups` for each in-scope user (the endpoint is not paged).
    PerUser,
}

/// The membership plan and what each way would cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MembershipPlan {
    /// The cheaper way.
    pub strategy: MembershipStrategy,
    /// Requests needed per group.
    pub per_group_requests: u64,
    /// Requests needed per user.
    pub per_user_requests: u64,
}

impl MembershipPlan {
    /// Requests the chosen way needs.
    pub fn requests(&self) -> u64 {
        match self.strategy {
            MembershipStrategy::PerGroup => self.per_group_requests,
            MembershipStrategy::PerUser => self.per_user_requests,
        }
    }
}

/// Requests to read the members of groups with these member counts (`expand=stats`
/// `usersCount`): empty groups are skipped, the others take `ceil(m / 1000)` pages.
pub fn per_group_requests(member_counts: impl IntoIterator<Item = u64>) -> u64 {
    member_counts
        .into_iter()
        .filter(|&m| m > 0)
        .map(|m| m.div_ceil(u64::from(MEMBERS_PAGE)))
        .sum()
}

/// Picks the way with fewer requests: per group (from the groups' member counts) or one
/// request per in-scope user. Ties go to per group, which reads fewer bytes per membership.
pub fn choose_membership_plan(
    group_member_counts: impl IntoIterator<Item = u64>,
    users_in_scope: u64,
) -> MembershipPlan {
    let per_group_requests = per_group_requests(group_member_counts);
    let per_user_requests = users_in_scope;
    let strategy = if per_user_requests < per_group_requests {
        MembershipStrategy::PerUser
    } else {
        MembershipStrategy::PerGroup
    };
    MembershipPlan {
        strategy,
        per_group_requests,
        per_user_requests,
    }
}

/// Where group-held roles are learned from. Both ways are exact; user role lists are read
/// for in-scope admins either way, and an out-of-scope user's own roles are never reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RoleStrategy {
    /// Role lists of the in-scope admins, plus `GET /groups/{id}/roles` for each in-scope group
    /// without in-scope members. A group with an in-scope member that holds a role makes that
    /// member an admin, whose role list names the group; a group whose in-scope members are
    /// not admins holds no role.
    #[default]
    GroupLists,
    /// Role lists of every admin (in scope or not: every member of a role-holding group is an
    /// admin), plus `GET /groups/{id}/roles` for each in-scope group without any member.
    AssigneeLists,
}

/// The role-read plan and what each way would cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolePlan {
    /// The cheaper way.
    pub strategy: RoleStrategy,
    /// Requests of [`RoleStrategy::GroupLists`].
    pub group_lists_requests: u64,
    /// Requests of [`RoleStrategy::AssigneeLists`].
    pub assignee_lists_requests: u64,
}

impl RolePlan {
    /// Requests the chosen way needs.
    pub fn requests(&self) -> u64 {
        match self.strategy {
            RoleStrategy::GroupLists => self.group_lists_requests,
            RoleStrategy::AssigneeLists => self.assignee_lists_requests,
        }
    }
}

/// What the role plan is chosen from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleCounts {
    /// Users `/iam/assignees/users` returned (`A`).
    pub admins: u64,
    /// Of those, users in scope (`A_in`).
    pub admins_in_scope: u64,
    /// In-scope groups without an in-scope member (`G_0`).
    pub groups_without_in_scope_members: u64,
    /// In-scope groups without any member, by `usersCount` (unknown counts included) (`G_e`).
    pub groups_without_members: u64,
}

/// Picks the way with fewer requests: `A_in + G_0` or `A + G_e`. Ties go to the group lists,
/// which read no out-of-scope user.
pub fn choose_role_plan(c: &RoleCounts) -> RolePlan {
    let group_lists_requests = c.admins_in_scope + c.groups_without_in_scope_members;
    let assignee_lists_requests = c.admins + c.groups_without_members;
    let strategy = if assignee_lists_requests < group_lists_requests {
        RoleStrategy::AssigneeLists
    } else {
        RoleStrategy::GroupLists
    };
    RolePlan {
        strategy,
        group_lists_requests,
        assignee_lists_requests,
    }
}

/// What the request floor depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FloorInputs {
    /// In-scope users (`U_f`).
    pub users: u64,
    /// In-scope groups (`G`).
    pub groups: u64,
    /// Member-page requests of the cheaper membership way.
    pub membership_requests: u64,
    /// Which way that is (it decides the rate-limit bucket those requests draw on).
    pub membership_strategy: MembershipStrategy,
    /// Users holding an admin role (`A`, the length of `/iam/assignees/users`).
    pub admins: u64,
    /// Role-list requests of the cheaper role plan (`min(A_in + G_0, A + G_e)`).
    #[serde(default)]
    pub role_requests: u64,
    /// Custom roles (`CR`), one permissions request each.
    pub custom_roles: u64,
}

/// The request floor under the documented page limits:
/// `ceil(U_f/200) + ceil(G/200) + min(per-group, per-user) + ceil(A/100) + R + 1 + CR`
/// with `R` the cheaper role plan's requests,
/// where every list that must be asked costs at least one request even when empty.
pub fn request_floor(f: &FloorInputs) -> u64 {
    list_pages(f.users, USERS_PAGE)
        + list_pages(f.groups, GROUPS_PAGE)
        + f.membership_requests
        + list_pages(f.admins, ASSIGNEES_PAGE)
        + f.role_requests
        + 1
        + f.custom_roles
}

/// The floor's requests split by Okta rate-limit bucket (Workforce table: users list; groups
/// list and membership calls; everything else, where `/users/{id}/groups`,
/// `/users/{id}/roles` and `/iam/*` are assumed to count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FloorByBucket {
    /// `GET /api/v1/users`.
    pub users: u64,
    /// `GET /api/v1/groups` and `/api/v1/groups/{id}/users`.
    pub groups: u64,
    /// Every other call.
    pub default: u64,
}

/// Splits [`request_floor`] by bucket; the three parts add up to it.
pub fn floor_by_bucket(f: &FloorInputs) -> FloorByBucket {
    let (group_members, user_groups) = match f.membership_strategy {
        MembershipStrategy::PerGroup => (f.membership_requests, 0),
        MembershipStrategy::PerUser => (0, f.membership_requests),
    };
    FloorByBucket {
        users: list_pages(f.users, USERS_PAGE),
        groups: list_pages(f.groups, GROUPS_PAGE) + group_members,
        default: user_groups
            + list_pages(f.admins, ASSIGNEES_PAGE)
            + f.role_requests
            + 1
            + f.custom_roles,
    }
}

/// The least time `requests` can take on a bucket allowing `limit` a `window` when a client
/// uses only `share_percent` of it: the first window's share goes at once, and every further
/// share needs a new window, so `(ceil(requests / share) - 1) * window`.
pub fn rate_limit_time_floor(
    requests: u64,
    limit: u32,
    share_percent: u8,
    window: std::time::Duration,
) -> std::time::Duration {
    let share = (u64::from(limit) * u64::from(share_percent) / 100).max(1);
    let windows = requests.div_ceil(share).saturating_sub(1);
    window.saturating_mul(u32::try_from(windows).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_round_up_and_cost_at_least_one() {
        assert_eq!(list_pages(0, 200), 1);
        assert_eq!(list_pages(1, 200), 1);
        assert_eq!(list_pages(200, 200), 1);
        assert_eq!(list_pages(201, 200), 2);
    }

    #[test]
    fn per_group_skips_empty_groups_and_pages_by_1000() {
        assert_eq!(
            per_group_requests([0, 1, 1000, 1001, 0, 2500]),
            1 + 1 + 2 + 3
        );
    }

    #[test]
    fn picks_per_group_when_groups_are_few() {
        let plan = choose_membership_plan([5000, 3000, 0], 10_000);
        assert_eq!(plan.strategy, MembershipStrategy::PerGroup);
        assert_eq!(plan.requests(), 8);
    }

    #[test]
    fn picks_per_user_when_users_are_few() {
        let plan = choose_membership_plan(vec![10; 500], 40);
        assert_eq!(plan.strategy, MembershipStrategy::PerUser);
        assert_eq!(plan.requests(), 40);
        assert_eq!(plan.per_group_requests, 500);
    }

    #[test]
    fn time_floor_counts_the_windows_after_the_first() {
        let w = std::time::Duration::from_secs(60);
        // 250 a window at 50% of 500.
        assert_eq!(
            rate_limit_time_floor(250, 500, 50, w),
            std::time::Duration::ZERO
        );
        assert_eq!(rate_limit_time_floor(251, 500, 50, w), w);
        assert_eq!(rate_limit_time_floor(5100, 500, 50, w), w * 20);
        assert_eq!(rate_limit_time_floor(5100, 500, 100, w), w * 10);
        assert_eq!(
            rate_limit_time_floor(0, 500, 50, w),
            std::time::Duration::ZERO
        );
    }

    #[test]
    fn role_plan_skips_out_of_scope_admins_unless_reading_them_is_cheaper() {
        // A built-in group holds a role: every user is an admin, few are in scope.
        let everyone = RoleCounts {
            admins: 100_000,
            admins_in_scope: 20_000,
            groups_without_in_scope_members: 40,
            groups_without_members: 3,
        };
        let plan = choose_role_plan(&everyone);
        assert_eq!(plan.strategy, RoleStrategy::GroupLists);
        assert_eq!(plan.requests(), 20_040);
        assert_eq!(plan.assignee_lists_requests, 100_003);
        // Few admins, but the group filter picked many groups of another tenant.
        let few = RoleCounts {
            admins: 10,
            admins_in_scope: 2,
            groups_without_in_scope_members: 300,
            groups_without_members: 5,
        };
        let plan = choose_role_plan(&few);
        assert_eq!(plan.strategy, RoleStrategy::AssigneeLists);
        assert_eq!(plan.requests(), 15);
        // Ties read no out-of-scope user.
        let tie = RoleCounts {
            admins: 4,
            admins_in_scope: 2,
            groups_without_in_scope_members: 2,
            groups_without_members: 0,
        };
        assert_eq!(choose_role_plan(&tie).strategy, RoleStrategy::GroupLists);
    }

    #[test]
    fn ties_go_per_group() {
        let plan = choose_membership_plan([10, 10], 2);
        assert_eq!(plan.strategy, MembershipStrategy::PerGroup);
    }

    #[test]
    fn floor_matches_the_issue_formula() {
        // 2000 users, 500 groups of 200 members each, 30 admins, 4 custom roles.
        let plan = choose_membership_plan(vec![200; 500], 2000);
        let f = FloorInputs {
            users: 2000,
            groups: 500,
            membership_requests: plan.requests(),
            membership_strategy: plan.strategy,
            admins: 30,
            role_requests: 30,
            custom_roles: 4,
        };
        assert_eq!(request_floor(&f), 10 + 3 + 500 + 1 + 30 + 1 + 4);
        let by = floor_by_bucket(&f);
        assert_eq!(
            by,
            FloorByBucket {
                users: 10,
                groups: 503,
                default: 36
            }
        );
        assert_eq!(by.users + by.groups + by.default, request_floor(&f));
        let per_user = FloorInputs {
            membership_strategy: MembershipStrategy::PerUser,
            ..f
        };
        assert_eq!(floor_by_bucket(&per_user).default, 536);
        // An empty org still costs one request for each of the four lists.
        assert_eq!(request_floor(&FloorInputs::default()), 4);
    }
}
