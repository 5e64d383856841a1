//! The HTTP edge: auth, rate limits, faults, Okta's headers and the stats around the pure
//! operations of [`super::api`], plus the `/__emulator/` controls.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::api::{self, ApiError, Reply};
use super::oauth::{FixtureServiceApp, OAuthState, ProofRequest};
use super::ratelimit::{Decision, Limiter, RateLimits};
use super::routes::{NoRoute, Route};
use super::state::{Org, okta_id};

/// Request counters, as served by `GET /__emulator/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmulatorStats {
    /// Every `/api/v1` request received.
    pub requests: RequestStats,
    /// Requests answered 429.
    pub rate_limited: u64,
}

/// Request counts by route template and by status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestStats {
    /// All requests.
    pub total: u64,
    /// Per route template such as `GET /api/v1/users` (`OTHER` for unknown paths).
    pub by_route: BTreeMap<String, u64>,
    /// Per HTTP status (`"dropped"` for injected dropped connections).
    pub by_status: BTreeMap<String, u64>,
}

/// Injected failures, set with `POST /__emulator/faults` or [`super::EmulatorHandle::set_faults`].
/// The `*_next` counts fail exactly the next N `/api/v1` requests (deterministic tests); the
/// rates pick requests at random.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Faults {
    /// Fraction (0..=1) of requests answered with a 5xx.
    pub error_rate: f64,
    /// The next N requests are answered with a 5xx.
    pub fail_next: u32,
    /// Status of injected errors (default 500).
    pub error_status: Option<u16>,
    /// Added latency for every request, in milliseconds.
    pub latency_ms: u64,
    /// Fraction (0..=1) of requests whose connection is dropped without an answer.
    pub drop_rate: f64,
    /// The next N requests have their connection dropped.
    pub drop_next: u32,
    /// The next N requests stall: no answer for `stall_ms` (0: until shutdown).
    pub stall_next: u32,
    /// How long a stalled request hangs, in milliseconds.
    pub stall_ms: u64,
}

enum Fault {
    Error(StatusCode),
    Drop,
    Stall(Option<Duration>),
}

impl Faults {
    /// Decides the fault for one request, consuming the `*_next` counts.
    fn pick(&mut self, rng: &mut StdRng) -> Option<Fault> {
        let status = || {
            StatusCode::from_u16(self.error_status.unwrap_or(500))
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        };
        if self.stall_next > 0 {
            self.stall_next -= 1;
            return Some(Fault::Stall(
                (self.stall_ms > 0).then(|| Duration::from_millis(self.stall_ms)),
            ));
        }
        if self.drop_next > 0 {
            self.drop_next -= 1;
            return Some(Fault::Drop);
        }
        if self.fail_next > 0 {
            self.fail_next -= 1;
            return Some(Fault::Error(status()));
        }
        if self.drop_rate > 0.0 && rng.random_bool(self.drop_rate.min(1.0)) {
            return Some(Fault::Drop);
        }
        if self.error_rate > 0.0 && rng.random_bool(self.error_rate.min(1.0)) {
            return Some(Fault::Error(status()));
        }
        None
    }
}

/// Everything the server and the handle share.
pub(crate) struct Shared {
    pub(crate) org: RwLock<Org>,
    pub(crate) limits: RateLimits,
    limiter: Mutex<Limiter>,
    in_flight: AtomicU32,
    pub(crate) stats: Mutex<EmulatorStats>,
    pub(crate) faults: Mutex<Faults>,
    rng: Mutex<StdRng>,
    pub(crate) base: String,
    pub(crate) cancel: CancellationToken,
    seq: AtomicU64,
    pub(crate) oauth: Mutex<OAuthState>,
}

pub(crate) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl Shared {
    pub(crate) fn new(
        org: Org,
        limits: RateLimits,
        base: String,
        apps: &[FixtureServiceApp],
    ) -> Shared {
        Shared {
            oauth: Mutex::new(OAuthState::new(apps, rand::random())),
            org: RwLock::new(org),
            limits,
            limiter: Mutex::new(Limiter::default()),
            in_flight: AtomicU32::new(0),
            stats: Mutex::new(EmulatorStats::default()),
            faults: Mutex::new(Faults::default()),
            rng: Mutex::new(StdRng::seed_from_u64(0x0c7a)),
            base,
            cancel: CancellationToken::new(),
            seq: AtomicU64::new(0),
        }
    }

    fn next_id(&self, prefix: &str) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        okta_id(prefix, &format!("{n}:{}", now_ms()))
    }

    fn record(&self, route: &str, status: &str, rate_limited: bool) {
        let mut s = lock(&self.stats);
        s.requests.total += 1;
        *s.requests.by_route.entry(route.to_string()).or_default() += 1;
        *s.requests.by_status.entry(status.to_string()).or_default() += 1;
        if rate_limited {
            s.rate_limited += 1;
        }
    }
}

