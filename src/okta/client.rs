//! The HTTP client: typed operations, lazy pagination, pacing, retries and counters.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use http::{HeaderMap, Method, header};
use serde::de::DeserializeOwned;
use url::Url;

use super::auth::Auth;
use super::budget::OrgBudget;
use super::domain::OrgDomain;
use super::error::{Error, OktaErrorInfo, Result};
use super::models::{
    CustomRole, Group, GroupQuery, LogEvent, LogQuery, OrgSetting, Permission, RoleAssignee,
    RoleAssignment, User, UserQuery,
};
use super::oauth;
use super::paging;
use super::ratelimit::{self, Action, Family, RateLimitHeaders, WaitBudget};
use super::stats::ClientStats;

/// The largest response body the client reads: 32 MiB. The largest page it asks for (1000
/// group members) is a few MiB; anything past this is refused as [`Error::ResponseTooLarge`].
pub const MAX_RESPONSE_BYTES: usize = 32 << 20;

/// The most pages one listing follows by default: 100,000, e.g. 20 million users at 200 a
/// page. A server that keeps offering new next links past it gets [`Error::TooManyPages`].
pub const MAX_PAGES: usize = 100_000;

/// A stream of pages, fetched lazily: the next page is requested only when the stream is
/// polled past the current one. Ends after the page without a next link.
pub type Pages<T> = BoxStream<'static, Result<Vec<T>>>;

/// Tuning of one org's client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Requests in flight at once (Okta's org-wide concurrency limit is 75).
    pub max_concurrency: usize,
    /// Use at most this percentage of each rate-limit bucket, leaving the rest to admins and
    /// other integrations.
    pub budget_percent: u8,
    /// Retries per request after 429, 5xx, timeouts or dropped connections.
    pub max_retries: u32,
    /// Timeout of one HTTP attempt, body included.
    pub request_timeout: Duration,
    /// Longest total time one request may wait on rate limits; a longer wait fails with
    /// [`Error::RateLimitBudgetExceeded`] instead.
    pub max_rate_limit_wait: Duration,
    /// First backoff delay after a 5xx, transport failure or concurrency 429.
    pub retry_base_delay: Duration,
    /// Cap of the backoff delay.
    pub retry_max_delay: Duration,
    /// Most pages one listing follows ([`MAX_PAGES`] by default).
    pub max_pages: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            max_concurrency: 8,
            budget_percent: 50,
            max_retries: 5,
            request_timeout: Duration::from_secs(30),
            max_rate_limit_wait: Duration::from_secs(180),
            retry_base_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(30),
            max_pages: MAX_PAGES,
        }
    }
}

/// A client for one Okta org. Cheap to clone; clones share the rate-limit state, the
/// concurrency limit and the counters, so every user of an org draws on one budget.
#[derive(Clone)]
pub struct OktaClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    domain: OrgDomain,
    auth: Arc<dyn Auth>,
    options: ClientOptions,
    budget: OrgBudget,
    stats: Mutex<ClientStats>,
}

impl fmt::Debug for OktaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OktaClient")
            .field("domain", &self.inner.domain.to_string())
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// A response read in full.
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn request_id(&self) -> Option<String> {
        self.headers
            .get("x-okta-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| Error::Decode {
            message: e.to_string(),
            request_id: self.request_id(),
        })
    }

    /// Okta's error details from the body (when it is an Okta error object) and headers.
    fn error_info(&self) -> OktaErrorInfo {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Body {
            error_code: Option<String>,
            error_summary: Option<String>,
            error_id: Option<String>,
        }
        let body: Option<Body> = serde_json::from_slice(&self.body).ok();
        let body = body.unwrap_or(Body {
            error_code: None,
            error_summary: None,
            error_id: None,
        });
        OktaErrorInfo {
            status: self.status,
            error_code: body.error_code,
            error_summary: body.error_summary,
            error_id: body.error_id,
            request_id: self.request_id(),
        }
    }
}

/// Where a list endpoint keeps its items.
#[derive(Clone, Copy)]
enum Shape {
    /// A JSON array; the next page comes in the `Link` header.
    Array,
    /// An object with the items under this field and `_links.next.href` (the `/iam` style).
    Field(&'static str),
}

impl OktaClient {
    /// Builds a client for `domain`. Fails only if the TLS/HTTP stack cannot be set up.
    pub fn new(
        domain: OrgDomain,
        auth: Arc<dyn Auth>,
        options: ClientOptions,
    ) -> Result<OktaClient> {
        let budget = OrgBudget::new(options.max_concurrency, options.budget_percent);
        OktaClient::with_budget(domain, auth, options, budget)
    }

