//! Which OAuth scope each Management API operation the client uses needs, as the spec's
//! `security` section lists them (pure).

use http::Method;

/// `GET /api/v1/org` (the credential check).
pub const ORGS_READ: &str = "okta.orgs.read";
/// Users: list and read.
pub const USERS_READ: &str = "okta.users.read";
/// Groups and their members: list and read.
pub const GROUPS_READ: &str = "okta.groups.read";
/// Adding and removing group members.
pub const GROUPS_MANAGE: &str = "okta.groups.manage";
/// Role assignments, admins, custom roles and their permissions.
pub const ROLES_READ: &str = "okta.roles.read";
/// The System Log, which incremental syncs read.
pub const LOGS_READ: &str = "okta.logs.read";

/// The scopes asked for when none are configured: everything a full sync reads, plus the
/// System Log when syncs may be incremental, plus group writes when it provisions.
pub fn needed(provisioning: bool, incremental: bool) -> Vec<String> {
    let mut scopes = vec![ORGS_READ, USERS_READ, GROUPS_READ, ROLES_READ];
    if incremental {
        scopes.push(LOGS_READ);
    }
    if provisioning {
        scopes.push(GROUPS_MANAGE);
    }
    scopes.into_iter().map(str::to_owned).collect()
}

/// The scope `method path` needs, for paths under `/api/v1/`; `None` for others.
pub fn required(method: &Method, path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("/api/v1/")?.trim_end_matches('/');
    let segments: Vec<&str> = rest.split('/').collect();
    let write = *method != Method::GET && *method != Method::HEAD;
    Some(match segments.as_slice() {
        ["org", ..] => ORGS_READ,
        ["logs", ..] => LOGS_READ,
        ["users", _, "roles", ..] | ["groups", _, "roles", ..] | ["iam", ..] => ROLES_READ,
        ["users", ..] => USERS_READ,
        ["groups", ..] if write => GROUPS_MANAGE,
        ["groups", ..] => GROUPS_READ,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_map_to_the_spec_scopes() {
        let get = |p| required(&Method::GET, p);
        assert_eq!(get("/api/v1/org"), Some(ORGS_READ));
        assert_eq!(get("/api/v1/users"), Some(USERS_READ));
        assert_eq!(get("/api/v1/users/00u1/groups"), Some(USERS_READ));
        assert_eq!(get("/api/v1/users/00u1/roles"), Some(ROLES_READ));
        assert_eq!(get("/api/v1/groups/00g1/users"), Some(GROUPS_READ));
        assert_eq!(get("/api/v1/groups/00g1/roles"), Some(ROLES_READ));
        assert_eq!(get("/api/v1/iam/assignees/users"), Some(ROLES_READ));
        assert_eq!(get("/api/v1/iam/roles/cr0/permissions"), Some(ROLES_READ));
        let put = required(&Method::PUT, "/api/v1/groups/00g1/users/00u1");
        assert_eq!(put, Some(GROUPS_MANAGE));
        assert_eq!(
            required(&Method::DELETE, "/api/v1/groups/g/users/u"),
            Some(GROUPS_MANAGE)
        );
        assert_eq!(get("/oauth2/v1/token"), None);
        assert!(needed(true, false).contains(&GROUPS_MANAGE.to_owned()));
        assert!(!needed(false, false).contains(&GROUPS_MANAGE.to_owned()));
        assert!(needed(false, true).contains(&LOGS_READ.to_owned()));
        assert!(!needed(true, false).contains(&LOGS_READ.to_owned()));
    }
}