/// Locks a mutex, recovering from poisoning (a panicked handler must not wedge the emulator).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct InFlight<'a>(&'a AtomicU32);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The axum router: controls under `/__emulator/`, everything else through [`api_entry`].
pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/__emulator/stats", get(control_stats))
        .route("/__emulator/state", get(control_state))
        .route(
            "/__emulator/faults",
            post(control_faults).get(control_get_faults),
        )
        .route("/oauth2/v1/token", post(token_endpoint))
        .route("/__emulator/tokens/revoke", post(control_revoke))
        .route("/__emulator/tokens/add", post(control_add_token))
        .route(
            "/__emulator/memberships/remove",
            post(control_membership::<false>),
        )
        .route(
            "/__emulator/memberships/add",
            post(control_membership::<true>),
        )
        .route("/__emulator/users/status", post(control_user_status))
        .route("/__emulator/groups/rename", post(control_rename_group))
        .route("/__emulator/roles/assign", post(control_role::<true>))
        .route("/__emulator/roles/unassign", post(control_role::<false>))
        .fallback(api_entry)
        .with_state(shared)
}

fn http_date(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .unwrap_or_default()
}

/// Checks an `/api/v1` request's credentials: an SSWS API token, or an OAuth access token
/// (`Bearer` or `DPoP` with its proof) holding the operation's scope. A refusal carries the
/// error and, for OAuth, the `WWW-Authenticate` challenge.
fn authorize(
    shared: &Shared,
    req: &Request,
    route: Option<&Route>,
    base: &str,
) -> Result<(), (ApiError, Option<String>)> {
    let headers = req.headers();
    let (scheme, token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .ok_or((ApiError::invalid_token(), None))?;
    if scheme.eq_ignore_ascii_case("SSWS") {
        let known = shared
            .org
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .tokens
            .contains(token.trim());
        return if known {
            Ok(())
        } else {
            Err((ApiError::invalid_token(), None))
        };
    }
    // Unknown paths answer 404 whatever the token's scopes.
    let Some(route) = route else { return Ok(()) };
    let url = format!("{base}{}", req.uri().path());
    let proof = headers.get("dpop").and_then(|v| v.to_str().ok());
    let check = ProofRequest {
        method: req.method(),
        url: &url,
        access_token: None,
        nonce: false,
        now: now_ms().div_euclid(1000),
    };
    lock(&shared.oauth)
        .authorize(scheme, token.trim(), proof, route, check)
        .map_err(|e| {
            let api = if e.status == StatusCode::FORBIDDEN {
                ApiError::forbidden()
            } else {
                ApiError::invalid_token()
            };
            (api, Some(e.challenge(scheme)))
        })
}

/// `POST /oauth2/v1/token`: the org authorization server's client-credentials grant.
async fn token_endpoint(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(&body).into_owned().collect();
    let token_url = format!("{}/oauth2/v1/token", request_base(&shared.base, &headers));
    let proof = headers.get("dpop").and_then(|v| v.to_str().ok());
    let answer = lock(&shared.oauth).token(&form, proof, &token_url, now_ms().div_euclid(1000));
    let mut resp = match answer {
        Ok(body) => (StatusCode::OK, Json(body)).into_response(),
        Err(e) => {
            let mut resp = (e.status, Json(e.body())).into_response();
            if let Some(n) = e
                .nonce
                .as_deref()
                .and_then(|n| HeaderValue::from_str(n).ok())
            {
                resp.headers_mut().insert("dpop-nonce", n);
            }
            resp
        }
    };
    // Token responses must not be cached (RFC 6749 section 5.1).
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// What happened to one request, before headers are added.
enum Outcome {
    Done(Result<Reply, ApiError>),
    Dropped,
}

async fn api_entry(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let start = now_ms();
    let request_id = shared.next_id("");
    let route = Route::parse(req.method(), req.uri().path());
    let route_key = route.as_ref().map_or("OTHER", Route::key);
    let bucket = route
        .as_ref()
        .map_or(super::ratelimit::Bucket::Default, Route::bucket);

    let in_flight = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = InFlight(&shared.in_flight);

    let decision: Decision;
    let mut challenge = None;
    let outcome = if in_flight > shared.limits.concurrency {
        decision = Decision {
            allowed: false,
            limit: 0,
            remaining: 0,
            reset: start.div_euclid(1000) + 1,
        };
        Outcome::Done(Err(ApiError::rate_limited()))
    } else if let Err((error, found)) = authorize(
        &shared,
        &req,
        route.as_ref().ok(),
        &request_base(&shared.base, req.headers()),
    ) {
        decision = lock(&shared.limiter).check(bucket, &shared.limits, start, false);
        challenge = found;
        Outcome::Done(Err(error))
    } else {
        decision = lock(&shared.limiter).check(bucket, &shared.limits, start, true);
        if !decision.allowed {
            Outcome::Done(Err(ApiError::rate_limited()))
        } else {
            let base = request_base(&shared.base, req.headers());
            serve_operation(&shared, route, req, start, &base).await
        }
    };
    match outcome {
        Outcome::Dropped => {
            shared.record(route_key, "dropped", false);
            // A body that fails makes hyper abort the connection without a complete answer.
            let body = Body::from_stream(futures::stream::once(async {
                Err::<bytes::Bytes, _>(std::io::Error::other("connection dropped by emulator"))
            }));
            let mut resp = Response::new(body);
            *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            resp
        }
        Outcome::Done(result) => {
            let (status, body, links) = match result {
                Ok(reply) => (reply.status, reply.body, reply.links),
                Err(e) => (e.status, Some(e.body(&shared.next_id("oae"))), Vec::new()),
            };
            let rate_limited = status == StatusCode::TOO_MANY_REQUESTS;
            shared.record(route_key, status.as_str(), rate_limited);
            let mut resp = match body {
                Some(b) => (status, Json(b)).into_response(),
                None => status.into_response(),
            };
            let h = resp.headers_mut();
            for link in links {
                if let Ok(v) = HeaderValue::from_str(&link) {
                    h.append(header::LINK, v);
                }
            }
            let mut set = |name: &'static str, value: String| {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    h.insert(name, v);
                }
            };
            if let Some(c) = challenge {
                set("www-authenticate", c);
            }
            set("date", http_date(now_ms()));
            set("x-okta-request-id", request_id);
            set("x-rate-limit-limit", decision.limit.to_string());
            set("x-rate-limit-remaining", decision.remaining.to_string());
            set("x-rate-limit-reset", decision.reset.to_string());
            resp
        }
    }
}

