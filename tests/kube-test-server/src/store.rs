//! Object storage with the API server's write semantics: resourceVersions, uid, generation, status
//! subresource rules, finalizers, validation, managedFields, a bounded watch history and list snapshots.
//!
//! Every write runs under one lock and broadcasts its change while still holding it, so a watch that
//! registers under the same lock sees each change exactly once.

use crate::convert;
use crate::error::{ApiError, Cause, Result, Subject};
use crate::fields::{self, Actor};
use crate::resources::ResourceType;
use crate::schema;
use crate::selector::{FieldSelector, LabelSelector};
use base64::Engine as _;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use tokio::sync::broadcast;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Created.
    Added,
    /// Updated (including deletionTimestamp being set).
    Modified,
    /// Removed from storage.
    Deleted,
}

/// One committed change, kept in the watch history and broadcast to open watches.
#[derive(Debug, Clone)]
pub struct Change {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Storage key (group, plural).
    pub key: (String, String),
    /// Kind of change.
    pub kind: ChangeKind,
    /// The object after the change (for deletions: the last state, with the deletion's resourceVersion).
    pub object: Value,
    /// The object before the change, to turn selector transitions into ADDED/DELETED.
    pub old: Option<Value>,
}

/// Selectors of a list or watch.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Namespace, or all namespaces.
    pub namespace: Option<String>,
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if self.namespace.as_deref().is_some_and(|want| want != ns) {
            return false;
        }
        let labels: BTreeMap<String, String> = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        self.labels.matches(&labels) && self.fields.matches(obj)
    }

    /// The watch event type a change produces for this filter, if any.
    pub fn event_for(&self, change: &Change) -> Option<&'static str> {
        let now = self.matches(&change.object);
        let before = change.old.as_ref().is_some_and(|o| self.matches(o));
        match change.kind {
            ChangeKind::Added if now => Some("ADDED"),
            ChangeKind::Modified if now && before => Some("MODIFIED"),
            ChangeKind::Modified if now => Some("ADDED"),
            ChangeKind::Modified if before => Some("DELETED"),
            ChangeKind::Deleted if now => Some("DELETED"),
            _ => None,
        }
    }
}

/// How to interpret a list's `resourceVersion`.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Selectors.
    pub filter: Filter,
    /// `limit`.
    pub limit: Option<usize>,
    /// `continue` token.
    pub continue_token: Option<String>,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub resource_version_match: Option<String>,
}

/// Who writes and with which identity.
#[derive(Debug, Clone)]
pub struct WriteContext {
    /// Field manager (from `fieldManager` or the user agent).
    pub manager: String,
    /// `dryRun=All`: validate and answer, but store nothing.
    pub dry_run: bool,
}

/// What DELETE asks for.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `propagationPolicy: Orphan`: dependents keep living without this owner.
    pub orphan: bool,
}

/// Outcome of a DELETE: the object still exists (finalizers pending) or it is gone.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// deletionTimestamp set, waiting on finalizers.
    Pending(Value),
    /// Removed; the last state.
    Gone(Value),
}

/// Computes a patched object from the current one.
pub type PatchFn<'a> = Box<dyn FnOnce(&Value) -> Result<Value> + Send + 'a>;

/// A write request under the lock: given the current object, produce the desired one.
pub enum Write<'a> {
    /// PUT: the replacement object.
    Replace(Value),
    /// Merge/json/strategic patch: a function from current to patched object.
    Patch(PatchFn<'a>),
    /// Server-side apply of an applied configuration.
    Apply {
        /// Applied configuration (already parsed).
        applied: Value,
        /// `force=true`.
        force: bool,
    },
}

/// The first events of a new watch and the live feed after them.
pub struct WatchStart {
    /// Events to send first: synthetic ADDED for the initial state or replayed history.
    pub initial: Vec<(&'static str, Value)>,
    /// Live changes committed after `initial`.
    pub live: broadcast::Receiver<Arc<Change>>,
    /// resourceVersion the watch is current at after `initial`.
    pub rv: u64,
    /// Live changes at or below this resourceVersion are not sent: a watch from a version newer
    /// than the current one starts at once but only reports what comes after it.
    pub after: u64,
}

#[derive(Debug)]
struct Snapshot {
    rv: u64,
    items: Vec<Value>,
}

struct Inner {
    rv: u64,
    objects: BTreeMap<(String, String, String, String), Value>,
    history: VecDeque<Arc<Change>>,
    /// Every change with rv > floor is still in `history`.
    floor: u64,
    history_limit: usize,
    snapshots: HashMap<u64, Snapshot>,
    next_snapshot: u64,
}

/// How many paginated list snapshots are kept for `continue` tokens.
const SNAPSHOTS_KEPT: usize = 64;

/// The object store shared by all request handlers.
pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Change>>,
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn uid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn meta_str<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.get("metadata")
        .and_then(|m| m.get(key))
        .and_then(Value::as_str)
}

