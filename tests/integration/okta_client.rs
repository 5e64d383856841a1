//! Okta client against small scripted axum servers on 127.0.0.1:0: pagination, retries,
//! pacing, error mapping and token redaction.

use crate::log_capture;
use crate::support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use http::{HeaderMap, Method};
use log_capture::CapturedLogs;
use okta_ciam_operator::okta::{
    ApiToken, ClientOptions, DomainPolicy, Error, GroupQuery, MAX_RESPONSE_BYTES, OktaClient,
    OrgDomain, SswsAuth, UserQuery,
};
use serde_json::json;
use support::fast_client_options as fast;

const TOKEN: &str = "00TEST-secret-token-value";

/// What the scripted server saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    /// 0-based index of this request among all the server received.
    n: usize,
}

type Handler = Arc<dyn Fn(Seen) -> BoxFuture<'static, Response> + Send + Sync>;

/// A scripted server: every request goes to `handler`; `seen` records them.
struct Mock {
    domain: OrgDomain,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Mock {
    async fn start(handler: Handler) -> Mock {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let record = Arc::clone(&seen);
        let app = axum::Router::new().fallback(move |req: Request| {
            let handler = Arc::clone(&handler);
            let record = Arc::clone(&record);
            let n = count.fetch_add(1, Ordering::SeqCst);
            async move {
                let s = Seen {
                    method: req.method().clone(),
                    path: req.uri().path().to_owned(),
                    query: req.uri().query().unwrap_or("").to_owned(),
                    headers: req.headers().clone(),
                    n,
                };
                record.lock().unwrap().push(s.clone());
                handler(s).await
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let policy = DomainPolicy {
            insecure_loopback_http: true,
            ..DomainPolicy::default()
        };
        let domain = OrgDomain::parse(&addr.to_string(), &policy).unwrap();
        Mock { domain, seen }
    }

    fn client(&self, options: ClientOptions) -> OktaClient {
        let auth = Arc::new(SswsAuth::new(ApiToken::new(TOKEN.to_owned())));
        OktaClient::new(self.domain.clone(), auth, options).unwrap()
    }

    fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn http_date() -> String {
    jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&jiff::Timestamp::now())
        .unwrap()
}

/// A response with rate-limit headers for a generous bucket.
fn respond(status: u16, body: serde_json::Value, extra: &[(&str, String)]) -> Response {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("date", http_date())
        .header("x-okta-request-id", "req-test-1");
    let has_rate = extra.iter().any(|(k, _)| k.starts_with("x-rate-limit"));
    if !has_rate {
        b = b
            .header("x-rate-limit-limit", "1000")
            .header("x-rate-limit-remaining", "999")
            .header("x-rate-limit-reset", format!("{}", epoch_now() as i64 + 60));
    }
    for (k, v) in extra {
        b = b.header(*k, v.as_str());
    }
    let body = if status == 204 {
        Body::empty()
    } else {
        Body::from(body.to_string())
    };
    b.body(body).unwrap()
}

fn okta_error(status: u16, code: &str, summary: &str) -> Response {
    respond(
        status,
        json!({"errorCode": code, "errorSummary": summary, "errorLink": code, "errorId": "oaeERR1", "errorCauses": []}),
        &[],
    )
}

fn user(id: &str) -> serde_json::Value {
    json!({"id": id, "status": "ACTIVE", "created": "2026-01-01T00:00:00.000Z", "lastUpdated": null,
           "profile": {"login": format!("{id}@example.com"), "email": format!("{id}@example.com"), "firstName": "F", "lastName": "L"},
           "_links": {"self": {"href": "x"}}})
}

fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Seen) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response> + Send + 'static,
{
    Arc::new(move |s| Box::pin(f(s)))
}

#[tokio::test]
async fn link_header_lines_and_comma_joined_values_paginate_lazily() {
    let mock = Mock::start(handler(|s: Seen| async move {
        let base = format!("http://{}", s.headers.get("host").unwrap().to_str().unwrap());
        let page = if s.query.contains("after=u2") {
            2
        } else if s.query.contains("after=u4") {
            3
        } else {
            1
        };
        match page {
            1 => respond(
                200,
                json!([user("u1"), user("u2")]),
                &[
                    ("link", format!(r#"<{base}/api/v1/users?limit=2>; rel="self""#)),
                    ("link", format!(r#"<{base}/api/v1/users?after=u2&limit=2>; rel="next""#)),
                ],
            ),
            2 => respond(
                200,
                json!([user("u3"), user("u4")]),
                &[(
                    "link",
                    format!(r#"<{base}/api/v1/users?after=u2&limit=2>; rel="self", <{base}/api/v1/users?after=u4&limit=2>;rel=next"#),
                )],
            ),
            _ => respond(
                200,
                json!([user("u5")]),
                &[("link", format!(r#"<{base}/api/v1/users?after=u4&limit=2>; rel="self""#))],
            ),
        }
    }))
    .await;
    let client = mock.client(fast());
    let query = UserQuery {
        search: Some(r#"profile.email co "@example.com""#.into()),
        limit: Some(2),
        ..UserQuery::default()
    };
    let mut pages = client.list_users(&query);
    assert_eq!(
        mock.hits(),
        0,
        "nothing is fetched before the stream is polled"
    );
    let first = pages.next().await.unwrap().unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(mock.hits(), 1, "one page per poll");
    let rest: Vec<Vec<_>> = pages.try_collect().await.unwrap();
    let ids: Vec<String> = first
        .iter()
        .chain(rest.iter().flatten())
        .map(|u| u.id.clone())
        .collect();
    assert_eq!(ids, ["u1", "u2", "u3", "u4", "u5"]);
    let seen = mock.seen();
    assert_eq!(seen.len(), 3);
    assert!(
        seen[0]
            .query
            .contains("search=profile.email+co+%22%40example.com%22"),
        "{}",
        seen[0].query
    );
    assert!(seen[0].query.contains("limit=2"));
    for s in &seen {
        assert_eq!(s.path, "/api/v1/users");
        assert_eq!(s.headers["authorization"], format!("SSWS {TOKEN}").as_str());
        assert_eq!(s.headers["accept"], "application/json");
    }
    let stats = client.stats();
    assert_eq!(stats.requests, 3);
    assert_eq!(stats.requests_by_endpoint.get("users"), Some(&3));
    assert_eq!(stats.requests_by_status.get(&200), Some(&3));
}

#[tokio::test]
async fn iam_lists_follow_body_links() {
    let mock = Mock::start(handler(|s: Seen| async move {
        let base = format!("http://{}", s.headers.get("host").unwrap().to_str().unwrap());
        match (s.path.as_str(), s.query.as_str()) {
            ("/api/v1/iam/assignees/users", "limit=1") => respond(
                200,
                json!({"value": [{"id": "00u1", "orn": "orn:1"}],
                       "_links": {"next": {"href": format!("{base}/api/v1/iam/assignees/users?after=00u1&limit=1")}}}),
                &[],
            ),
            ("/api/v1/iam/assignees/users", _) => {
                respond(200, json!({"value": [{"id": "00u2"}], "_links": {}}), &[])
            }
            ("/api/v1/iam/roles", "") => respond(
                200,
                json!({"roles": [{"id": "cr1", "label": "Helpdesk", "description": "d", "created": "x"}],
                       "_links": {"next": {"href": format!("{base}/api/v1/iam/roles?after=cr1")}}}),
                &[],
            ),
            ("/api/v1/iam/roles", _) => respond(200, json!({"roles": [{"id": "cr2", "label": "Auditor"}]}), &[]),
            ("/api/v1/iam/roles/cr1/permissions", _) => respond(
                200,
                json!({"permissions": [{"label": "okta.users.read"}, {"label": "okta.groups.read"}]}),
                &[],
            ),
            _ => okta_error(404, "E0000007", "Not found"),
        }
    }))
    .await;
    let client = mock.client(fast());
    let assignees: Vec<_> = client
        .list_role_assignees(Some(1))
        .try_concat()
        .await
        .unwrap();
    assert_eq!(
        assignees.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["00u1", "00u2"]
    );
    assert_eq!(assignees[0].orn.as_deref(), Some("orn:1"));
    let roles: Vec<_> = client.list_custom_roles().try_concat().await.unwrap();
    assert_eq!(
        roles.iter().map(|r| r.label.as_str()).collect::<Vec<_>>(),
        ["Helpdesk", "Auditor"]
    );
    let perms: Vec<_> = client
        .list_custom_role_permissions("cr1")
        .try_concat()
        .await
        .unwrap();
    assert_eq!(perms.len(), 2);
    assert_eq!(mock.hits(), 5);
    assert_eq!(client.stats().requests_by_endpoint.get("iam"), Some(&5));
}

#[tokio::test]
async fn next_link_to_another_origin_is_refused() {
    for link in [
        r#"<http://169.254.169.254/latest/meta-data>; rel="next""#.to_owned(),
        r#"<https://evil.example/api/v1/groups?after=x>; rel="next""#.to_owned(),
    ] {
        let mock = Mock::start(handler(move |_s: Seen| {
            let link = link.clone();
            async move {
                respond(
                    200,
                    json!([{"id": "00g1", "type": "OKTA_GROUP", "profile": {"name": "Eng"}}]),
                    &[("link", link)],
                )
            }
        }))
        .await;
        let client = mock.client(fast());
        let mut pages = client.list_groups(&GroupQuery {
            expand_stats: true,
            ..GroupQuery::default()
        });
        let err = pages.next().await.unwrap().unwrap_err();
        assert!(matches!(err, Error::BadNextLink { .. }), "{err:?}");
        assert!(
            pages.next().await.is_none(),
            "the stream ends after the error"
        );
        assert_eq!(mock.hits(), 1, "the foreign link was never requested");
        assert_eq!(mock.seen()[0].query, "expand=stats");
    }
}

#[tokio::test]
async fn a_pagination_cycle_is_refused() {
    // A -> B -> A: each next link differs from its own page, but B leads back to the first.
    let mock = Mock::start(handler(|s: Seen| async move {
        let (id, next) = if s.query.contains("after=b") {
            ("00g2", "/api/v1/groups?expand=stats")
        } else {
            ("00g1", "/api/v1/groups?expand=stats&after=b")
        };
        respond(
            200,
            json!([{"id": id, "type": "OKTA_GROUP", "profile": {"name": "Eng"}}]),
            &[("link", format!(r#"<{next}>; rel="next""#))],
        )
    }))
    .await;
    let client = mock.client(fast());
    let pages = client.list_groups(&GroupQuery {
        expand_stats: true,
        ..GroupQuery::default()
    });
    // Bounded: a client that follows the cycle yields page after page instead of ending.
    let results: Vec<_> = pages.take(6).collect().await;
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[0].as_ref().unwrap()[0].id, "00g1");
    let err = results[1].as_ref().unwrap_err();
    match err {
        Error::BadNextLink { link, reason } => {
            assert_eq!(link, "/api/v1/groups?expand=stats");
            assert!(reason.contains("already"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(mock.hits(), 2, "page A was not requested again");
}

#[tokio::test]
async fn a_listing_that_never_ends_stops_at_the_page_limit() {
    // Every page offers a fresh cursor, so there is no cycle to notice: only the bound stops it.
    let mock = Mock::start(handler(|s: Seen| async move {
        let next = format!("/api/v1/users?after=p{}", s.n + 1);
        respond(
            200,
            json!([user(&format!("u{}", s.n))]),
            &[("link", format!(r#"<{next}>; rel="next""#))],
        )
    }))
    .await;
    let client = mock.client(ClientOptions {
        max_pages: 3,
        ..fast()
    });
    let results: Vec<_> = client
        .list_users(&UserQuery::default())
        .take(10)
        .collect()
        .await;
    assert_eq!(results.len(), 4, "three pages, then the error: {results:?}");
    assert!(results[..3].iter().all(Result::is_ok));
    match &results[3] {
        Err(Error::TooManyPages { path, limit: 3 }) => assert_eq!(path, "/api/v1/users"),
        other => panic!("{other:?}"),
    }
    assert_eq!(mock.hits(), 3, "the fourth page was never requested");
}

#[tokio::test]
async fn an_oversized_body_is_refused_declared_or_streamed() {
    // One body says its size up front, the other streams past the cap without a length.
    let mock = Mock::start(handler(|s: Seen| async move {
        let too_big = MAX_RESPONSE_BYTES + 1;
        let builder = Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .header("x-rate-limit-limit", "1000")
            .header("x-rate-limit-remaining", "999")
            .header("x-rate-limit-reset", format!("{}", epoch_now() as i64 + 60));
        if s.path.ends_with("/declared") {
            builder.body(Body::from(vec![b' '; too_big])).unwrap()
        } else {
            let chunk = bytes::Bytes::from(vec![b' '; 1 << 20]);
            let chunks = too_big.div_ceil(1 << 20);
            let stream = futures::stream::iter(
                (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
            );
            builder.body(Body::from_stream(stream)).unwrap()
        }
    }))
    .await;
    let client = mock.client(fast());
    for id in ["declared", "streamed"] {
        let err = client.get_user(id).await.unwrap_err();
        match &err {
            Error::ResponseTooLarge { request, limit } => {
                assert_eq!(request, &format!("GET /api/v1/users/{id}"));
                assert_eq!(*limit, MAX_RESPONSE_BYTES);
            }
            other => panic!("{id}: {other:?}"),
        }
        assert!(
            !err.is_transient(),
            "not retried: the same answer would come again"
        );
    }
    assert_eq!(mock.hits(), 2);
}

#[tokio::test]
async fn absurd_rate_limit_headers_neither_panic_nor_park_the_client() {
    // A reset at the end of time with a date at its start: the wait is bounded (and beyond
    // the request's wait budget, so it fails fast) instead of overflowing.
    let mock = Mock::start(handler(|_s: Seen| async move {
        let mut r = okta_error(
            429,
            "E0000047",
            "API call exceeded rate limit due to too many requests.",
        );
        for (k, v) in [
            ("x-rate-limit-limit", "600".to_owned()),
            ("x-rate-limit-remaining", "0".to_owned()),
            ("x-rate-limit-reset", i64::MAX.to_string()),
            ("date", "Mon, 01 Jan 1900 00:00:00 GMT".to_owned()),
        ] {
            r.headers_mut().insert(k, v.parse().unwrap());
        }
        r
    }))
    .await;
    let client = mock.client(ClientOptions {
        max_rate_limit_wait: Duration::from_secs(30),
        ..fast()
    });
    let err = client.get_user("00u1").await.unwrap_err();
    assert!(
        matches!(err, Error::RateLimitBudgetExceeded { .. }),
        "{err:?}"
    );
    assert_eq!(mock.hits(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed_or_give_up() {
    let mock = Mock::start(handler(|s: Seen| async move {
        match (s.path.as_str(), s.n) {
            ("/api/v1/org", 0 | 1) => okta_error(503, "E0000100", "Service unavailable"),
            ("/api/v1/org", _) => respond(200, json!({"id": "00o1", "companyName": "Acme", "subdomain": "acme", "status": "ACTIVE"}), &[]),
            _ => okta_error(500, "E0000009", "Internal Server Error"),
        }
    }))
    .await;
    let client = mock.client(ClientOptions {
        max_retries: 3,
        ..fast()
    });
    let org = client.get_org().await.unwrap();
    assert_eq!(org.company_name.as_deref(), Some("Acme"));
    assert_eq!(mock.hits(), 3);
    assert_eq!(client.stats().retries, 2);
    assert_eq!(client.stats().requests_by_status.get(&503), Some(&2));

    let before = client.stats();
    let err = client.get_user("00u1").await.unwrap_err();
    match &err {
        Error::Server(info) => {
            assert_eq!(info.status, 500);
            assert_eq!(info.error_code.as_deref(), Some("E0000009"));
            assert_eq!(info.error_id.as_deref(), Some("oaeERR1"));
            assert_eq!(info.request_id.as_deref(), Some("req-test-1"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.is_transient());
    let delta = client.stats().since(&before);
    assert_eq!(delta.requests, 4, "first attempt plus max_retries");
    assert_eq!(delta.retries, 3);
    assert_eq!(delta.requests_by_endpoint.get("user"), Some(&4));
}

#[tokio::test]
async fn dropped_connections_and_timeouts_are_retried() {
    let mock = Mock::start(handler(|s: Seen| async move {
        match s.n {
            // Headers, then the connection breaks mid-body.
            0 => {
                let chunks: Vec<Result<&'static [u8], std::io::Error>> = vec![
                    Ok(b"[{\"id\":"),
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "drop",
                    )),
                ];
                Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(Body::from_stream(futures::stream::iter(chunks)))
                    .unwrap()
            }
            // Never answers: the client's timeout fires.
            1 => futures::future::pending().await,
            _ => respond(200, json!([user("u1")]), &[]),
        }
    }))
    .await;
    let client = mock.client(ClientOptions {
        request_timeout: Duration::from_millis(500),
        ..fast()
    });
    let users: Vec<_> = client
        .list_group_members("00g1", Some(1000))
        .try_concat()
        .await
        .unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(mock.hits(), 3);
    let stats = client.stats();
    assert_eq!(stats.retries, 2);
    assert_eq!(stats.requests, 3);
    assert_eq!(
        stats.requests_by_status.get(&200),
        Some(&1),
        "a response cut off mid-body is a transport failure, not a 200"
    );
    assert_eq!(mock.seen()[0].query, "limit=1000");
    assert_eq!(stats.requests_by_endpoint.get("group_members"), Some(&3));
}

#[tokio::test]
async fn transport_failure_gives_up_after_retries() {
    // A port that was bound and released: connections are refused.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let policy = DomainPolicy {
        insecure_loopback_http: true,
        ..DomainPolicy::default()
    };
    let domain = OrgDomain::parse(&addr.to_string(), &policy).unwrap();
    let auth = Arc::new(SswsAuth::new(ApiToken::new(TOKEN.to_owned())));
    let client = OktaClient::new(
        domain,
        auth,
        ClientOptions {
            max_retries: 2,
            ..fast()
        },
    )
    .unwrap();
    let err = client.get_org().await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(TOKEN));
    assert_eq!(client.stats().requests, 3);
    assert_eq!(client.stats().retries, 2);
}

#[tokio::test]
async fn client_errors_are_not_retried_and_keep_okta_fields() {
    let mock = Mock::start(handler(|s: Seen| async move {
        match (s.method.as_str(), s.path.as_str()) {
            ("GET", "/api/v1/users/missing") => okta_error(
                404,
                "E0000007",
                "Not found: Resource not found: missing (User)",
            ),
            ("GET", "/api/v1/users") => okta_error(400, "E0000031", "Invalid search criteria."),
            ("PUT", "/api/v1/groups/00gapp/users/00u1") => okta_error(
                403,
                "E0000006",
                "You do not have permission to perform the requested action",
            ),
            ("PUT" | "DELETE", _) => respond(204, json!(null), &[]),
            _ => okta_error(
                405,
                "E0000022",
                "The endpoint does not support the provided HTTP method",
            ),
        }
    }))
    .await;
    let client = mock.client(fast());
    let err = client.get_user("missing").await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound(i) if i.error_code.as_deref() == Some("E0000007")),
        "{err:?}"
    );
    assert!(!err.is_transient());
    let err = client
        .list_users(&UserQuery {
            search: Some("bogus".into()),
            ..UserQuery::default()
        })
        .try_concat()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidRequest(i) if i.status == 400 && i.error_code.as_deref() == Some("E0000031")),
        "{err:?}"
    );
    let err = client.add_group_member("00gapp", "00u1").await.unwrap_err();
    assert!(
        matches!(&err, Error::Forbidden(i) if i.error_code.as_deref() == Some("E0000006")),
        "{err:?}"
    );
    client.add_group_member("00gokta", "00u1").await.unwrap();
    client.remove_group_member("00gokta", "00u1").await.unwrap();
    assert!(matches!(
        client.get_user("").await,
        Err(Error::InvalidArgument { .. })
    ));
    assert_eq!(
        mock.hits(),
        5,
        "one request each, no retries, none for the empty id"
    );
    assert_eq!(client.stats().retries, 0);
    let seen = mock.seen();
    let put = seen
        .iter()
        .find(|s| s.path == "/api/v1/groups/00gokta/users/00u1" && s.method == Method::PUT)
        .unwrap();
    let lengths: Vec<_> = put.headers.get_all("content-length").iter().collect();
    assert_eq!(lengths, ["0"], "body-less PUT must say Content-Length: 0");
}

#[tokio::test]
async fn ids_are_percent_encoded_into_one_segment() {
    let mock = Mock::start(handler(|s: Seen| async move {
        respond(200, user(&s.path.replace('/', "_")), &[])
    }))
    .await;
    let client = mock.client(fast());
    client.get_user("a/b?c#d@example.com").await.unwrap();
    assert_eq!(
        mock.seen()[0].path,
        "/api/v1/users/a%2Fb%3Fc%23d@example.com"
    );
}

/// A fixed-window rate limiter like Okta's: the window starts with its first request and
/// `Reset` is the window's end rounded up to a whole second.
struct Windowed {
    limit: u32,
    window: Duration,
    state: Mutex<WindowState>,
}

#[derive(Default)]
struct WindowState {
    start: Option<(Instant, f64)>,
    used: u32,
    windows: u32,
    /// Requests taken by "someone else" at the start of the first window.
    stolen_first_window: u32,
    min_remaining: Option<u32>,
    rejected: u32,
    streak: u32,
    max_streak: u32,
}

impl Windowed {
    fn new(limit: u32, window: Duration, stolen_first_window: u32) -> Arc<Windowed> {
        Arc::new(Windowed {
            limit,
            window,
            state: Mutex::new(WindowState {
                stolen_first_window,
                ..WindowState::default()
            }),
        })
    }

    fn answer(&self, body: serde_json::Value) -> Response {
        let (status, remaining, reset) = {
            let mut st = self.state.lock().unwrap();
            let now = Instant::now();
            let expired = st.start.is_none_or(|(start, _)| now >= start + self.window);
            if expired {
                let end = epoch_now() + self.window.as_secs_f64();
                st.start = Some((now, end));
                st.used = if st.windows == 0 {
                    st.stolen_first_window
                } else {
                    0
                };
                st.windows += 1;
            }
            let reset = st.start.unwrap().1.ceil() as i64;
            if st.used < self.limit {
                st.used += 1;
                let remaining = self.limit - st.used;
                st.min_remaining = Some(st.min_remaining.map_or(remaining, |m| m.min(remaining)));
                st.streak = 0;
                (200, remaining, reset)
            } else {
                st.rejected += 1;
                st.streak += 1;
                st.max_streak = st.max_streak.max(st.streak);
                (429, 0, reset)
            }
        };
        let headers = [
            ("x-rate-limit-limit", self.limit.to_string()),
            ("x-rate-limit-remaining", remaining.to_string()),
            ("x-rate-limit-reset", reset.to_string()),
        ];
        if status == 429 {
            let mut r = okta_error(
                429,
                "E0000047",
                "API call exceeded rate limit due to too many requests.",
            );
            for (k, v) in headers {
                r.headers_mut().insert(k, v.parse().unwrap());
            }
            r
        } else {
            respond(200, body, &headers)
        }
    }
}

#[tokio::test]
async fn rate_limited_request_waits_for_reset_and_never_trips_twice() {
    let limiter = Windowed::new(5, Duration::from_secs(1), 5);
    let server = Arc::clone(&limiter);
    let mock = Mock::start(handler(move |s: Seen| {
        let server = Arc::clone(&server);
        async move { server.answer(user(&s.path)) }
    }))
    .await;
    let client = mock.client(ClientOptions {
        budget_percent: 100,
        ..fast()
    });
    let calls = (0..4).map(|_| client.get_user("00u1"));
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    let st = limiter.state.lock().unwrap();
    assert_eq!(
        st.rejected, 1,
        "only the first request, before anything was known, hit the limit"
    );
    assert_eq!(st.max_streak, 1);
    let stats = client.stats();
    assert_eq!(stats.rate_limited, 1);
    assert_eq!(stats.retries, 1);
    assert_eq!(stats.requests, 5);
    assert!(stats.rate_limit_wait > Duration::ZERO);
}

#[tokio::test]
async fn pacing_keeps_the_bucket_above_the_reserve() {
    let limiter = Windowed::new(10, Duration::from_secs(1), 0);
    let server = Arc::clone(&limiter);
    let mock = Mock::start(handler(move |s: Seen| {
        let server = Arc::clone(&server);
        async move { server.answer(user(&s.path)) }
    }))
    .await;
    let client = mock.client(fast());
    let calls = (0..12).map(|i| {
        let client = client.clone();
        async move { client.get_user(&format!("00u{i}")).await }
    });
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    let st = limiter.state.lock().unwrap();
    assert_eq!(st.rejected, 0);
    assert!(
        st.min_remaining.unwrap() >= 5,
        "reserve of 50% kept: min remaining {:?}",
        st.min_remaining
    );
    assert!(
        st.windows >= 3,
        "12 requests at 5 per window need several windows, got {}",
        st.windows
    );
    assert_eq!(client.stats().rate_limited, 0);
    assert_eq!(client.stats().requests, 12);
}

#[tokio::test]
async fn concurrency_429_backs_off_instead_of_waiting_for_reset() {
    let mock = Mock::start(handler(|s: Seen| async move {
        if s.n == 0 {
            let mut r = okta_error(
                429,
                "E0000047",
                "API call exceeded rate limit due to too many requests.",
            );
            let reset = (epoch_now() as i64 + 3600).to_string();
            for (k, v) in [
                ("x-rate-limit-limit", "0".to_owned()),
                ("x-rate-limit-remaining", "0".to_owned()),
                ("x-rate-limit-reset", reset),
            ] {
                r.headers_mut().insert(k, v.parse().unwrap());
            }
            r
        } else {
            respond(
                200,
                json!({"id": "00g1", "type": "BUILT_IN", "profile": {"name": "Everyone"}}),
                &[],
            )
        }
    }))
    .await;
    // Waiting for that reset would exceed the budget; a backoff does not.
    let client = mock.client(ClientOptions {
        max_rate_limit_wait: Duration::from_secs(5),
        ..fast()
    });
    let group = client.get_group("00g1").await.unwrap();
    assert_eq!(group.profile.name, "Everyone");
    assert_eq!(client.stats().rate_limited, 1);
    assert_eq!(client.stats().retries, 1);
    assert_eq!(mock.hits(), 2);
}

#[tokio::test]
async fn a_reset_beyond_the_wait_budget_fails_fast() {
    let mock = Mock::start(handler(|_s: Seen| async move {
        let mut r = okta_error(
            429,
            "E0000047",
            "API call exceeded rate limit due to too many requests.",
        );
        let reset = (epoch_now() as i64 + 600).to_string();
        for (k, v) in [
            ("x-rate-limit-limit", "600".to_owned()),
            ("x-rate-limit-remaining", "0".to_owned()),
            ("x-rate-limit-reset", reset),
        ] {
            r.headers_mut().insert(k, v.parse().unwrap());
        }
        r
    }))
    .await;
    let client = mock.client(ClientOptions {
        max_rate_limit_wait: Duration::from_secs(30),
        ..fast()
    });
    let err = client
        .list_users(&UserQuery::default())
        .try_concat()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::RateLimitBudgetExceeded {
                bucket: "users",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(mock.hits(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn token_never_reaches_logs_or_errors() {
    let captured = CapturedLogs::start();

    let mock = Mock::start(handler(|s: Seen| async move {
        if s.n == 0 {
            okta_error(503, "E0000009", "Internal Server Error")
        } else {
            okta_error(401, "E0000011", "Invalid token provided")
        }
    }))
    .await;
    let client = mock.client(fast());
    let err = client.get_org().await.unwrap_err();
    match &err {
        Error::Unauthorized(info) => {
            assert_eq!(info.error_code.as_deref(), Some("E0000011"));
            assert_eq!(info.request_id.as_deref(), Some("req-test-1"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(mock.hits(), 2, "503 retried, 401 not");
    let logs = captured.text();
    assert!(
        logs.contains("retrying Okta request"),
        "logs were captured: {logs}"
    );
    assert!(!logs.contains(TOKEN), "token leaked into logs");
    for text in [err.to_string(), format!("{err:?}"), format!("{client:?}")] {
        assert!(!text.contains(TOKEN), "token leaked: {text}");
    }
    let token = ApiToken::new(TOKEN.to_owned());
    assert!(!format!("{token:?} {token}").contains(TOKEN));
}