/// The origin absolute links (`Link` headers, `_links`) are built on: the `Host` the client
/// used, as Okta links to the org domain it was asked on, so an emulator bound to `0.0.0.0`
/// links to the address the client reached (and a same-origin check passes). Falls back to
/// the bound address when `Host` is absent or not a plain `host[:port]`.
fn request_base(bound: &str, headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok())
        // An authority may carry userinfo; a link built on it would too.
        .filter(|a| !a.as_str().contains('@') && !a.host().is_empty())
        .map_or_else(|| bound.to_owned(), |a| format!("http://{a}"))
}

async fn serve_operation(
    shared: &Shared,
    route: Result<Route, NoRoute>,
    req: Request,
    now: i64,
    base: &str,
) -> Outcome {
    let fault = {
        let mut faults = lock(&shared.faults);
        let latency = faults.latency_ms;
        let picked = faults.pick(&mut lock(&shared.rng));
        (latency, picked)
    };
    if fault.0 > 0 {
        tokio::time::sleep(Duration::from_millis(fault.0)).await;
    }
    match fault.1 {
        Some(Fault::Error(status)) => return Outcome::Done(Err(ApiError::injected(status))),
        Some(Fault::Drop) => return Outcome::Dropped,
        Some(Fault::Stall(limit)) => match limit {
            Some(d) => {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = shared.cancel.cancelled() => {}
                }
            }
            None => shared.cancel.cancelled().await,
        },
        None => {}
    }
    let route = match route {
        Ok(r) => r,
        Err(NoRoute::NotFound) => {
            return Outcome::Done(Err(ApiError::not_found("Resource", req.uri().path())));
        }
        Err(NoRoute::MethodNotAllowed) => {
            return Outcome::Done(Err(ApiError::method_not_allowed()));
        }
    };
    if req.method() == http::Method::PUT
        && !req.headers().contains_key(header::CONTENT_LENGTH)
        && !req.headers().contains_key(header::TRANSFER_ENCODING)
    {
        return Outcome::Done(Err(ApiError::length_required()));
    }
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let request = api::Request {
        base,
        path: req.uri().path(),
        query,
        now_ms: now,
    };
    let result = if api::is_mutation(&route) {
        let mut org = shared.org.write().unwrap_or_else(|e| e.into_inner());
        api::execute_mut(&mut org, &route, &request)
    } else {
        let org = shared.org.read().unwrap_or_else(|e| e.into_inner());
        api::execute(&org, &route, &request)
    };
    Outcome::Done(result)
}