fn set_meta(obj: &mut Value, key: &str, v: Value) {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"][key] = v;
}

fn remove_meta(obj: &mut Value, key: &str) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove(key);
    }
}

fn subject(rt: &ResourceType, name: &str) -> Subject {
    Subject {
        group: rt.group.clone(),
        kind: rt.plural.clone(),
        name: name.to_string(),
    }
}

fn invalid(rt: &ResourceType, name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::Invalid {
        kind: rt.kind.clone(),
        subject: subject(rt, name),
        causes,
    }
}

/// RFC 1123 subdomain, the syntax of most object names.
static DNS_SUBDOMAIN: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        .expect("static regex")
});

/// Label name part and label value syntax.
static LABEL_NAME: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").expect("static regex")
});

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && DNS_SUBDOMAIN.is_match(s)
}

/// Random suffix alphabet the real server uses for `generateName` (no vowels, no confusables).
const SUFFIX_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn generate_suffix() -> String {
    (0..5)
        .map(|_| SUFFIX_CHARS[rand::random_range(0..SUFFIX_CHARS.len())] as char)
        .collect()
}

/// Everything but metadata (and status, when it has its own endpoint) — what `generation` tracks.
fn spec_part(rt: &ResourceType, obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        if rt.status_subresource {
            m.remove("status");
        }
    }
    v
}