    /// A client pacing on `budget`, shared with the org's other clients (other tokens or
    /// connectors of the same org), so together they stay within one rate-limit share and one
    /// bound on requests in flight. The budget's limits apply; `options.max_concurrency` and
    /// `options.budget_percent` are ignored. Counters stay this client's own.
    pub fn with_budget(
        domain: OrgDomain,
        auth: Arc<dyn Auth>,
        options: ClientOptions,
        budget: OrgBudget,
    ) -> Result<OktaClient> {
        let https = domain.base_url().scheme() == "https";
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(https)
            // Never follow redirects: they could carry the token to another host.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(options.request_timeout)
            .connect_timeout(options.request_timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("okta-ciam-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Transport {
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(OktaClient {
            inner: Arc::new(Inner {
                http,
                budget,
                domain,
                auth,
                options,
                stats: Mutex::new(ClientStats::default()),
            }),
        })
    }

    /// The rate-limit state and concurrency bound this client paces on.
    pub fn budget(&self) -> &OrgBudget {
        &self.inner.budget
    }

    /// The org this client talks to.
    pub fn domain(&self) -> &OrgDomain {
        &self.inner.domain
    }

    /// Snapshot of the counters since the client was created.
    pub fn stats(&self) -> ClientStats {
        self.lock_stats().clone()
    }

    /// `GET /api/v1/org`; a cheap way to check the credentials.
    pub async fn get_org(&self) -> Result<OrgSetting> {
        self.get_one(self.url(&["org"], &[])?).await
    }

    /// `GET /api/v1/users` with `search`, `filter`, `q` and `limit`.
    pub fn list_users(&self, query: &UserQuery) -> Pages<User> {
        let mut params = Vec::new();
        push_opt(&mut params, "search", &query.search);
        push_opt(&mut params, "filter", &query.filter);
        push_opt(&mut params, "q", &query.q);
        push_limit(&mut params, query.limit);
        self.pages(self.url(&["users"], &params), Shape::Array)
    }

    /// `GET /api/v1/users/{idOrLogin}`.
    pub async fn get_user(&self, id_or_login: &str) -> Result<User> {
        self.get_one(self.url(&["users", id(id_or_login)?], &[])?)
            .await
    }

    /// `GET /api/v1/groups` with `search`, `filter`, `q`, `limit` and `expand=stats`.
    pub fn list_groups(&self, query: &GroupQuery) -> Pages<Group> {
        let mut params = Vec::new();
        push_opt(&mut params, "search", &query.search);
        push_opt(&mut params, "filter", &query.filter);
        push_opt(&mut params, "q", &query.q);
        push_limit(&mut params, query.limit);
        if query.expand_stats {
            params.push(("expand", "stats".to_owned()));
        }
        self.pages(self.url(&["groups"], &params), Shape::Array)
    }

    /// `GET /api/v1/groups/{groupId}`.
    pub async fn get_group(&self, group_id: &str) -> Result<Group> {
        self.get_one(self.url(&["groups", id(group_id)?], &[])?)
            .await
    }

    /// `GET /api/v1/groups/{groupId}/users`.
    pub fn list_group_members(&self, group_id: &str, limit: Option<u32>) -> Pages<User> {
        let mut params = Vec::new();
        push_limit(&mut params, limit);
        let url = id(group_id).and_then(|g| self.url(&["groups", g, "users"], &params));
        self.pages(url, Shape::Array)
    }

    /// `PUT /api/v1/groups/{groupId}/users/{userId}` (idempotent).
    pub async fn add_group_member(&self, group_id: &str, user_id: &str) -> Result<()> {
        let url = self.url(&["groups", id(group_id)?, "users", id(user_id)?], &[])?;
        self.execute(Method::PUT, &url).await.map(drop)
    }

    /// `DELETE /api/v1/groups/{groupId}/users/{userId}`.
    pub async fn remove_group_member(&self, group_id: &str, user_id: &str) -> Result<()> {
        let url = self.url(&["groups", id(group_id)?, "users", id(user_id)?], &[])?;
        self.execute(Method::DELETE, &url).await.map(drop)
    }

    /// `GET /api/v1/users/{id}/groups`.
    pub fn list_user_groups(&self, user_id: &str) -> Pages<Group> {
        let url = id(user_id).and_then(|u| self.url(&["users", u, "groups"], &[]));
        self.pages(url, Shape::Array)
    }

    /// `GET /api/v1/users/{userId}/roles` (not paged).
    pub async fn list_user_roles(&self, user_id: &str) -> Result<Vec<RoleAssignment>> {
        self.get_one(self.url(&["users", id(user_id)?, "roles"], &[])?)
            .await
    }

    /// `GET /api/v1/groups/{groupId}/roles` (not paged).
    pub async fn list_group_roles(&self, group_id: &str) -> Result<Vec<RoleAssignment>> {
        self.get_one(self.url(&["groups", id(group_id)?, "roles"], &[])?)
            .await
    }

    /// `GET /api/v1/iam/assignees/users`: every user holding an admin role.
    pub fn list_role_assignees(&self, limit: Option<u32>) -> Pages<RoleAssignee> {
        let mut params = Vec::new();
        push_limit(&mut params, limit);
        self.pages(
            self.url(&["iam", "assignees", "users"], &params),
            Shape::Field("value"),
        )
    }

    /// `GET /api/v1/logs`: System Log events, oldest first. Give `until` for a bounded
    /// query: without it Okta treats the request as polling and always links a next page.
    pub fn list_log_events(&self, query: &LogQuery) -> Pages<LogEvent> {
        let mut params = Vec::new();
        push_opt(&mut params, "since", &query.since);
        push_opt(&mut params, "until", &query.until);
        push_opt(&mut params, "filter", &query.filter);
        push_limit(&mut params, query.limit);
        params.push(("sortOrder", "ASCENDING".to_owned()));
        self.pages(self.url(&["logs"], &params), Shape::Array)
    }

    /// `GET /api/v1/iam/roles`: custom admin roles.
    pub fn list_custom_roles(&self) -> Pages<CustomRole> {
        self.pages(self.url(&["iam", "roles"], &[]), Shape::Field("roles"))
    }

    /// `GET /api/v1/iam/roles/{roleIdOrLabel}/permissions`.
    pub fn list_custom_role_permissions(&self, role_id: &str) -> Pages<Permission> {
        let url = id(role_id).and_then(|r| self.url(&["iam", "roles", r, "permissions"], &[]));
        self.pages(url, Shape::Field("permissions"))
    }

    fn lock_stats(&self) -> std::sync::MutexGuard<'_, ClientStats> {
        // Counters stay meaningful even if a holder panicked.
        self.inner.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `{base}/api/v1/{segments...}?{params}`, each segment percent-encoded.
    fn url(&self, segments: &[&str], params: &[(&str, String)]) -> Result<Url> {
        let mut url = self.inner.domain.base_url().clone();
        url.path_segments_mut()
            .map_err(|()| Error::InvalidArgument {
                message: "the org base URL cannot carry a path".into(),
            })?
            .pop_if_empty()
            .extend(["api", "v1"])
            .extend(segments);
        if !params.is_empty() {
            url.query_pairs_mut().extend_pairs(params);
        }
        Ok(url)
    }

    async fn get_one<T: DeserializeOwned>(&self, url: Url) -> Result<T> {
        self.execute(Method::GET, &url).await?.decode()
    }

    /// Streams the pages starting at `first`, following `Link: rel="next"` and, for
    /// object-shaped bodies, `_links.next.href`.
    fn pages<T: DeserializeOwned + Send + 'static>(
        &self,
        first: Result<Url>,
        shape: Shape,
    ) -> Pages<T> {
        let client = self.clone();
        Box::pin(async_stream::try_stream! {
            let mut next = Some(first?);
            // Every page URL of this stream so far: a next link back to any of them is a
            // cycle (A -> B -> A), not just one back to the current page. Pages are few
            // (hundreds at most per stream), so holding their URLs is cheap.
            let mut visited: HashSet<Url> = HashSet::new();
            while let Some(url) = next.take() {
                let max_pages = client.inner.options.max_pages;
                if visited.len() >= max_pages {
                    Err(Error::TooManyPages { path: url.path().to_owned(), limit: max_pages })?;
                }
                visited.insert(url.clone());
                let reply = client.execute(Method::GET, &url).await?;
                let header_next = paging::next_link(
                    reply.headers.get_all(header::LINK).iter().filter_map(|v| v.to_str().ok()),
                );
                let (items, body_next) = match shape {
                    Shape::Array => (reply.decode::<Vec<T>>()?, None),
                    Shape::Field(field) => {
                        let mut body: serde_json::Value = reply.decode()?;
                        let body_next = body
                            .pointer("/_links/next/href")
                            .and_then(|v| v.as_str())
                            .map(str::to_owned);
                        let items = match body.get_mut(field).map(serde_json::Value::take) {
                            Some(v) if !v.is_null() => serde_json::from_value::<Vec<T>>(v)
                                .map_err(|e| Error::Decode {
                                    message: format!("{field}: {e}"),
                                    request_id: reply.request_id(),
                                })?,
                            _ => Vec::new(),
                        };
                        (items, body_next)
                    }
                };
                if let Some(link) = header_next.or(body_next) {
                    let base = client.inner.domain.base_url();
                    match paging::check_next(base, &url, &link) {
                        Ok(u) if visited.contains(&u) => Err(Error::BadNextLink {
                            link,
                            reason: "it points at a page already read (a pagination cycle)",
                        })?,
                        Ok(u) => next = Some(u),
                        Err(reason) => Err(Error::BadNextLink { link, reason })?,
                    }
                }
                yield items;
            }
        })
    }

    /// Sends one logical request: paces on the bucket, bounds concurrency, retries 429s,
    /// 5xx and transport failures within `max_retries` and `max_rate_limit_wait`, and maps
    /// final error statuses to [`Error`].
    async fn execute(&self, method: Method, url: &Url) -> Result<Reply> {
        let inner = &self.inner;
        let opts = &inner.options;
        let family = Family::of_path(url.path());
        let bucket = family.bucket();
        let mut budget = WaitBudget {
            waited: Duration::ZERO,
            max: opts.max_rate_limit_wait,
            poll: opts.request_timeout,
        };
        let mut retries = 0u32;
        // 401s answered by renewing the credentials (an expired access token, a DPoP nonce).
        let mut renewals = 0u32;
        loop {
            let waited_before = budget.waited;
            let ticket = inner.budget.limiter().acquire(bucket, &mut budget).await;
            self.lock_stats().rate_limit_wait += budget.waited - waited_before;
            let ticket = ticket?;
            let permit =
                inner
                    .budget
                    .acquire_in_flight()
                    .await
                    .ok_or_else(|| Error::Transport {
                        message: "the client's concurrency limiter was closed".into(),
                    })?;
            {
                let mut stats = self.lock_stats();
                stats.requests += 1;
                *stats
                    .requests_by_endpoint
                    .entry(family.label().to_owned())
                    .or_default() += 1;
            }
            let outcome = self.send_once(&method, url).await;
            drop(permit);
            let (delay, error, rate_limited) = match outcome {
                Ok((reply, generation)) => {
                    let headers = RateLimitHeaders::parse(&reply.headers);
                    let is_429 = reply.status == 429;
                    if let Some(h) = &headers {
                        ticket.observe(h, is_429);
                    }
                    drop(ticket);
                    {
                        let mut stats = self.lock_stats();
                        *stats.requests_by_status.entry(reply.status).or_default() += 1;
                        if is_429 {
                            stats.rate_limited += 1;
                        }
                    }
                    tracing::debug!(%method, path = url.path(), status = reply.status, "okta response");
                    if reply.status == 401
                        && renewals < MAX_RENEWALS
                        && inner.auth.rejected(generation, &reply.headers)
                    {
                        renewals += 1;
                        self.lock_stats().retries += 1;
                        tracing::info!(%method, path = url.path(), "credentials rejected; retrying with renewed ones");
                        continue;
                    }
                    match ratelimit::classify(reply.status, headers.as_ref()) {
                        Action::Done if (200..300).contains(&reply.status) => return Ok(reply),
                        Action::Done => return Err(final_error(&method, url, &reply)),
                        // The bucket's window now reads empty, so the next acquire waits for it.
                        Action::RetryAtReset => {
                            (Duration::ZERO, Error::from_status(reply.error_info()), true)
                        }
                        Action::Backoff => (
                            self.backoff(retries),
                            Error::from_status(reply.error_info()),
                            is_429,
                        ),
                    }
                }
                // Refused credentials (a token request Okta turned down, a key that cannot
                // sign) and a refused body (too large) would be the same again: only
                // transient failures are retried.
                Err(error) if !error.is_transient() => return Err(error),
                Err(error) => {
                    drop(ticket);
                    (self.backoff(retries), error, false)
                }
            };
            if retries >= opts.max_retries {
                return Err(error);
            }
            if rate_limited && !delay.is_zero() {
                budget.check(bucket, delay)?;
                budget.waited += delay;
                self.lock_stats().rate_limit_wait += delay;
            }
            tracing::warn!(%method, path = url.path(), retry = retries + 1, delay_ms = delay.as_millis() as u64, error = %error, "retrying Okta request");
            tokio::time::sleep(delay).await;
            retries += 1;
            self.lock_stats().retries += 1;
        }
    }

    fn backoff(&self, retries: u32) -> Duration {
        let o = &self.inner.options;
        ratelimit::backoff(
            retries,
            o.retry_base_delay,
            o.retry_max_delay,
            rand::random::<f64>(),
        )
    }

    /// One HTTP attempt, body read in full so a connection dropped mid-body counts as a
    /// transport failure (and is retried) rather than a decode error.
    /// Also returns the generation of the credentials used, for [`Auth::rejected`].
    async fn send_once(&self, method: &Method, url: &Url) -> Result<(Reply, u64)> {
        let auth = self.inner.auth.authorize(method, url).await?;
        let mut request = self
            .inner
            .http
            .request(method.clone(), url.clone())
            .headers(auth.headers)
            .header(header::ACCEPT, "application/json");
        if *method == Method::PUT || *method == Method::POST {
            // Okta answers 411 to a body-less PUT/POST without Content-Length: 0.
            request = request
                .header(header::CONTENT_LENGTH, "0")
                .body(Vec::<u8>::new());
        }
        let transport = |e: reqwest::Error| Error::Transport {
            message: describe(method, url, e),
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = read_capped(response, method, url).await?;
        Ok((
            Reply {
                status,
                headers,
                body,
            },
            auth.generation,
        ))
    }
}

/// Most 401s per request answered by renewed credentials: a DPoP nonce, then a new token.
const MAX_RENEWALS: u32 = 2;

/// The error for a final error response. A 403 carrying an OAuth `insufficient_scope`
/// challenge names the missing scope: the challenge's own `scope`, else the one the spec
/// requires for the operation.
fn final_error(method: &Method, url: &Url, reply: &Reply) -> Error {
    let info = reply.error_info();
    if reply.status == 403
        && oauth::challenge_param(&reply.headers, "error").as_deref() == Some("insufficient_scope")
    {
        let scope = oauth::challenge_param(&reply.headers, "scope")
            .or_else(|| oauth::scopes::required(method, url.path()).map(str::to_owned))
            .unwrap_or_else(|| "(not named by Okta)".to_owned());
        return Error::InsufficientScope {
            scope,
            info: Box::new(info),
        };
    }
    Error::from_status(info)
}

/// Reads a response body of at most [`MAX_RESPONSE_BYTES`], refusing a larger one as soon as
/// its `Content-Length` or the bytes received so far say so: a misbehaving server (or
/// whatever answers in its place) cannot make the operator buffer without bound.
async fn read_capped(mut response: reqwest::Response, method: &Method, url: &Url) -> Result<Bytes> {
    let too_large = || Error::ResponseTooLarge {
        request: format!("{method} {}", url.path()),
        limit: MAX_RESPONSE_BYTES,
    };
    let declared = response.content_length().unwrap_or(0);
    if declared > MAX_RESPONSE_BYTES as u64 {
        return Err(too_large());
    }
    let mut body = bytes::BytesMut::with_capacity(usize::try_from(declared).unwrap_or(0));
    while let Some(chunk) = response.chunk().await.map_err(|e| Error::Transport {
        message: describe(method, url, e),
    })? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A transport error's message with its causes, naming the request by method and path only
/// (queries may hold search expressions with personal data).
fn describe(method: &Method, url: &Url, e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut message = format!("{method} {}: {e}", url.path());
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// Rejects ids that would change the request's path instead of naming an object.
fn id(value: &str) -> Result<&str> {
    if value.is_empty() || value == "." || value == ".." {
        return Err(Error::InvalidArgument {
            message: format!("{value:?} is not a valid Okta id or login"),
        });
    }
    Ok(value)
}

fn push_opt(params: &mut Vec<(&'static str, String)>, name: &'static str, value: &Option<String>) {
    if let Some(v) = value {
        params.push((name, v.clone()));
    }
}

fn push_limit(params: &mut Vec<(&'static str, String)>, limit: Option<u32>) {
    if let Some(l) = limit {
        params.push(("limit", l.to_string()));
    }
}
