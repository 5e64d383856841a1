//! The emulated operations: request (route, query) in, status + JSON body + links out. No I/O;
//! the server wraps these with auth, rate limits, headers and faults.

use http::StatusCode;
use serde_json::{Value as Json, json};

use super::routes::Route;
use super::search::{self, Dialect, Expr};
use super::state::{Assignee, Assignment, Group, Org, RoleRef, USER_TYPE_ID, User, format_time};
use super::syslog::Actor;

/// An Okta error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// `errorCode`.
    pub code: &'static str,
    /// `errorSummary`.
    pub summary: String,
    /// `errorCauses[].errorSummary`.
    pub causes: Vec<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, summary: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            summary: summary.into(),
            causes: Vec::new(),
        }
    }

    /// 403 `E0000006`.
    pub fn forbidden() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "E0000006",
            "You do not have permission to perform the requested action",
        )
    }

    /// 404 `E0000007`.
    pub fn not_found(what: &str, id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "E0000007",
            format!("Not found: Resource not found: {id} ({what})"),
        )
    }

    /// 401 `E0000011`.
    pub fn invalid_token() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "E0000011",
            "Invalid token provided",
        )
    }

    /// 429 `E0000047`.
    pub fn rate_limited() -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "E0000047",
            "API call exceeded rate limit due to too many requests.",
        )
    }

    /// 405 `E0000022`.
    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "E0000022",
            "The endpoint does not support the provided HTTP method",
        )
    }

    /// 411 for a `PUT` without `Content-Length` (Okta's front end refuses those; the code is
    /// the generic validation one because Okta's own answer is not a documented error).
    pub fn length_required() -> ApiError {
        ApiError::new(StatusCode::LENGTH_REQUIRED, "E0000001", "Length Required")
    }

    /// A 5xx injected by the fault controls.
    pub fn injected(status: StatusCode) -> ApiError {
        ApiError::new(
            status,
            "E0000009",
            "Internal Server Error (injected by the emulator)",
        )
    }

    /// The Okta error body, with `errorId` supplied by the caller.
    pub fn body(&self, error_id: &str) -> Json {
        json!({
            "errorCode": self.code,
            "errorSummary": self.summary,
            "errorLink": self.code,
            "errorId": error_id,
            "errorCauses": self.causes.iter().map(|c| json!({"errorSummary": c})).collect::<Vec<_>>(),
        })
    }

    fn bad_request(code: &'static str, summary: &str, cause: String) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code,
            summary: summary.into(),
            causes: vec![cause],
        }
    }
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// HTTP status (200 or 204).
    pub status: StatusCode,
    /// JSON body, absent for 204.
    pub body: Option<Json>,
    /// `Link` header values, one per relation.
    pub links: Vec<String>,
}

impl Reply {
    fn json(body: Json) -> Reply {
        Reply {
            status: StatusCode::OK,
            body: Some(body),
            links: Vec::new(),
        }
    }

    fn no_content() -> Reply {
        Reply {
            status: StatusCode::NO_CONTENT,
            body: None,
            links: Vec::new(),
        }
    }
}

/// What an operation needs to know about its request.
#[derive(Debug)]
pub struct Request<'a> {
    /// `http://127.0.0.1:PORT`, for absolute links.
    pub base: &'a str,
    /// Request path.
    pub path: &'a str,
    /// Decoded query pairs in order.
    pub query: Vec<(String, String)>,
    /// Now, epoch milliseconds (for mutation timestamps).
    pub now_ms: i64,
}