/// Type-specific defaulting, pruning and validation.
fn normalize(rt: &ResourceType, obj: &mut Value) -> Result<()> {
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    let label_causes = label_causes(obj);
    if !label_causes.is_empty() {
        return Err(invalid(rt, &name, label_causes));
    }
    if let Some(schema) = &rt.schema {
        let causes = schema::prepare(schema, obj);
        if !causes.is_empty() {
            return Err(invalid(rt, &name, causes));
        }
    }
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Secret") => normalize_secret(obj),
        ("", "Namespace") => {
            if obj.pointer("/status/phase").is_none() {
                obj["status"] = json!({"phase": "Active"});
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Label keys are `[dns-subdomain/]name`, values `name` or empty; names are at most 63 characters.
fn label_causes(obj: &Value) -> Vec<Cause> {
    let name_ok = |n: &str| n.len() <= 63 && LABEL_NAME.is_match(n);
    let mut causes = Vec::new();
    let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
    for (k, v) in labels.into_iter().flatten() {
        let (prefix, key_name) = k
            .rsplit_once('/')
            .map_or((None, k.as_str()), |(p, n)| (Some(p), n));
        if !name_ok(key_name) || prefix.is_some_and(|p| !is_dns_subdomain(p)) {
            causes.push(Cause::new(
                "FieldValueInvalid",
                "metadata.labels",
                format!("Invalid value: {k:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
            ));
        }
        let value = v.as_str().unwrap_or("\u{0}");
        if !value.is_empty() && !name_ok(value) {
            causes.push(Cause::new(
                "FieldValueInvalid",
                &format!("metadata.labels[{k}]"),
                format!("Invalid value: {value:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
            ));
        }
    }
    causes
}

/// Folds `stringData` into base64 `data`, checks `data` is base64 and defaults `type`.
fn normalize_secret(obj: &mut Value) -> Result<()> {
    let engine = base64::engine::general_purpose::STANDARD;
    if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
        if !obj.get("data").is_some_and(Value::is_object) {
            obj["data"] = json!({});
        }
        for (k, v) in sd {
            obj["data"][&k] = json!(engine.encode(v.as_str().unwrap_or_default()));
        }
    }
    for (k, v) in obj
        .get("data")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let ok = v.as_str().is_some_and(|s| engine.decode(s).is_ok());
        if !ok {
            return Err(ApiError::BadRequest(format!(
                "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data in data.{k}"
            )));
        }
    }
    if obj.get("type").is_none_or(Value::is_null) {
        obj["type"] = json!("Opaque");
    }
    Ok(())
}

impl Store {
    /// An empty store keeping at most `history_limit` changes for watch resumption.
    pub fn new(history_limit: usize) -> Self {
        let (tx, _) = broadcast::channel(4096);
        Store {
            inner: Mutex::new(Inner {
                rv: 1,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                floor: 1,
                history_limit,
                snapshots: HashMap::new(),
                next_snapshot: 1,
            }),
            tx,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Current (latest) resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// Number of stored objects.
    pub fn object_count(&self) -> usize {
        self.lock().objects.len()
    }

    /// Forgets the whole watch history, as an etcd compaction would: older resourceVersions become 410.
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.floor = inner.rv;
        inner.history.clear();
        inner.snapshots.clear();
    }

    fn key(rt: &ResourceType, ns: Option<&str>, name: &str) -> (String, String, String, String) {
        let (g, p) = rt.storage_key();
        (g, p, ns.unwrap_or_default().to_string(), name.to_string())
    }

    /// Reads one object.
    pub fn get(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Result<Value> {
        self.lock()
            .objects
            .get(&Self::key(rt, ns, name))
            .cloned()
            .map(|o| present(rt, o))
            .ok_or_else(|| ApiError::NotFound(subject(rt, name)))
    }

    /// Lists objects with resourceVersion, limit and continue semantics.
    pub fn list(&self, rt: &ResourceType, opts: &ListOptions) -> Result<Value> {
        let mut inner = self.lock();
        let (rv, items, remaining) = if let Some(token) = &opts.continue_token {
            let (id, offset) = decode_continue(token)?;
            let snap = inner.snapshots.get(&id).ok_or_else(|| {
                ApiError::Expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."
                        .into(),
                )
            })?;
            (
                snap.rv,
                snap.items[offset.min(snap.items.len())..].to_vec(),
                offset,
            )
        } else {
            check_list_rv(&inner, opts)?;
            let (g, p) = rt.storage_key();
            let items: Vec<Value> = inner
                .objects
                .iter()
                .filter(|((og, op, _, _), o)| *og == g && *op == p && opts.filter.matches(o))
                .map(|(_, o)| present(rt, o.clone()))
                .collect();
            (inner.rv, items, 0)
        };
        let mut meta = json!({"resourceVersion": rv.to_string()});
        let page = match opts.limit.filter(|l| *l > 0 && *l < items.len()) {
            Some(limit) => {
                let id = match &opts.continue_token {
                    Some(token) => decode_continue(token)?.0,
                    None => {
                        let id = inner.next_snapshot;
                        inner.next_snapshot += 1;
                        inner.snapshots.insert(
                            id,
                            Snapshot {
                                rv,
                                items: items.clone(),
                            },
                        );
                        if inner.snapshots.len() > SNAPSHOTS_KEPT {
                            let oldest = *inner.snapshots.keys().min().expect("non-empty");
                            inner.snapshots.remove(&oldest);
                        }
                        id
                    }
                };
                meta["continue"] = json!(encode_continue(id, remaining + limit));
                meta["remainingItemCount"] = json!(items.len() - limit);
                items[..limit].to_vec()
            }
            None => items,
        };
        Ok(
            json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": meta, "items": page}),
        )
    }

    /// Registers a watch, replaying history after `rv` or synthesising ADDED events for the current state.
    pub fn watch(
        &self,
        rt: &ResourceType,
        filter: &Filter,
        rv: Option<&str>,
        send_initial: bool,
    ) -> Result<WatchStart> {
        let inner = self.lock();
        let from = match rv.filter(|r| !r.is_empty() && *r != "0") {
            Some(r) => Some(parse_rv(r)?),
            None => None,
        };
        // A version newer than the current one: kube-apiserver's watch cache does not refuse it
        // (only lists wait for it and then answer 504 "Too large resource version"); the watch
        // starts and its watcher skips every event not newer than the requested version.
        let after = from.filter(|_| !send_initial).unwrap_or(0).max(inner.rv);
        let initial = match from {
            Some(from) if !send_initial => {
                if from < inner.floor {
                    return Err(ApiError::Expired(format!(
                        "too old resource version: {from} ({})",
                        inner.floor
                    )));
                }
                inner
                    .history
                    .iter()
                    .filter(|c| c.rv > from && c.key == rt.storage_key())
                    .filter_map(|c| {
                        filter
                            .event_for(c)
                            .map(|t| (t, present(rt, c.object.clone())))
                    })
                    .collect()
            }
            _ => {
                let (g, p) = rt.storage_key();
                inner
                    .objects
                    .iter()
                    .filter(|((og, op, _, _), o)| *og == g && *op == p && filter.matches(o))
                    .map(|(_, o)| ("ADDED", present(rt, o.clone())))
                    .collect()
            }
        };
        Ok(WatchStart {
            initial,
            live: self.tx.subscribe(),
            rv: inner.rv,
            after,
        })
    }

    fn commit(
        &self,
        inner: &mut Inner,
        rt: &ResourceType,
        kind: ChangeKind,
        mut obj: Value,
        old: Option<Value>,
    ) -> Value {
        inner.rv += 1;
        let rv = inner.rv;
        set_meta(&mut obj, "resourceVersion", json!(rv.to_string()));
        let ns = meta_str(&obj, "namespace").map(str::to_string);
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let key = Self::key(rt, ns.as_deref(), &name);
        if kind == ChangeKind::Deleted {
            inner.objects.remove(&key);
        } else {
            inner.objects.insert(key, obj.clone());
        }
        let change = Arc::new(Change {
            rv,
            key: rt.storage_key(),
            kind,
            object: obj.clone(),
            old,
        });
        inner.history.push_back(change.clone());
        while inner.history.len() > inner.history_limit {
            if let Some(dropped) = inner.history.pop_front() {
                inner.floor = dropped.rv;
            }
        }
        // No receivers is fine: nobody watches.
        let _ = self.tx.send(change);
        present(rt, obj)
    }

    /// POST: creates an object (or applies one that does not exist yet).
    pub fn create(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        obj: Value,
        ctx: &WriteContext,
    ) -> Result<Value> {
        let mut inner = self.lock();
        self.create_locked(&mut inner, rt, ns, obj, ctx, None)
    }

    fn create_locked(
        &self,
        inner: &mut Inner,
        rt: &ResourceType,
        ns: Option<&str>,
        obj: Value,
        ctx: &WriteContext,
        apply_force: Option<bool>,
    ) -> Result<Value> {
        check_type(rt, &obj)?;
        let mut obj = convert::to_storage(rt, obj);
        if meta_str(&obj, "resourceVersion").is_some_and(|r| !r.is_empty()) {
            return Err(ApiError::Internal(
                "resourceVersion should not be set on objects to be created".into(),
            ));
        }
        let name = match (meta_str(&obj, "name"), meta_str(&obj, "generateName")) {
            (Some(n), _) if !n.is_empty() => n.to_string(),
            (_, Some(g)) if !g.is_empty() => format!("{g}{}", generate_suffix()),
            _ => {
                return Err(invalid(
                    rt,
                    "",
                    vec![Cause::new(
                        "FieldValueRequired",
                        "metadata.name",
                        "Required value: name or generateName is required",
                    )],
                ));
            }
        };
        let is_namespace = rt.group.is_empty() && rt.kind == "Namespace";
        if !is_dns_subdomain(&name) || (is_namespace && (name.len() > 63 || name.contains('.'))) {
            let msg = format!(
                "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            );
            return Err(invalid(
                rt,
                &name,
                vec![Cause::new("FieldValueInvalid", "metadata.name", msg)],
            ));
        }
        set_meta(&mut obj, "name", json!(name));
        if rt.namespaced {
            let ns = ns.ok_or_else(|| {
                ApiError::BadRequest("namespace is required for namespaced resources".into())
            })?;
            if meta_str(&obj, "namespace").is_some_and(|b| !b.is_empty() && b != ns) {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                ));
            }
            let ns_key = (
                "".to_string(),
                "namespaces".to_string(),
                String::new(),
                ns.to_string(),
            );
            match inner.objects.get(&ns_key) {
                None => {
                    return Err(ApiError::NotFound(Subject {
                        group: String::new(),
                        kind: "namespaces".into(),
                        name: ns.to_string(),
                    }));
                }
                Some(n) if meta_str(n, "deletionTimestamp").is_some() => {
                    return Err(ApiError::Forbidden(format!(
                        "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        subject(rt, &name).qualified()
                    )));
                }
                Some(_) => {}
            }
            set_meta(&mut obj, "namespace", json!(ns));
        } else {
            remove_meta(&mut obj, "namespace");
        }
        if inner
            .objects
            .contains_key(&Self::key(rt, ns.filter(|_| rt.namespaced), &name))
        {
            return Err(ApiError::AlreadyExists(subject(rt, &name)));
        }
        if rt.status_subresource
            && rt.custom
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        for k in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generateName",
        ] {
            remove_meta(&mut obj, k);
        }
        set_meta(&mut obj, "uid", json!(uid()));
        set_meta(&mut obj, "creationTimestamp", json!(now()));
        if rt.custom {
            set_meta(&mut obj, "generation", json!(1));
        } else {
            remove_meta(&mut obj, "generation");
        }
        let at = now();
        let actor = Actor {
            manager: &ctx.manager,
            api_version: &rt.api_version(),
            subresource: None,
            now: &at,
            schema: rt.schema.as_ref().map(|s| &s.0),
        };
        let mut obj = match apply_force {
            Some(force) => {
                let empty = json!({"metadata": obj["metadata"].clone()});
                remove_meta(&mut obj, "managedFields");
                fields::apply(&empty, &obj, actor, force)
                    .map_err(|c| apply_conflict(rt, &name, c))?
            }
            None => {
                remove_meta(&mut obj, "managedFields");
                let mut o = obj;
                fields::record_update(&json!({}), &mut o, actor);
                o
            }
        };
        normalize(rt, &mut obj)?;
        if ctx.dry_run {
            return Ok(present(rt, obj));
        }
        Ok(self.commit(inner, rt, ChangeKind::Added, obj, None))
    }

    /// PUT, PATCH and apply on the main endpoint or `/status`.
    pub fn write(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        write: Write<'_>,
        ctx: &WriteContext,
    ) -> Result<Value> {
        let mut inner = self.lock();
        let key = Self::key(rt, ns, name);
        let Some(old) = inner.objects.get(&key).cloned() else {
            return match write {
                Write::Apply { applied, force } if subresource.is_none() => {
                    let mut applied = applied;
                    set_meta(&mut applied, "name", json!(name));
                    self.create_locked(&mut inner, rt, ns, applied, ctx, Some(force))
                }
                _ => Err(ApiError::NotFound(subject(rt, name))),
            };
        };
        let at = now();
        let api_version = rt.api_version();
        let actor = Actor {
            manager: &ctx.manager,
            api_version: &api_version,
            subresource,
            now: &at,
            schema: rt.schema.as_ref().map(|s| &s.0),
        };
        let (mut new, applied) = match write {
            Write::Replace(v) => {
                check_type(rt, &v)?;
                // Custom resources do not allow unconditional updates (built-ins used here do).
                if rt.custom && meta_str(&v, "resourceVersion").is_none_or(str::is_empty) {
                    return Err(invalid(
                        rt,
                        name,
                        vec![Cause::new(
                            "FieldValueInvalid",
                            "metadata.resourceVersion",
                            "Invalid value: 0x0: must be specified for an update",
                        )],
                    ));
                }
                (convert::to_storage(rt, v), false)
            }
            Write::Patch(f) => {
                let patched = f(&present(rt, old.clone()))?;
                check_type(rt, &patched)?;
                (convert::to_storage(rt, patched), false)
            }
            Write::Apply { applied, force } => {
                check_type(rt, &applied)?;
                let mut applied = convert::to_storage(rt, applied);
                if meta_str(&applied, "name").is_some_and(|n| n != name) {
                    return Err(ApiError::BadRequest(format!(
                        "the name of the object ({}) does not match the name on the URL ({name})",
                        meta_str(&applied, "name").unwrap_or_default()
                    )));
                }
                let precondition = meta_str(&applied, "resourceVersion").map(str::to_string);
                restrict_to_endpoint(rt, subresource, &mut applied);
                let mut merged = fields::apply(&old, &applied, actor, force)
                    .map_err(|c| apply_conflict(rt, name, c))?;
                match precondition {
                    Some(rv) => set_meta(&mut merged, "resourceVersion", json!(rv)),
                    None => remove_meta(&mut merged, "resourceVersion"),
                }
                (merged, true)
            }
        };
        if meta_str(&new, "name").is_some_and(|n| n != name) {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta_str(&new, "name").unwrap_or_default()
            )));
        }
        let old_rv = meta_str(&old, "resourceVersion")
            .unwrap_or_default()
            .to_string();
        if meta_str(&new, "resourceVersion").is_some_and(|r| !r.is_empty() && r != old_rv) {
            return Err(ApiError::Conflict(
                subject(rt, name),
                "the object has been modified; please apply your changes to the latest version and try again".into(),
            ));
        }
        new = keep_server_owned(rt, &old, new, subresource);
        let old_finalizers = finalizers(&old);
        if meta_str(&old, "deletionTimestamp").is_some() {
            let added: Vec<String> = finalizers(&new)
                .into_iter()
                .filter(|f| !old_finalizers.contains(f))
                .collect();
            if !added.is_empty() {
                return Err(invalid(
                    rt,
                    name,
                    vec![Cause::new(
                        "FieldValueForbidden",
                        "metadata.finalizers",
                        format!(
                            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                        ),
                    )],
                ));
            }
        }
        if !applied {
            fields::record_update(&old, &mut new, actor);
        }
        normalize(rt, &mut new)?;
        if let Some(schema) = &rt.schema {
            let causes = schema::check_immutable(schema, &old, &new);
            if !causes.is_empty() {
                return Err(invalid(rt, name, causes));
            }
        }
        if rt.custom && spec_part(rt, &new) != spec_part(rt, &old) {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            set_meta(&mut new, "generation", json!(generation + 1));
        }
        set_meta(&mut new, "resourceVersion", json!(old_rv));
        if new == old {
            return Ok(present(rt, old));
        }
        if ctx.dry_run {
            return Ok(present(rt, new));
        }
        let finished = meta_str(&new, "deletionTimestamp").is_some() && finalizers(&new).is_empty();
        let updated = self.commit(&mut inner, rt, ChangeKind::Modified, new, Some(old));
        if finished {
            // As upstream: the update that drops the last finalizer is stored (MODIFIED), then the
            // object is deleted (DELETED).
            if let Some(stored) = inner.objects.get(&key).cloned() {
                self.commit(
                    &mut inner,
                    rt,
                    ChangeKind::Deleted,
                    stored.clone(),
                    Some(stored),
                );
            }
            self.settle(&mut inner);
        }
        Ok(updated)
    }

    /// DELETE: sets deletionTimestamp while finalizers remain, removes the object otherwise.
    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
        ctx: &WriteContext,
    ) -> Result<Deleted> {
        let mut inner = self.lock();
        let old = inner
            .objects
            .get(&Self::key(rt, ns, name))
            .cloned()
            .ok_or_else(|| ApiError::NotFound(subject(rt, name)))?;
        if let Some(want) = &opts.uid
            && meta_str(&old, "uid") != Some(want.as_str())
        {
            return Err(ApiError::Conflict(
                subject(rt, name),
                format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {}",
                    meta_str(&old, "uid").unwrap_or_default()
                ),
            ));
        }
        if let Some(want) = &opts.resource_version
            && meta_str(&old, "resourceVersion") != Some(want.as_str())
        {
            return Err(ApiError::Conflict(
                subject(rt, name),
                format!(
                    "the ResourceVersion in the precondition ({want}) does not match the ResourceVersion in record ({}). The object might have been modified",
                    meta_str(&old, "resourceVersion").unwrap_or_default()
                ),
            ));
        }
        if ctx.dry_run {
            return Ok(Deleted::Gone(present(rt, old)));
        }
        if opts.orphan {
            self.orphan_dependents(&mut inner, meta_str(&old, "uid").unwrap_or_default());
        }
        let outcome = self.delete_locked(&mut inner, rt, old);
        if rt.kind == "Namespace" && rt.group.is_empty() {
            self.delete_namespace_contents(&mut inner, name);
        }
        self.settle(&mut inner);
        Ok(outcome)
    }

    fn delete_locked(&self, inner: &mut Inner, rt: &ResourceType, old: Value) -> Deleted {
        let is_namespace = rt.kind == "Namespace" && rt.group.is_empty();
        if finalizers(&old).is_empty() && !is_namespace {
            return Deleted::Gone(self.commit(
                inner,
                rt,
                ChangeKind::Deleted,
                old.clone(),
                Some(old),
            ));
        }
        if meta_str(&old, "deletionTimestamp").is_some() {
            return Deleted::Pending(present(rt, old));
        }
        let mut new = old.clone();
        set_meta(&mut new, "deletionTimestamp", json!(now()));
        set_meta(&mut new, "deletionGracePeriodSeconds", json!(0));
        if is_namespace {
            new["status"] = json!({"phase": "Terminating"});
        }
        if let Some(g) = new.pointer("/metadata/generation").and_then(Value::as_i64) {
            set_meta(&mut new, "generation", json!(g + 1));
        }
        Deleted::Pending(self.commit(inner, rt, ChangeKind::Modified, new, Some(old)))
    }

    /// Deletes everything in a namespace, as the namespace controller would (finalizers still honoured).
    fn delete_namespace_contents(&self, inner: &mut Inner, ns: &str) {
        let victims: Vec<(String, String, Value)> = inner
            .objects
            .iter()
            .filter(|((_, _, ons, _), _)| ons == ns)
            .map(|((g, p, _, _), o)| (g.clone(), p.clone(), o.clone()))
            .collect();
        for (group, plural, obj) in victims {
            let rt = storage_type(&group, &plural);
            self.delete_locked(inner, &rt, obj);
        }
    }

    /// After deletions: background garbage collection of dependents whose owners are all gone, then
    /// removal of emptied terminating namespaces.
    fn settle(&self, inner: &mut Inner) {
        // Each round deletes at least one object or stops; objects already deleting are skipped.
        loop {
            let live: std::collections::HashSet<String> = inner
                .objects
                .values()
                .filter_map(|o| meta_str(o, "uid"))
                .map(str::to_string)
                .collect();
            let orphans: Vec<(String, String, Value)> = inner
                .objects
                .iter()
                .filter(|(_, o)| meta_str(o, "deletionTimestamp").is_none())
                .filter(|(_, o)| {
                    let owners = owner_uids(o);
                    !owners.is_empty() && owners.iter().all(|u| !live.contains(u))
                })
                .map(|((g, p, _, _), o)| (g.clone(), p.clone(), o.clone()))
                .collect();
            if orphans.is_empty() {
                break;
            }
            for (group, plural, obj) in orphans {
                self.delete_locked(inner, &storage_type(&group, &plural), obj);
            }
        }
        self.finish_namespaces(inner);
    }

    /// `propagationPolicy: Orphan`: dependents lose their owner reference instead of being collected.
    fn orphan_dependents(&self, inner: &mut Inner, uid: &str) {
        let dependents: Vec<(String, String, Value)> = inner
            .objects
            .iter()
            .filter(|(_, o)| owner_uids(o).iter().any(|u| u == uid))
            .map(|((g, p, _, _), o)| (g.clone(), p.clone(), o.clone()))
            .collect();
        for (group, plural, old) in dependents {
            let mut new = old.clone();
            if let Some(refs) = new
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
            }
            self.commit(
                inner,
                &storage_type(&group, &plural),
                ChangeKind::Modified,
                new,
                Some(old),
            );
        }
    }

    /// Removes terminating namespaces once they are empty.
    fn finish_namespaces(&self, inner: &mut Inner) {
        let ns_rt = storage_type("", "namespaces");
        let terminating: Vec<Value> = inner
            .objects
            .iter()
            .filter(|((g, p, _, _), o)| {
                g.is_empty() && p == "namespaces" && meta_str(o, "deletionTimestamp").is_some()
            })
            .map(|(_, o)| o.clone())
            .collect();
        for ns in terminating {
            let name = meta_str(&ns, "name").unwrap_or_default().to_string();
            let empty = !inner.objects.keys().any(|(_, _, ons, _)| *ons == name);
            if empty {
                self.commit(inner, &ns_rt, ChangeKind::Deleted, ns.clone(), Some(ns));
            }
        }
    }
}

