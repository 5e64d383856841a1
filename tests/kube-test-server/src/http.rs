//! HTTP edge: parses Kubernetes API paths and query parameters, calls the store, streams watches.

use crate::authz::Authorizer;
use crate::error::{ApiError, Result};
use crate::faults::{Access, Faults};
use crate::patch;
use crate::resources::{self, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{
    DeleteOptions, Deleted, Filter, ListOptions, Store, WatchStart, Write, WriteContext,
};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use http::{Method, StatusCode, header};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Everything a request handler needs.
pub struct AppState {
    /// Served types.
    pub types: Vec<ResourceType>,
    /// Objects.
    pub store: Arc<Store>,
    /// Faults and counters.
    pub faults: Faults,
    /// `host:port` for `/api`.
    pub addr: String,
    /// How often open watches with `allowWatchBookmarks` get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Longest a watch stays open when the client gives no `timeoutSeconds`.
    pub max_watch: Duration,
    /// Answers SubjectAccessReviews and SelfSubjectReviews.
    pub authorizer: Authorizer,
}

/// Largest request body accepted.
const BODY_LIMIT: usize = 16 << 20;

/// The single fallback handler: the API's path space is parsed here rather than in a router table.
pub async fn handle(State(app): State<Arc<AppState>>, req: Request) -> Response {
    if app.faults.is_closed() {
        return shutting_down();
    }
    let delay = app.faults.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match route(&app, req).await {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    }
}

/// What kube-apiserver answers new requests with once it is shutting down (with
/// `--shutdown-send-retry-after`): 429, `Retry-After`, `Connection: close` and a plain-text body.
/// Without that flag upstream keeps serving until its listener closes; refusing at once keeps
/// [`crate::TestServer::shutdown`] bounded (no watch can open after it began).
fn shutting_down() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [
            (header::RETRY_AFTER, "1"),
            (header::CONNECTION, "close"),
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        ],
        "The apiserver is shutting down, please try again later.",
    )
        .into_response()
}

fn error_response(e: &ApiError) -> Response {
    json_response(
        StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.to_status(),
    )
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A parsed resource path.
struct Target<'a> {
    rt: &'a ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn find_type<'a>(
    app: &'a AppState,
    group: &str,
    version: &str,
    plural: &str,
) -> Result<&'a ResourceType> {
    app.types
        .iter()
        .find(|t| t.group == group && t.version == version && t.plural == plural)
        .ok_or(ApiError::NoRoute)
}

/// Resolves `rest` (what follows `/api/v1` or `/apis/{g}/{v}`) to a resource target.
fn resolve<'a>(app: &'a AppState, group: &str, version: &str, rest: &[&str]) -> Result<Target<'a>> {
    let owned = |s: &&str| s.to_string();
    let namespaced_path =
        rest.len() >= 3 && rest[0] == "namespaces" && !matches!(rest[2], "status" | "finalize");
    let (namespace, rest) = if namespaced_path {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(n), None),
        [p, n, s] => (*p, Some(n), Some(s)),
        _ => return Err(ApiError::NoRoute),
    };
    let rt = find_type(app, group, version, plural)?;
    if namespace.is_some() && !rt.namespaced {
        return Err(ApiError::NoRoute);
    }
    // A namespaced type's object path must name its namespace; collections may span all of them.
    if rt.namespaced && namespace.is_none() && name.is_some() {
        return Err(ApiError::NoRoute);
    }
    if let Some(s) = sub
        && !(*s == "status" && rt.status_subresource)
    {
        return Err(ApiError::NoRoute);
    }
    Ok(Target {
        rt,
        namespace,
        name: name.map(owned),
        subresource: sub.map(owned),
    })
}

fn query_map(req: &Request) -> HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

