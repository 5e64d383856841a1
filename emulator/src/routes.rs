//! Which emulated operation a request is, decided from method and path alone (pure).

use http::Method;

use super::ratelimit::Bucket;

/// One emulated Management API operation with its path parameters (percent-decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /api/v1/org`.
    Org,
    /// `GET /api/v1/users`.
    Users,
    /// `GET /api/v1/users/{idOrLogin}`.
    User(String),
    /// `GET /api/v1/users/{id}/groups`.
    UserGroups(String),
    /// `GET /api/v1/users/{userId}/roles`.
    UserRoles(String),
    /// `GET /api/v1/groups`.
    Groups,
    /// `GET /api/v1/groups/{groupId}`.
    Group(String),
    /// `GET /api/v1/groups/{groupId}/users`.
    GroupMembers(String),
    /// `PUT /api/v1/groups/{groupId}/users/{userId}`.
    AddMember(String, String),
    /// `DELETE /api/v1/groups/{groupId}/users/{userId}`.
    RemoveMember(String, String),
    /// `GET /api/v1/groups/{groupId}/roles`.
    GroupRoles(String),
    /// `GET /api/v1/iam/assignees/users`.
    RoleAssignees,
    /// `GET /api/v1/iam/roles`.
    CustomRoles,
    /// `GET /api/v1/iam/roles/{roleIdOrLabel}/permissions`.
    RolePermissions(String),
    /// `GET /api/v1/logs`.
    Logs,
}

/// Why a request matched no operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoute {
    /// No such path.
    NotFound,
    /// Known path, other method.
    MethodNotAllowed,
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

impl Route {
    /// Classifies `method path`.
    pub fn parse(method: &Method, path: &str) -> Result<Route, NoRoute> {
        let rest = path
            .strip_prefix("/api/v1/")
            .ok_or(NoRoute::NotFound)?
            .trim_end_matches('/');
        let segs: Vec<String> = rest.split('/').map(decode).collect();
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        let (route, allowed): (Route, &[Method]) = match s.as_slice() {
            ["org"] => (Route::Org, &[Method::GET]),
            ["users"] => (Route::Users, &[Method::GET]),
            ["users", id] => (Route::User(id.to_string()), &[Method::GET]),
            ["users", id, "groups"] => (Route::UserGroups(id.to_string()), &[Method::GET]),
            ["users", id, "roles"] => (Route::UserRoles(id.to_string()), &[Method::GET]),
            ["groups"] => (Route::Groups, &[Method::GET]),
            ["groups", id] => (Route::Group(id.to_string()), &[Method::GET]),
            ["groups", id, "users"] => (Route::GroupMembers(id.to_string()), &[Method::GET]),
            ["groups", id, "roles"] => (Route::GroupRoles(id.to_string()), &[Method::GET]),
            ["groups", g, "users", u] => {
                let (g, u) = (g.to_string(), u.to_string());
                return match *method {
                    Method::PUT => Ok(Route::AddMember(g, u)),
                    Method::DELETE => Ok(Route::RemoveMember(g, u)),
                    _ => Err(NoRoute::MethodNotAllowed),
                };
            }
            ["logs"] => (Route::Logs, &[Method::GET]),
            ["iam", "assignees", "users"] => (Route::RoleAssignees, &[Method::GET]),
            ["iam", "roles"] => (Route::CustomRoles, &[Method::GET]),
            ["iam", "roles", id, "permissions"] => {
                (Route::RolePermissions(id.to_string()), &[Method::GET])
            }
            _ => return Err(NoRoute::NotFound),
        };
        if allowed.contains(method) {
            Ok(route)
        } else {
            Err(NoRoute::MethodNotAllowed)
        }
    }

    /// The route template, used as the key of `byRoute` in the stats.
    pub fn key(&self) -> &'static str {
        match self {
            Route::Org => "GET /api/v1/org",
            Route::Users => "GET /api/v1/users",
            Route::User(_) => "GET /api/v1/users/{idOrLogin}",
            Route::UserGroups(_) => "GET /api/v1/users/{id}/groups",
            Route::UserRoles(_) => "GET /api/v1/users/{userId}/roles",
            Route::Groups => "GET /api/v1/groups",
            Route::Group(_) => "GET /api/v1/groups/{groupId}",
            Route::GroupMembers(_) => "GET /api/v1/groups/{groupId}/users",
            Route::AddMember(..) => "PUT /api/v1/groups/{groupId}/users/{userId}",
            Route::RemoveMember(..) => "DELETE /api/v1/groups/{groupId}/users/{userId}",
            Route::GroupRoles(_) => "GET /api/v1/groups/{groupId}/roles",
            Route::RoleAssignees => "GET /api/v1/iam/assignees/users",
            Route::CustomRoles => "GET /api/v1/iam/roles",
            Route::RolePermissions(_) => "GET /api/v1/iam/roles/{roleIdOrLabel}/permissions",
            Route::Logs => "GET /api/v1/logs",
        }
    }

    /// The rate-limit bucket the operation draws on.
    pub fn bucket(&self) -> Bucket {
        match self {
            Route::Users => Bucket::Users,
            Route::User(_) => Bucket::UserById,
            Route::Groups
            | Route::GroupMembers(_)
            | Route::AddMember(..)
            | Route::RemoveMember(..) => Bucket::Groups,
            Route::Group(_) => Bucket::GroupById,
            Route::Logs => Bucket::Logs,
            _ => Bucket::Default,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_operations_and_buckets() {
        let r = Route::parse(&Method::GET, "/api/v1/users/alice%40example.com").unwrap();
        assert_eq!(r, Route::User("alice@example.com".into()));
        assert_eq!(r.bucket(), Bucket::UserById);
        let r = Route::parse(&Method::PUT, "/api/v1/groups/g1/users/u1").unwrap();
        assert_eq!(r, Route::AddMember("g1".into(), "u1".into()));
        assert_eq!(r.bucket(), Bucket::Groups);
        assert_eq!(
            Route::parse(&Method::GET, "/api/v1/groups/g1")
                .unwrap()
                .bucket(),
            Bucket::GroupById
        );
        assert_eq!(
            Route::parse(&Method::GET, "/api/v1/users/u1/roles")
                .unwrap()
                .bucket(),
            Bucket::Default
        );
        assert_eq!(
            Route::parse(&Method::POST, "/api/v1/groups/g1/users/u1"),
            Err(NoRoute::MethodNotAllowed)
        );
        assert_eq!(
            Route::parse(&Method::DELETE, "/api/v1/users"),
            Err(NoRoute::MethodNotAllowed)
        );
        assert_eq!(
            Route::parse(&Method::GET, "/api/v1/apps"),
            Err(NoRoute::NotFound)
        );
    }
}