/// A minimal type used to address storage for cascading deletes (only the storage key matters).
fn storage_type(group: &str, plural: &str) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: String::new(),
        kind: String::new(),
        plural: plural.into(),
        singular: String::new(),
        namespaced: true,
        status_subresource: false,
        custom: false,
        schema: None,
        field_labels: &[],
        short_names: Vec::new(),
        storage_group: group.into(),
        conversion: convert::Conversion::None,
    }
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("uid").and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// Sets apiVersion and kind as requested (objects are shared across versions without conversion).
pub(crate) fn present(rt: &ResourceType, obj: Value) -> Value {
    let mut obj = convert::from_storage(rt, obj);
    if !rt.version.is_empty() {
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
    }
    obj
}

fn check_type(rt: &ResourceType, obj: &Value) -> Result<()> {
    if !obj.is_object() {
        return Err(ApiError::BadRequest(
            "the body of the request was not a JSON object".into(),
        ));
    }
    let kind = obj.get("kind").and_then(Value::as_str);
    let api_version = obj.get("apiVersion").and_then(Value::as_str);
    if kind.is_some_and(|k| k != rt.kind) || api_version.is_some_and(|v| v != rt.api_version()) {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({}) does not match the expected API version ({})",
            api_version.unwrap_or_default(),
            rt.api_version()
        )));
    }
    Ok(())
}