async fn route(app: &AppState, req: Request) -> Result<Response> {
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let get_only = |v: Value| {
        if req.method() == Method::GET {
            Ok(json_response(StatusCode::OK, &v))
        } else {
            Err(ApiError::MethodNotAllowed)
        }
    };
    match segs.as_slice() {
        ["version"] => get_only(json!({
            "major": "1", "minor": "34", "gitVersion": "v1.34.0-kube-test-server", "platform": "linux/amd64",
        })),
        ["api"] => get_only(resources::core_versions(&app.addr)),
        ["apis"] => get_only(resources::group_list(&app.types)),
        ["api", "v1"] => {
            get_only(resources::resource_list(&app.types, "", "v1").ok_or(ApiError::NoRoute)?)
        }
        ["apis", g, v] => {
            get_only(resources::resource_list(&app.types, g, v).ok_or(ApiError::NoRoute)?)
        }
        [
            "apis",
            group @ ("authorization.k8s.io" | "authentication.k8s.io"),
            "v1",
            resource @ ("subjectaccessreviews" | "selfsubjectreviews"),
        ] => {
            // Counted (and open to injected faults) like any other request.
            let access = Access {
                client: bearer_token(&req),
                namespace: String::new(),
                group: (*group).to_owned(),
                resource: (*resource).to_owned(),
                verb: "create".to_owned(),
            };
            if let Some(err) = app.faults.on_request(access, "") {
                return Err(err);
            }
            let token = bearer_token(&req);
            let body = review_body(req).await?;
            if *resource == "subjectaccessreviews" {
                created(app.authorizer.review(body)?)
            } else {
                created(app.authorizer.self_review(&token, body)?)
            }
        }
        ["api", "v1", rest @ ..] => {
            let target = resolve(app, "", "v1", rest)?;
            serve(app, target, req).await
        }
        ["apis", g, v, rest @ ..] => {
            let (g, v) = (g.to_string(), v.to_string());
            let target = resolve(app, &g, &v, rest)?;
            serve(app, target, req).await
        }
        _ => Err(ApiError::NoRoute),
    }
}

/// The body of a POSTed review (nothing else is served on review paths).
async fn review_body(req: Request) -> Result<Value> {
    if req.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed);
    }
    let body = axum::body::to_bytes(req.into_body(), BODY_LIMIT)
        .await
        .map_err(|e| ApiError::BadRequest(format!("reading body: {e}")))?;
    parse_body(&body, false)
}

fn created(v: Value) -> Result<Response> {
    Ok(json_response(StatusCode::CREATED, &v))
}

fn verb(method: &Method, target: &Target<'_>, q: &HashMap<String, String>) -> Result<&'static str> {
    let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    Ok(match (method.as_str(), target.name.is_some()) {
        // As kube-apiserver's RequestInfo: `watch=true` only turns a GET of a collection into a
        // watch; a GET of an object path stays a plain GET (one object is watched through the
        // collection with `fieldSelector=metadata.name=...`, or the deprecated `/watch/` prefix,
        // which is not served here).
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", false) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return Err(ApiError::MethodNotAllowed),
    })
}

/// The bearer token, which names the client in the request counters (nothing is authenticated).
fn bearer_token(req: &Request) -> String {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn write_context(req: &Request, q: &HashMap<String, String>) -> WriteContext {
    let agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown");
    WriteContext {
        manager: q
            .get("fieldManager")
            .cloned()
            .unwrap_or_else(|| agent.to_string()),
        dry_run: q.get("dryRun").is_some_and(|d| d == "All"),
    }
}

fn filter(target: &Target<'_>, q: &HashMap<String, String>) -> Result<Filter> {
    Ok(Filter {
        namespace: target.namespace.clone(),
        labels: LabelSelector::parse(
            q.get("labelSelector")
                .map(String::as_str)
                .unwrap_or_default(),
        )?,
        fields: FieldSelector::parse(
            q.get("fieldSelector")
                .map(String::as_str)
                .unwrap_or_default(),
            target.rt.field_labels,
        )?,
    })
}

fn parse_body(bytes: &Bytes, yaml_ok: bool) -> Result<Value> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok(v),
        Err(e) if yaml_ok => serde_yaml::from_slice(bytes)
            .map_err(|y| ApiError::BadRequest(format!("error decoding YAML: {y} (json: {e})"))),
        Err(e) => Err(ApiError::BadRequest(format!(
            "error decoding request body: {e}"
        ))),
    }
}