// ---- /__emulator/ controls -------------------------------------------------------------

/// A control request naming a membership.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MembershipBody {
    group_id: String,
    user_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusBody {
    user_id: String,
    status: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RenameBody {
    group_id: String,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoleBody {
    principal_id: String,
    role: String,
}

#[derive(Debug, Deserialize)]
struct TokenBody {
    token: String,
}

async fn control_role<const ASSIGN: bool>(
    State(s): State<Arc<Shared>>,
    Json(b): Json<RoleBody>,
) -> Response {
    control_result(super::handle::set_standard_role(
        &s,
        &b.principal_id,
        &b.role,
        ASSIGN,
    ))
}

fn control_result(r: super::Result<bool>) -> Response {
    match r {
        Ok(changed) => Json(json!({"changed": changed})).into_response(),
        Err(e) => (StatusCode::NOT_FOUND, Json(json!({"error": e.to_string()}))).into_response(),
    }
}

async fn control_stats(State(s): State<Arc<Shared>>) -> Json<EmulatorStats> {
    Json(lock(&s.stats).clone())
}

async fn control_state(State(s): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(s.org.read().unwrap_or_else(|e| e.into_inner()).state_json())
}

async fn control_faults(State(s): State<Arc<Shared>>, Json(f): Json<Faults>) -> StatusCode {
    *lock(&s.faults) = f;
    StatusCode::NO_CONTENT
}

async fn control_get_faults(State(s): State<Arc<Shared>>) -> Json<Faults> {
    Json(lock(&s.faults).clone())
}

async fn control_revoke(State(s): State<Arc<Shared>>, Json(t): Json<TokenBody>) -> Response {
    let removed = super::handle::revoke(&s, &t.token);
    control_result(Ok(removed))
}

async fn control_add_token(State(s): State<Arc<Shared>>, Json(t): Json<TokenBody>) -> Response {
    control_result(Ok(super::handle::add_token(&s, &t.token)))
}

/// Adds (`ADD`) or removes a membership behind the operator's back, as an admin would.
async fn control_membership<const ADD: bool>(
    State(s): State<Arc<Shared>>,
    Json(b): Json<MembershipBody>,
) -> Response {
    control_result(super::handle::change_membership(
        &s,
        &b.group_id,
        &b.user_id,
        ADD,
    ))
}

async fn control_user_status(State(s): State<Arc<Shared>>, Json(b): Json<StatusBody>) -> Response {
    control_result(super::handle::set_status(&s, &b.user_id, &b.status).map(|()| true))
}

async fn control_rename_group(State(s): State<Arc<Shared>>, Json(b): Json<RenameBody>) -> Response {
    control_result(super::handle::rename(&s, &b.group_id, &b.name).map(|()| true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_use_the_host_the_client_asked_for() {
        let bound = "http://0.0.0.0:8080";
        let with_host = |h: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_str(h).unwrap());
            request_base(bound, &headers)
        };
        assert_eq!(with_host("127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(with_host("[::1]:8080"), "http://[::1]:8080");
        assert_eq!(with_host("emulator.test"), "http://emulator.test");
        for bad in ["u:p@evil.io", "a b", "/path", ""] {
            assert_eq!(with_host(bad), "http://0.0.0.0:8080", "{bad:?}");
        }
        assert_eq!(
            request_base(bound, &HeaderMap::new()),
            "http://0.0.0.0:8080"
        );
    }

    #[test]
    fn counted_faults_come_in_order_then_stop() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut f = Faults {
            stall_next: 1,
            drop_next: 1,
            fail_next: 1,
            error_status: Some(503),
            ..Faults::default()
        };
        assert!(matches!(f.pick(&mut rng), Some(Fault::Stall(None))));
        assert!(matches!(f.pick(&mut rng), Some(Fault::Drop)));
        assert!(matches!(
            f.pick(&mut rng),
            Some(Fault::Error(StatusCode::SERVICE_UNAVAILABLE))
        ));
        assert!(f.pick(&mut rng).is_none());
        f.error_rate = 1.0;
        assert!(matches!(
            f.pick(&mut rng),
            Some(Fault::Error(StatusCode::SERVICE_UNAVAILABLE))
        ));
    }
}