impl Request<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.param("limit") {
            None => Ok(default),
            Some(raw) => match raw.trim().parse::<i64>() {
                Ok(n) if n >= 1 => Ok((n as usize).min(max)),
                _ => Err(ApiError::bad_request(
                    "E0000001",
                    "Api validation failed: limit",
                    format!("limit: '{raw}' is not a positive integer"),
                )),
            },
        }
    }

    fn url_with(&self, after: Option<&str>, limit: Option<usize>) -> String {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.query {
            let replaced = (k == "after" && after.is_some()) || (k == "limit" && limit.is_some());
            if !replaced {
                ser.append_pair(k, v);
            }
        }
        if let Some(l) = limit {
            ser.append_pair("limit", &l.to_string());
        }
        if let Some(a) = after {
            ser.append_pair("after", a);
        }
        let q = ser.finish();
        if q.is_empty() {
            format!("{}{}", self.base, self.path)
        } else {
            format!("{}{}?{q}", self.base, self.path)
        }
    }

    /// `self` and (when more remain) `next` links for a page ending at `last_id`.
    fn page_links(&self, next_after: Option<&str>, limit: usize) -> Vec<String> {
        let mut links = vec![format!("<{}>; rel=\"self\"", self.url_with(None, None))];
        if let Some(after) = next_after {
            links.push(format!(
                "<{}>; rel=\"next\"",
                self.url_with(Some(after), Some(limit))
            ));
        }
        links
    }
}

/// Picks up to `limit` items after the cursor that satisfy `keep`, in id order; returns their
/// positions and whether more matching items follow.
fn page<'a, T>(
    items: &'a [T],
    id: impl Fn(&'a T) -> &'a str,
    after: Option<&str>,
    keep: impl Fn(&T) -> bool,
    limit: usize,
) -> (Vec<usize>, bool) {
    // Binary search for the first item after the cursor (items are in id order).
    let (mut start, mut end) = (0, items.len());
    if let Some(a) = after {
        while start < end {
            let mid = (start + end) / 2;
            if id(&items[mid]) <= a {
                start = mid + 1;
            } else {
                end = mid;
            }
        }
    }
    let mut picked = Vec::with_capacity(limit.min(items.len()));
    for (n, item) in items.iter().enumerate().skip(start) {
        if keep(item) {
            if picked.len() == limit {
                return (picked, true);
            }
            picked.push(n);
        }
    }
    (picked, false)
}

fn parse_expr(raw: &str, dialect: &Dialect) -> Result<Expr, ApiError> {
    search::parse(raw, dialect).map_err(|e| {
        ApiError::bad_request(
            "E0000031",
            "Invalid search criteria.",
            format!("{raw}: {e}"),
        )
    })
}

/// The `search` or `filter` expression of a list request (never both: `E0000033`).
fn list_expr(
    req: &Request<'_>,
    search_dialect: &Dialect,
    filter_dialect: &Dialect,
) -> Result<Option<Expr>, ApiError> {
    match (req.param("search"), req.param("filter")) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "E0000033",
            "Search and filter are not allowed at the same time.",
            "Use either the search or the filter parameter.".into(),
        )),
        (Some(s), None) => parse_expr(s, search_dialect).map(Some),
        (None, Some(f)) => parse_expr(f, filter_dialect).map(Some),
        (None, None) => Ok(None),
    }
}

fn starts_with_ci(value: Option<&str>, prefix: &str) -> bool {
    value.is_some_and(|v| v.to_lowercase().starts_with(prefix))
}