async fn serve(app: &AppState, target: Target<'_>, req: Request) -> Result<Response> {
    let q = query_map(&req);
    let verb = verb(req.method(), &target, &q)?;
    let rt = target.rt;
    let name = target.name.clone().unwrap_or_default();
    let access = Access {
        client: bearer_token(&req),
        namespace: target.namespace.clone().unwrap_or_default(),
        group: rt.group.clone(),
        resource: match &target.subresource {
            Some(sub) => format!("{}/{sub}", rt.plural),
            None => rt.plural.clone(),
        },
        verb: verb.to_string(),
    };
    if let Some(err) = app.faults.on_request(access, &name) {
        return Err(err);
    }
    let ctx = write_context(&req, &q);
    // kube's metadata API and metadata_watcher ask for PartialObjectMetadata through Accept.
    let metadata_only = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let body = axum::body::to_bytes(req.into_body(), BODY_LIMIT)
        .await
        .map_err(|e| ApiError::BadRequest(format!("reading body: {e}")))?;
    let ns = target.namespace.as_deref();
    let sub = target.subresource.as_deref();
    let store = &app.store;
    let ok = |v: Value| Ok(json_response(StatusCode::OK, &v));
    match verb {
        "get" if metadata_only => ok(partial_metadata(&store.get(rt, ns, &name)?)),
        "get" => ok(store.get(rt, ns, &name)?),
        "list" if metadata_only => {
            let mut list = store.list(rt, &list_options(&target, &q)?)?;
            let items: Vec<Value> = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(partial_metadata)
                .collect();
            list["items"] = Value::Array(items);
            list["kind"] = json!("PartialObjectMetadataList");
            list["apiVersion"] = json!("meta.k8s.io/v1");
            ok(list)
        }
        "list" => ok(store.list(rt, &list_options(&target, &q)?)?),
        "watch" => watch(app, &target, &q, metadata_only),
        "create" => {
            let obj = parse_body(&body, false)?;
            Ok(json_response(
                StatusCode::CREATED,
                &store.create(rt, ns, obj, &ctx)?,
            ))
        }
        "update" => ok(store.write(
            rt,
            ns,
            &name,
            sub,
            Write::Replace(parse_body(&body, false)?),
            &ctx,
        )?),
        "patch" => {
            let write = patch_write(rt, &content_type, &body, &q)?;
            let existed = store.get(rt, ns, &name).is_ok();
            let obj = store.write(rt, ns, &name, sub, write, &ctx)?;
            Ok(json_response(
                if existed {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                },
                &obj,
            ))
        }
        "delete" => {
            let opts = delete_options(&parse_body(&body, false)?, &q);
            match store.delete(rt, ns, &name, &opts, &ctx)? {
                Deleted::Pending(obj) => Ok(json_response(StatusCode::ACCEPTED, &obj)),
                Deleted::Gone(obj) => ok(success_status(rt, &obj)),
            }
        }
        "deletecollection" => {
            let listed = store.list(rt, &list_options(&target, &q)?)?;
            let opts = DeleteOptions::default();
            let mut gone = Vec::new();
            for item in listed["items"].as_array().into_iter().flatten() {
                let n = item
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let ins = item.pointer("/metadata/namespace").and_then(Value::as_str);
                // Another writer may have removed it meanwhile; that is not an error for a collection.
                match store.delete(rt, ins, n, &opts, &ctx) {
                    Ok(Deleted::Pending(o) | Deleted::Gone(o)) => gone.push(o),
                    Err(ApiError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            let mut list = listed;
            list["items"] = Value::Array(gone);
            ok(list)
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// The `PartialObjectMetadata` view of an object.
fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

fn success_status(rt: &ResourceType, obj: &Value) -> Value {
    let m = |k: &str| {
        obj.pointer(&format!("/metadata/{k}"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": m("name"), "group": rt.group, "kind": rt.plural, "uid": m("uid")},
    })
}

fn delete_options(body: &Value, q: &HashMap<String, String>) -> DeleteOptions {
    let pre = |k: &str| {
        body.pointer(&format!("/preconditions/{k}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    // Background and Foreground both end with dependents collected once the owner is gone;
    // gracePeriodSeconds is accepted and ignored (deletion is immediate or waits on finalizers).
    let policy = body
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or_else(|| q.get("propagationPolicy").map(String::as_str));
    DeleteOptions {
        uid: pre("uid"),
        resource_version: pre("resourceVersion"),
        orphan: policy == Some("Orphan"),
    }
}

fn list_options(target: &Target<'_>, q: &HashMap<String, String>) -> Result<ListOptions> {
    Ok(ListOptions {
        filter: filter(target, q)?,
        limit: q
            .get("limit")
            .map(|l| {
                l.parse()
                    .map_err(|_| ApiError::BadRequest(format!("invalid limit {l:?}")))
            })
            .transpose()?,
        continue_token: q.get("continue").filter(|c| !c.is_empty()).cloned(),
        resource_version: q.get("resourceVersion").cloned(),
        resource_version_match: q.get("resourceVersionMatch").cloned(),
    })
}

fn patch_write<'a>(
    rt: &ResourceType,
    content_type: &str,
    body: &Bytes,
    q: &HashMap<String, String>,
) -> Result<Write<'a>> {
    Ok(match content_type {
        "application/merge-patch+json" => {
            let p = parse_body(body, false)?;
            Write::Patch(Box::new(move |cur: &Value| {
                let mut v = cur.clone();
                patch::merge_patch(&mut v, &p);
                Ok(v)
            }))
        }
        "application/strategic-merge-patch+json" if rt.custom => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (strategic merge patch is not supported for {})",
                rt.plural
            )));
        }
        // Built-ins: the fields these types have carry no strategic list merge keys that matter here.
        "application/strategic-merge-patch+json" => {
            let p = parse_body(body, false)?;
            Write::Patch(Box::new(move |cur: &Value| {
                let mut v = cur.clone();
                patch::merge_patch(&mut v, &p);
                Ok(v)
            }))
        }
        "application/json-patch+json" => {
            let p = parse_body(body, false)?;
            Write::Patch(Box::new(move |cur: &Value| {
                let mut v = cur.clone();
                patch::json_patch(&mut v, &p)?;
                Ok(v)
            }))
        }
        "application/apply-patch+yaml" => {
            if q.get("fieldManager").is_none_or(String::is_empty) {
                return Err(ApiError::BadRequest("PATCH /apply requires fieldManager: fieldManager is required for apply requests".into()));
            }
            let applied = parse_body(body, true)?;
            for k in ["apiVersion", "kind"] {
                if applied
                    .get(k)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    return Err(ApiError::BadRequest(format!(
                        "invalid object: {k} must be set for apply"
                    )));
                }
            }
            Write::Apply {
                applied,
                force: q.get("force").is_some_and(|f| f == "true"),
            }
        }
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other})"
            )));
        }
    })
}