/// Keeps only what an endpoint may change in an applied configuration.
fn restrict_to_endpoint(rt: &ResourceType, subresource: Option<&str>, applied: &mut Value) {
    if !rt.status_subresource {
        return;
    }
    let Some(map) = applied.as_object_mut() else {
        return;
    };
    if subresource == Some("status") {
        map.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"));
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.retain(|k, _| matches!(k.as_str(), "name" | "namespace" | "resourceVersion"));
        }
    } else {
        map.remove("status");
    }
}

/// Carries over what the client may not change: identity metadata always; status on the main
/// endpoint and everything but status on `/status` for types with a status subresource.
fn keep_server_owned(
    rt: &ResourceType,
    old: &Value,
    mut new: Value,
    subresource: Option<&str>,
) -> Value {
    // Stored identity stays as first written; reads set the requested group/version.
    for k in ["apiVersion", "kind"] {
        if let Some(v) = old.get(k) {
            new[k] = v.clone();
        }
    }
    if rt.status_subresource {
        if subresource == Some("status") {
            let mut kept = old.clone();
            match new.get("status") {
                Some(s) => kept["status"] = s.clone(),
                None => {
                    if let Some(m) = kept.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            if let Some(mf) = new.pointer("/metadata/managedFields") {
                set_meta(&mut kept, "managedFields", mf.clone());
            }
            new = kept;
        } else {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
    }
    for k in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
        "name",
    ] {
        match old.pointer(&format!("/metadata/{k}")) {
            Some(v) => set_meta(&mut new, k, v.clone()),
            None => remove_meta(&mut new, k),
        }
    }
    if !new
        .pointer("/metadata/managedFields")
        .is_some_and(Value::is_array)
        && let Some(mf) = old.pointer("/metadata/managedFields")
    {
        set_meta(&mut new, "managedFields", mf.clone());
    }
    new
}

fn apply_conflict(rt: &ResourceType, name: &str, conflicts: Vec<fields::Conflict>) -> ApiError {
    let causes: Vec<Cause> = conflicts
        .iter()
        .map(|c| {
            Cause::new(
                "FieldManagerConflict",
                &fields::display_path(&c.path),
                format!("conflict with {:?} using {}", c.manager, c.api_version),
            )
        })
        .collect();
    let noun = if causes.len() == 1 {
        "conflict"
    } else {
        "conflicts"
    };
    let list: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.message, c.field))
        .collect();
    ApiError::ApplyConflict {
        subject: subject(rt, name),
        message: format!(
            "Apply failed with {} {noun}: {}",
            causes.len(),
            list.join(", ")
        ),
        causes,
    }
}