/// Runs one operation against the org. Mutating routes take the write path in
/// [`execute_mut`]; this one only reads.
pub fn execute(org: &Org, route: &Route, req: &Request<'_>) -> Result<Reply, ApiError> {
    let base = req.base;
    match route {
        Route::Org => Ok(Reply::json(org_json(org, base))),
        Route::Users => list_users(org, req),
        Route::Logs => list_logs(org, req),
        Route::User(id) => {
            let u = find_user(org, id)?;
            Ok(Reply::json(user_json(base, &org.users[u as usize])))
        }
        Route::UserGroups(id) => {
            let u = find_user(org, id)?;
            let groups: Vec<Json> = org
                .groups_of(u)
                .into_iter()
                .map(|g| group_json(org, base, &org.groups[g as usize], false))
                .collect();
            Ok(Reply::json(Json::Array(groups)))
        }
        Route::UserRoles(id) => {
            let u = find_user(org, id)?;
            let roles: Vec<Json> = org
                .roles_of_user(u)
                .into_iter()
                .map(|a| assignment_json(org, base, a))
                .collect();
            Ok(Reply::json(Json::Array(roles)))
        }
        Route::Groups => list_groups(org, req),
        Route::Group(id) => {
            let g = find_group(org, id)?;
            Ok(Reply::json(group_json(
                org,
                base,
                &org.groups[g as usize],
                false,
            )))
        }
        Route::GroupMembers(id) => {
            let g = find_group(org, id)?;
            let limit = req.limit(1000, 1000)?;
            let members = &org.groups[g as usize].members;
            let (picked, more) = page(
                members,
                |m| &org.users[*m as usize].id,
                req.param("after"),
                |_| true,
                limit,
            );
            let body: Vec<Json> = picked
                .iter()
                .map(|p| user_json(base, &org.users[members[*p] as usize]))
                .collect();
            let last = picked.last().map(|p| &*org.users[members[*p] as usize].id);
            Ok(paged(body, req.page_links(last.filter(|_| more), limit)))
        }
        Route::GroupRoles(id) => {
            let g = find_group(org, id)?;
            let roles: Vec<Json> = org
                .assignments
                .iter()
                .filter(|a| a.assignee == Assignee::Group(g))
                .map(|a| assignment_json(org, base, a))
                .collect();
            Ok(Reply::json(Json::Array(roles)))
        }
        Route::RoleAssignees => {
            // Default 100 (spec); the maximum is undocumented, 100 is assumed.
            let limit = req.limit(100, 100)?;
            let assignees = org.role_assignees();
            let (picked, more) = page(
                &assignees,
                |u| &org.users[*u as usize].id,
                req.param("after"),
                |_| true,
                limit,
            );
            let value: Vec<Json> = picked
                .iter()
                .map(|p| {
                    let u = &org.users[assignees[*p] as usize];
                    json!({
                        "id": u.id,
                        "orn": format!("orn:okta:{}:users:{}", org.org_id, u.id),
                        "_links": {
                            "self": {"href": format!("{base}/api/v1/users/{}", u.id)},
                            "roles": {"href": format!("{base}/api/v1/users/{}/roles", u.id)},
                        }
                    })
                })
                .collect();
            let next = picked
                .last()
                .filter(|_| more)
                .map(|p| &*org.users[assignees[*p] as usize].id);
            Ok(Reply::json(
                json!({"value": value, "_links": body_links(req, next, Some(limit))}),
            ))
        }
        Route::CustomRoles => {
            // No limit parameter in the spec; pages of 100 keep the body cursor exercised.
            let (picked, more) = page(&org.roles, |r| &r.id, req.param("after"), |_| true, 100);
            let roles: Vec<Json> = picked
                .iter()
                .map(|p| {
                    let r = &org.roles[*p];
                    let created = format_time(r.created);
                    json!({
                        "id": r.id, "label": r.label, "description": r.description,
                        "created": created, "lastUpdated": created,
                        "_links": {
                            "self": {"href": format!("{base}/api/v1/iam/roles/{}", r.id)},
                            "permissions": {"href": format!("{base}/api/v1/iam/roles/{}/permissions", r.id)},
                        }
                    })
                })
                .collect();
            let next = picked
                .last()
                .filter(|_| more)
                .map(|p| org.roles[*p].id.as_str());
            Ok(Reply::json(
                json!({"roles": roles, "_links": body_links(req, next, None)}),
            ))
        }
        Route::RolePermissions(id_or_label) => {
            let r = org
                .roles
                .iter()
                .find(|r| r.id == *id_or_label || r.label == *id_or_label)
                .ok_or_else(|| ApiError::not_found("Role", id_or_label))?;
            let created = format_time(r.created);
            let permissions: Vec<Json> = r
                .permissions
                .iter()
                .map(|p| {
                    json!({
                        "label": p, "created": created, "lastUpdated": created,
                        "_links": {
                            "self": {"href": format!("{base}/api/v1/iam/roles/{}/permissions/{p}", r.id)},
                            "role": {"href": format!("{base}/api/v1/iam/roles/{}", r.id)},
                        }
                    })
                })
                .collect();
            Ok(Reply::json(
                json!({"permissions": permissions, "_links": body_links(req, None, None)}),
            ))
        }
        Route::AddMember(..) | Route::RemoveMember(..) => {
            unreachable!("membership changes go through execute_mut")
        }
    }
}