fn watch_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn bookmark(rt: &ResourceType, rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": meta})
}

fn watch(
    app: &AppState,
    target: &Target<'_>,
    q: &HashMap<String, String>,
    metadata_only: bool,
) -> Result<Response> {
    let filter = filter(target, q)?;
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let send_initial = q.get("sendInitialEvents").is_some_and(|b| b == "true");
    if send_initial && !bookmarks {
        return Err(ApiError::Invalid {
            kind: "ListOptions".into(),
            subject: Default::default(),
            causes: vec![crate::error::Cause::new(
                "FieldValueForbidden",
                "allowWatchBookmarks",
                "Forbidden: sendInitialEvents requires setting allowWatchBookmarks=true",
            )],
        });
    }
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(app.max_watch)
        .min(app.max_watch);
    // An unparsable resourceVersion fails the request before any stream starts (upstream's
    // cacher returns the parse error from Watch instead of an ERROR event). Upstream wraps it
    // as a storage Invalid error; which status that surfaces as depends on the registry path,
    // so this answers 400 BadRequest with the parse error, as lists here do.
    if let Some(rv) = q
        .get("resourceVersion")
        .filter(|r| !r.is_empty() && r.as_str() != "0")
        && rv.parse::<u64>().is_err()
    {
        return Err(ApiError::BadRequest(format!(
            "invalid resource version: {rv}"
        )));
    }
    let start = app.store.watch(
        target.rt,
        &filter,
        q.get("resourceVersion").map(String::as_str),
        send_initial,
    );
    // Shutdown may have begun since `handle` checked; the token is taken under its lock.
    let Some(token) = app.faults.watch_token() else {
        return Ok(shutting_down());
    };
    let spec = WatchSpec {
        rt: target.rt.clone(),
        filter,
        send_initial,
        bookmarks,
        interval: app.bookmark_interval,
        token,
        faults: app.faults.clone(),
        metadata_only,
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(
            watch_stream(Arc::new(spec), start, timeout).map(Ok::<_, std::convert::Infallible>),
        ))
        .expect("static response parts"))
}

