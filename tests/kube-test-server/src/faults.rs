//! Fault injection and request counters, shared between the test's handle and the request handlers.

use crate::error::{ApiError, Subject};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The error an injected write failure answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailWith {
    /// 409 `Conflict` (as a stale resourceVersion would).
    Conflict,
    /// 500 `InternalError`.
    InternalError,
}

#[derive(Debug)]
struct PendingFailure {
    resource: Option<String>,
    remaining: usize,
    with: FailWith,
}

#[derive(Debug, Default)]
struct FaultState {
    failures: Vec<PendingFailure>,
    delay: Duration,
    counts: BTreeMap<(String, String), u64>,
    accesses: BTreeMap<Access, u64>,
    watch_events_sent: u64,
    injected: u64,
}

/// The token open watches stop on, and whether the server is shutting down.
#[derive(Debug, Default)]
struct WatchGate {
    token: CancellationToken,
    closed: bool,
}

/// Cloneable handle to the server's faults and counters.
#[derive(Clone, Default)]
pub struct Faults {
    state: Arc<Mutex<FaultState>>,
    watches: Arc<Mutex<WatchGate>>,
}

/// One kind of request, as an RBAC rule would name it, and who made it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Access {
    /// The bearer token the client sent (its kubeconfig user's `token`, see
    /// [`TestServer::write_kubeconfig_as`](crate::TestServer::write_kubeconfig_as)); empty without one.
    pub client: String,
    /// The namespace in the request path; `""` for cluster-scoped objects and for collections
    /// across all namespaces (which an RBAC Role, being namespaced, can never grant).
    pub namespace: String,
    /// API group, `""` for core.
    pub group: String,
    /// Resource plural, with `/subresource` when one was addressed (e.g. `leases`, `widgets/status`).
    pub resource: String,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete` or `deletecollection`.
    pub verb: String,
}

/// Counters observed so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests by (verb, resource plural); verbs are `get`, `list`, `watch`, `create`, `update`,
    /// `patch`, `delete`, `deletecollection`.
    pub requests: BTreeMap<(String, String), u64>,
    /// Requests by client, API group, resource (with subresource) and verb.
    pub accesses: BTreeMap<Access, u64>,
    /// Watch events written to clients (including bookmarks and errors).
    pub watch_events_sent: u64,
    /// Injected failures answered.
    pub injected_failures: u64,
    /// Objects currently stored.
    pub objects: usize,
}

impl Counters {
    /// Requests with this verb for this resource plural.
    pub fn count(&self, verb: &str, resource: &str) -> u64 {
        self.requests
            .get(&(verb.to_string(), resource.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Every (group, resource, verb) this client used, with request counts.
    pub fn accesses_of(&self, client: &str) -> BTreeMap<(String, String, String), u64> {
        self.accesses
            .iter()
            .filter(|(a, _)| a.client == client)
            .fold(BTreeMap::new(), |mut out, (a, n)| {
                let key = (a.group.clone(), a.resource.clone(), a.verb.clone());
                *out.entry(key).or_default() += *n;
                out
            })
    }

    /// Every (namespace, group, resource, verb) this client used, with request counts; the
    /// namespace is `""` for cluster-scoped and all-namespaces requests.
    pub fn namespaced_accesses_of(
        &self,
        client: &str,
    ) -> BTreeMap<(String, String, String, String), u64> {
        let mut out = BTreeMap::new();
        for (a, n) in self.accesses.iter().filter(|(a, _)| a.client == client) {
            let key = (
                a.namespace.clone(),
                a.group.clone(),
                a.resource.clone(),
                a.verb.clone(),
            );
            *out.entry(key).or_default() += *n;
        }
        out
    }

    /// Writes (create, update, patch, delete, deletecollection) to this resource plural.
    pub fn writes(&self, resource: &str) -> u64 {
        ["create", "update", "patch", "delete", "deletecollection"]
            .iter()
            .map(|v| self.count(v, resource))
            .sum()
    }
}

impl Faults {
    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next `n` writes (any resource) fail with `with`.
    pub fn fail_next_writes(&self, n: usize, with: FailWith) {
        self.lock().failures.push(PendingFailure {
            resource: None,
            remaining: n,
            with,
        });
    }

    /// The next `n` writes to `resource` (plural, e.g. `leases`) fail with `with`.
    pub fn fail_next_writes_to(&self, resource: &str, n: usize, with: FailWith) {
        self.lock().failures.push(PendingFailure {
            resource: Some(resource.to_string()),
            remaining: n,
            with,
        });
    }

    /// Delays every response by `delay` (zero turns it off).
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Clears pending failures and the delay.
    pub fn clear(&self) {
        let mut s = self.lock();
        s.failures.clear();
        s.delay = Duration::ZERO;
    }

    fn gate(&self) -> MutexGuard<'_, WatchGate> {
        self.watches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends every open watch stream now (clients see a clean end of stream and re-watch).
    pub fn drop_watches(&self) {
        let mut gate = self.gate();
        gate.token.cancel();
        if !gate.closed {
            gate.token = CancellationToken::new();
        }
    }

    /// Token a new watch stream stops on; `None` once [`Faults::close`] ran. Taken under the
    /// same lock `close` cancels under, so no watch can start after `close` uncancelled.
    pub(crate) fn watch_token(&self) -> Option<CancellationToken> {
        let gate = self.gate();
        (!gate.closed).then(|| gate.token.clone())
    }

    /// Shutdown: ends every open watch and refuses new requests from now on.
    pub(crate) fn close(&self) {
        let mut gate = self.gate();
        gate.closed = true;
        gate.token.cancel();
    }

    /// Whether [`Faults::close`] ran.
    pub(crate) fn is_closed(&self) -> bool {
        self.gate().closed
    }

    pub(crate) fn delay(&self) -> Duration {
        self.lock().delay
    }

    /// Counts a request and, for writes, takes a pending injected failure if one applies.
    /// `access.resource` may carry a `/subresource`; failures match on the plural alone.
    pub(crate) fn on_request(&self, access: Access, name: &str) -> Option<ApiError> {
        let mut s = self.lock();
        let plural = access.resource.split('/').next().unwrap_or_default();
        let (verb, group, resource) = (
            access.verb.clone(),
            access.group.clone(),
            plural.to_string(),
        );
        *s.counts
            .entry((verb.clone(), resource.clone()))
            .or_default() += 1;
        *s.accesses.entry(access).or_default() += 1;
        let verb = verb.as_str();
        if !matches!(
            verb,
            "create" | "update" | "patch" | "delete" | "deletecollection"
        ) {
            return None;
        }
        let failure = s.failures.iter_mut().find(|f| {
            f.remaining > 0 && f.resource.as_deref().is_none_or(|r| r == resource.as_str())
        })?;
        failure.remaining -= 1;
        let with = failure.with;
        s.failures.retain(|f| f.remaining > 0);
        s.injected += 1;
        Some(match with {
            FailWith::Conflict => ApiError::Conflict(
                Subject {
                    group,
                    kind: resource,
                    name: name.to_string(),
                },
                "the object has been modified; please apply your changes to the latest version and try again (injected)".into(),
            ),
            FailWith::InternalError => ApiError::Internal("injected failure".into()),
        })
    }

    pub(crate) fn on_watch_event(&self) {
        self.lock().watch_events_sent += 1;
    }

    pub(crate) fn counters(&self, objects: usize) -> Counters {
        let s = self.lock();
        Counters {
            requests: s.counts.clone(),
            accesses: s.accesses.clone(),
            watch_events_sent: s.watch_events_sent,
            injected_failures: s.injected,
            objects,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(client: &str, group: &str, resource: &str, verb: &str) -> Access {
        access_in(client, "", group, resource, verb)
    }

    fn access_in(client: &str, ns: &str, group: &str, resource: &str, verb: &str) -> Access {
        Access {
            client: client.into(),
            namespace: ns.into(),
            group: group.into(),
            resource: resource.into(),
            verb: verb.into(),
        }
    }

    #[test]
    fn failures_are_consumed_per_resource_and_reads_never_fail() {
        let f = Faults::default();
        let on_request = |verb: &str, group: &str, resource: &str, name: &str| {
            f.on_request(access("", group, resource, verb), name)
        };
        f.fail_next_writes_to("leases", 1, FailWith::Conflict);
        f.fail_next_writes(1, FailWith::InternalError);
        assert!(on_request("get", "", "leases", "a").is_none());
        assert_eq!(
            on_request("update", "", "secrets", "a").unwrap().code(),
            500
        );
        assert!(on_request("update", "", "secrets", "a").is_none());
        assert_eq!(
            on_request("update", "coordination.k8s.io", "leases", "a")
                .unwrap()
                .code(),
            409
        );
        assert!(on_request("update", "coordination.k8s.io", "leases", "a").is_none());
        let c = f.counters(0);
        assert_eq!(c.injected_failures, 2);
        assert_eq!(c.writes("leases"), 2);
        assert_eq!(c.count("get", "leases"), 1);
    }

    #[test]
    fn accesses_are_counted_per_client_with_subresources() {
        let f = Faults::default();
        f.fail_next_writes_to("widgets", 1, FailWith::InternalError);
        let status = access("op", "example.com", "widgets/status", "patch");
        assert!(
            f.on_request(status.clone(), "w").is_some(),
            "the plural matches"
        );
        assert!(f.on_request(status, "w").is_none());
        assert!(
            f.on_request(access("", "", "secrets", "get"), "s")
                .is_none()
        );
        let c = f.counters(0);
        assert_eq!(c.count("patch", "widgets"), 2);
        assert_eq!(
            c.accesses_of("op"),
            BTreeMap::from([(
                (
                    "example.com".into(),
                    "widgets/status".into(),
                    "patch".into()
                ),
                2
            )])
        );
        assert_eq!(c.accesses_of("").len(), 1);
        assert!(c.accesses_of("nobody").is_empty());
    }

    #[test]
    fn accesses_keep_the_namespace_apart_and_sum_across_it() {
        let f = Faults::default();
        for ns in ["a", "a", "b", ""] {
            assert!(
                f.on_request(access_in("op", ns, "", "configmaps", "get"), "c")
                    .is_none()
            );
        }
        let c = f.counters(0);
        let key = |ns: &str| {
            (
                ns.to_string(),
                String::new(),
                "configmaps".to_string(),
                "get".to_string(),
            )
        };
        assert_eq!(
            c.namespaced_accesses_of("op"),
            BTreeMap::from([(key(""), 1), (key("a"), 2), (key("b"), 1)])
        );
        assert_eq!(
            c.accesses_of("op"),
            BTreeMap::from([(("".into(), "configmaps".into(), "get".into()), 4)])
        );
    }

    #[test]
    fn drop_watches_cancels_current_tokens_only() {
        let f = Faults::default();
        let before = f.watch_token().unwrap();
        f.drop_watches();
        assert!(before.is_cancelled());
        assert!(!f.watch_token().unwrap().is_cancelled());
    }

    #[test]
    fn close_cancels_watches_and_hands_out_no_new_token() {
        let f = Faults::default();
        let open = f.watch_token().unwrap();
        assert!(!f.is_closed());
        f.close();
        assert!(open.is_cancelled());
        assert!(f.is_closed());
        assert!(f.watch_token().is_none());
        f.drop_watches();
        assert!(
            f.watch_token().is_none(),
            "dropping watches does not reopen"
        );
    }
}