/// `GET /api/v1/logs`: see [`crate::syslog`] for what is emulated.
fn list_logs(org: &Org, req: &Request<'_>) -> Result<Reply, ApiError> {
    let invalid = |name: &str, raw: &str| {
        ApiError::bad_request(
            "E0000001",
            "Api validation failed: systemLogQuery",
            format!("{name}: '{raw}' is not supported by the emulator or not valid"),
        )
    };
    let time = |name: &str| -> Result<Option<i64>, ApiError> {
        req.param(name)
            .map(|raw| search::parse_time(raw).ok_or_else(|| invalid(name, raw)))
            .transpose()
    };
    for unsupported in ["filter", "q"] {
        if let Some(raw) = req.param(unsupported) {
            return Err(invalid(unsupported, raw));
        }
    }
    if let Some(raw) = req.param("sortOrder").filter(|o| *o != "ASCENDING") {
        return Err(invalid("sortOrder", raw));
    }
    let until = time("until")?;
    // Okta's default lower bound: 7 days before `until` (or now).
    let since =
        time("since")?.unwrap_or_else(|| until.unwrap_or(req.now_ms) - 7 * 24 * 3600 * 1000);
    let limit = req.limit(100, 1000)?;
    let (events, next) = org.log.page(since, until, req.param("after"), limit);
    let mut reply = Reply::json(Json::Array(events));
    reply.links = req.page_links(next.as_deref(), limit);
    Ok(reply)
}

/// Runs a mutating operation (membership changes).
pub fn execute_mut(org: &mut Org, route: &Route, req: &Request<'_>) -> Result<Reply, ApiError> {
    let (group_id, user_id, add) = match route {
        Route::AddMember(g, u) => (g, u, true),
        Route::RemoveMember(g, u) => (g, u, false),
        other => return execute(org, other, req),
    };
    let g = find_group(org, group_id)?;
    let u = org
        .user_index_by_id(user_id)
        .ok_or_else(|| ApiError::not_found("User", user_id))?;
    if org.groups[g as usize].group_type != "OKTA_GROUP" {
        return Err(ApiError::forbidden());
    }
    if add {
        org.add_member(g, u, &Actor::api_admin(), req.now_ms);
    } else {
        org.remove_member(g, u, &Actor::api_admin(), req.now_ms);
    }
    Ok(Reply::no_content())
}

/// Whether a route changes state.
pub fn is_mutation(route: &Route) -> bool {
    matches!(route, Route::AddMember(..) | Route::RemoveMember(..))
}

fn body_links(req: &Request<'_>, next_after: Option<&str>, limit: Option<usize>) -> Json {
    match next_after {
        Some(after) => json!({"next": {"href": req.url_with(Some(after), limit)}}),
        None => json!({}),
    }
}

fn paged(items: Vec<Json>, links: Vec<String>) -> Reply {
    Reply {
        status: StatusCode::OK,
        body: Some(Json::Array(items)),
        links,
    }
}

fn find_user(org: &Org, id_or_login: &str) -> Result<u32, ApiError> {
    org.user_index(id_or_login)
        .ok_or_else(|| ApiError::not_found("User", id_or_login))
}

fn find_group(org: &Org, id: &str) -> Result<u32, ApiError> {
    org.group_index(id)
        .ok_or_else(|| ApiError::not_found("UserGroup", id))
}