/// What one open watch streams, and how.
struct WatchSpec {
    rt: ResourceType,
    filter: Filter,
    send_initial: bool,
    bookmarks: bool,
    interval: Duration,
    token: tokio_util::sync::CancellationToken,
    faults: Faults,
    metadata_only: bool,
}

impl WatchSpec {
    fn object_line(&self, kind: &str, obj: &Value) -> Bytes {
        if self.metadata_only {
            watch_line(kind, &partial_metadata(obj))
        } else {
            watch_line(kind, obj)
        }
    }
}

/// The watch body: replay, optional initial-events-end bookmark, then live changes until timeout,
/// a dropped-watch fault, or the broadcast lagging (the client then resumes from its last version).
fn watch_stream(
    spec: Arc<WatchSpec>,
    start: Result<WatchStart>,
    timeout: Duration,
) -> impl futures::Stream<Item = Bytes> {
    let state = (
        Some(start),
        Vec::<Bytes>::new(),
        // (live changes, last resourceVersion seen, skip changes at or below this one)
        None::<(tokio::sync::broadcast::Receiver<_>, u64, u64)>,
    );
    let deadline = tokio::time::Instant::now() + timeout;
    futures::stream::unfold(state, move |(mut start, mut pending, mut live)| {
        let spec = spec.clone();
        async move {
            let (rt, faults) = (&spec.rt, &spec.faults);
            if let Some(start) = start.take() {
                match start {
                    Err(e) => pending.push(watch_line("ERROR", &e.to_status())),
                    Ok(ws) => {
                        pending
                            .extend(ws.initial.iter().rev().map(|(t, o)| spec.object_line(t, o)));
                        if spec.send_initial {
                            pending.insert(0, watch_line("BOOKMARK", &bookmark(rt, ws.rv, true)));
                        }
                        live = Some((ws.live, ws.rv, ws.after));
                    }
                }
            }
            if let Some(line) = pending.pop() {
                faults.on_watch_event();
                return Some((line, (None, pending, live)));
            }
            let (mut rx, mut last_rv, after) = live?;
            let mut ticker = tokio::time::interval_at(
                tokio::time::Instant::now() + spec.interval,
                spec.interval,
            );
            loop {
                tokio::select! {
                    _ = spec.token.cancelled() => return None,
                    _ = tokio::time::sleep_until(deadline) => return None,
                    _ = ticker.tick(), if spec.bookmarks && last_rv >= after => {
                        faults.on_watch_event();
                        let line = watch_line("BOOKMARK", &bookmark(rt, last_rv, false));
                        return Some((line, (None, pending, Some((rx, last_rv, after)))));
                    }
                    got = rx.recv() => {
                        let change = got.ok()?;
                        last_rv = change.rv;
                        if change.key != rt.storage_key() || change.rv <= after {
                            continue;
                        }
                        if let Some(kind) = spec.filter.event_for(&change) {
                            let obj = crate::store::present(rt, change.object.clone());
                            faults.on_watch_event();
                            return Some((spec.object_line(kind, &obj), (None, pending, Some((rx, last_rv, after)))));
                        }
                    }
                }
            }
        }
    })
}