fn parse_rv(s: &str) -> Result<u64> {
    s.parse()
        .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {s}")))
}

fn check_list_rv(inner: &Inner, opts: &ListOptions) -> Result<()> {
    let Some(rv) = opts
        .resource_version
        .as_deref()
        .filter(|r| !r.is_empty() && *r != "0")
    else {
        return Ok(());
    };
    let rv = parse_rv(rv)?;
    if rv > inner.rv {
        return Err(ApiError::Timeout(format!(
            "Timeout: Too large resource version: {rv}, current: {}",
            inner.rv
        )));
    }
    // Only the latest state is kept, so an exact older version is reported as compacted.
    if opts.resource_version_match.as_deref() == Some("Exact") && rv != inner.rv {
        return Err(ApiError::Expired(format!(
            "too old resource version: {rv} ({})",
            inner.rv
        )));
    }
    Ok(())
}

fn encode_continue(id: u64, offset: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{{\"s\":{id},\"o\":{offset}}}"))
}

fn decode_continue(token: &str) -> Result<(u64, usize)> {
    let bad = || ApiError::BadRequest(format!("continue key is not valid: {token}"));
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let id = v.get("s").and_then(Value::as_u64).ok_or_else(bad)?;
    let offset = v.get("o").and_then(Value::as_u64).ok_or_else(bad)?;
    Ok((id, offset as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_transitions_become_added_and_deleted() {
        let filter = Filter {
            labels: LabelSelector::parse("app=web").unwrap(),
            ..Filter::default()
        };
        let obj = |app: &str| json!({"metadata": {"labels": {"app": app}}});
        let change = |old: Value, new: Value| Change {
            rv: 2,
            key: (String::new(), "secrets".into()),
            kind: ChangeKind::Modified,
            object: new,
            old: Some(old),
        };
        assert_eq!(
            filter.event_for(&change(obj("db"), obj("web"))),
            Some("ADDED")
        );
        assert_eq!(
            filter.event_for(&change(obj("web"), obj("db"))),
            Some("DELETED")
        );
        assert_eq!(
            filter.event_for(&change(obj("web"), obj("web"))),
            Some("MODIFIED")
        );
        assert_eq!(filter.event_for(&change(obj("db"), obj("db"))), None);
    }

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        assert_eq!(decode_continue(&encode_continue(7, 3)).unwrap(), (7, 3));
        assert_eq!(decode_continue("???").unwrap_err().code(), 400);
    }

    #[test]
    fn uid_looks_like_a_v4_uuid() {
        let u = uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