fn list_users(org: &Org, req: &Request<'_>) -> Result<Reply, ApiError> {
    let expr = list_expr(req, &search::USER_SEARCH, &search::USER_FILTER)?;
    if let (Some(q), None) = (req.param("q"), &expr) {
        // `q`: prefix on first name, last name or email; default 10, no paging.
        let limit = req.limit(10, 200)?;
        let q = q.to_lowercase();
        let (picked, _) = page(
            &org.users,
            |u| &u.id,
            None,
            |u| {
                u.status != "DEPROVISIONED"
                    && (starts_with_ci(u.first_name.as_deref(), &q)
                        || starts_with_ci(u.last_name.as_deref(), &q)
                        || starts_with_ci(Some(&u.email), &q))
            },
            limit,
        );
        let body = picked
            .iter()
            .map(|p| user_json(req.base, &org.users[*p]))
            .collect();
        return Ok(paged(body, req.page_links(None, limit)));
    }
    let limit = req.limit(200, 200)?;
    let keep = |u: &User| match &expr {
        Some(e) => e.matches(u),
        None => u.status != "DEPROVISIONED",
    };
    let (picked, more) = page(&org.users, |u| &u.id, req.param("after"), keep, limit);
    let body = picked
        .iter()
        .map(|p| user_json(req.base, &org.users[*p]))
        .collect();
    let next = picked.last().filter(|_| more).map(|p| &*org.users[*p].id);
    Ok(paged(body, req.page_links(next, limit)))
}

fn list_groups(org: &Org, req: &Request<'_>) -> Result<Reply, ApiError> {
    let expr = list_expr(req, &search::GROUP_SEARCH, &search::GROUP_FILTER)?;
    let stats = req
        .param("expand")
        .is_some_and(|e| e.split(',').any(|x| x.trim() == "stats"));
    let render = |picked: &[usize]| -> Vec<Json> {
        picked
            .iter()
            .map(|p| group_json(org, req.base, &org.groups[*p], stats))
            .collect()
    };
    if let (Some(q), None) = (req.param("q"), &expr) {
        // `q`: name prefix, at most 300 results, no paging.
        let limit = req.limit(300, 300)?;
        let q = q.to_lowercase();
        let (picked, _) = page(
            &org.groups,
            |g| &g.id,
            None,
            |g| g.name.to_lowercase().starts_with(&q),
            limit,
        );
        return Ok(paged(render(&picked), req.page_links(None, limit)));
    }
    let limit = req.limit(200, 10_000)?;
    let keep = |g: &Group| expr.as_ref().is_none_or(|e| e.matches(g));
    let (picked, more) = page(&org.groups, |g| &g.id, req.param("after"), keep, limit);
    let next = picked.last().filter(|_| more).map(|p| &*org.groups[*p].id);
    Ok(paged(render(&picked), req.page_links(next, limit)))
}

fn org_json(org: &Org, base: &str) -> Json {
    json!({
        "id": org.org_id,
        "companyName": org.company_name,
        "subdomain": org.subdomain,
        "status": "ACTIVE",
        "website": format!("https://{}.example", org.subdomain),
        "created": "2020-01-01T00:00:00.000Z",
        "lastUpdated": "2020-01-01T00:00:00.000Z",
        "_links": {
            "preferences": {"href": format!("{base}/api/v1/org/preferences")},
            "contacts": {"href": format!("{base}/api/v1/org/contacts")},
        }
    })
}

fn user_json(base: &str, u: &User) -> Json {
    json!({
        "id": u.id,
        "status": u.status,
        "created": format_time(u.created),
        "activated": u.activated().map(format_time),
        "statusChanged": format_time(u.status_changed),
        "lastLogin": null,
        "lastUpdated": format_time(u.last_updated),
        "passwordChanged": null,
        "type": {"id": USER_TYPE_ID},
        "profile": {
            "login": u.login,
            "email": u.email,
            "secondEmail": u.second_email,
            "firstName": u.first_name,
            "lastName": u.last_name,
            "mobilePhone": null,
        },
        "_links": {"self": {"href": format!("{base}/api/v1/users/{}", u.id)}},
    })
}

fn group_json(org: &Org, base: &str, g: &Group, stats: bool) -> Json {
    let object_class = if g.group_type == "APP_GROUP" {
        "okta:windows_security_principal"
    } else {
        "okta:user_group"
    };
    let mut v = json!({
        "id": g.id,
        "created": format_time(g.created),
        "lastUpdated": format_time(g.last_updated),
        "lastMembershipUpdated": format_time(g.last_membership_updated),
        "objectClass": [object_class],
        "type": g.group_type,
        // The spec's group profile has no nullable description: leave it out when unset.
        "profile": match &g.description {
            Some(d) => json!({"name": g.name, "description": d}),
            None => json!({"name": g.name}),
        },
        "_links": {
            "self": {"href": format!("{base}/api/v1/groups/{}", g.id)},
            "users": {"href": format!("{base}/api/v1/groups/{}/users", g.id)},
            "apps": {"href": format!("{base}/api/v1/groups/{}/apps", g.id)},
        }
    });
    if stats {
        let gi = org.group_index(&g.id);
        let has_admin = org
            .assignments
            .iter()
            .any(|a| Some(a.assignee) == gi.map(Assignee::Group));
        v["_embedded"] = json!({"stats": {
            "usersCount": g.members.len(),
            "appsCount": 0,
            "groupPushMappingsCount": 0,
            "hasAdminPrivilege": has_admin,
        }});
    }
    v
}

/// A role assignment as Okta lists it; `_links.assignee` points at the user or group that
/// holds it (so a group-held role in a user's list names the group).
fn assignment_json(org: &Org, base: &str, a: &Assignment) -> Json {
    let (assignment_type, assignee) = match a.assignee {
        Assignee::User(u) => (
            "USER",
            format!("{base}/api/v1/users/{}", org.users[u as usize].id),
        ),
        Assignee::Group(g) => (
            "GROUP",
            format!("{base}/api/v1/groups/{}", org.groups[g as usize].id),
        ),
    };
    let created = format_time(a.created);
    match &a.role {
        RoleRef::Standard(t) => json!({
            "id": a.id, "label": crate::fixture::standard_role_label(t).unwrap_or(t), "type": t, "status": "ACTIVE",
            "created": created, "lastUpdated": created, "assignmentType": assignment_type,
            "_links": {"assignee": {"href": assignee}},
        }),
        RoleRef::Custom { role, resource_set } => {
            let r = &org.roles[*role];
            json!({
                "id": a.id, "role": r.id, "label": r.label, "type": "CUSTOM", "status": "ACTIVE",
                "created": created, "lastUpdated": created, "assignmentType": assignment_type,
                "resource-set": resource_set,
                "_links": {
                    "assignee": {"href": assignee},
                    "resource-set": {"href": format!("{base}/api/v1/iam/resource-sets/{resource_set}")},
                    "role": {"href": format!("{base}/api/v1/iam/roles/{}", r.id)},
                    "permissions": {"href": format!("{base}/api/v1/iam/roles/{}/permissions", r.id)},
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_respects_cursor_filter_and_more_flag() {
        let items = ["a", "b", "c", "d", "e"];
        let (p, more) = page(&items, |s| s, None, |_| true, 2);
        assert_eq!((p, more), (vec![0, 1], true));
        let (p, more) = page(&items, |s| s, Some("b"), |s| *s != "d", 2);
        assert_eq!((p, more), (vec![2, 4], false));
        let (p, more) = page(&items, |s| s, Some("e"), |_| true, 2);
        assert_eq!((p, more), (vec![], false));
    }

    #[test]
    fn next_links_replace_cursor_and_keep_other_parameters() {
        let req = Request {
            base: "http://127.0.0.1:9",
            path: "/api/v1/users",
            query: vec![
                ("search".into(), "status eq \"ACTIVE\"".into()),
                ("after".into(), "x".into()),
            ],
            now_ms: 0,
        };
        let links = req.page_links(Some("00uB"), 5);
        assert_eq!(
            links[0],
            "<http://127.0.0.1:9/api/v1/users?search=status+eq+%22ACTIVE%22&after=x>; rel=\"self\""
        );
        assert_eq!(
            links[1],
            "<http://127.0.0.1:9/api/v1/users?search=status+eq+%22ACTIVE%22&limit=5&after=00uB>; rel=\"next\""
        );
    }
}
