//! kube-runtime building blocks against the server: Controller with status apply, the finalizer
//! helper, the event Recorder, and Lease-based leader election under resourceVersion conflicts.

use crate::common;

use common::{bounded, eventually, start, status_of};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::watcher;
use kube::{Client, CustomResource, Resource, ResourceExt};
use kube_test_server::FailWith;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Typed view of the test CRD `widgets.example.com`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    schema = "disabled"
)]
pub struct WidgetSpec {
    /// Small or Large.
    pub size: String,
}

/// Status written by the test controller.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WidgetStatus {
    /// Reconciled phase.
    pub phase: Option<String>,
    /// Generation the status describes.
    pub observed_generation: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct ReconcileError(#[from] kube::Error);

struct Ctx {
    client: Client,
    recorder: Recorder,
    reconciles: AtomicUsize,
    /// resourceVersion of the object the latest reconcile was given.
    last_seen: std::sync::Mutex<Option<String>>,
}

async fn reconcile(w: Arc<Widget>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    *ctx.last_seen.lock().unwrap() = w.resource_version();
    ctx.reconciles.fetch_add(1, Ordering::SeqCst);
    let api: Api<Widget> = Api::namespaced(ctx.client.clone(), &w.namespace().unwrap());
    let status = json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "status": {"phase": format!("Ready-{}", w.spec.size), "observedGeneration": w.metadata.generation},
    });
    api.patch_status(
        &w.name_any(),
        &PatchParams::apply("widget-controller").force(),
        &Patch::Apply(&status),
    )
    .await?;
    let ev = Event {
        type_: EventType::Normal,
        reason: "Reconciled".into(),
        note: Some(format!("size {}", w.spec.size)),
        action: "Reconcile".into(),
        secondary: None,
    };
    ctx.recorder.publish(&ev, &w.object_ref(&())).await?;
    Ok(Action::await_change())
}

fn error_policy(_: Arc<Widget>, _: &ReconcileError, _: Arc<Ctx>) -> Action {
    Action::requeue(std::time::Duration::from_millis(50))
}

/// Creates the widget `name` of size `Small`.
async fn create_small_widget(api: &Api<Widget>, name: &str) -> Widget {
    let spec = WidgetSpec {
        size: "Small".into(),
    };
    api.create(&PostParams::default(), &Widget::new(name, spec))
        .await
        .unwrap()
}

#[tokio::test]
async fn controller_converges_status_and_records_events() {
    let server = start().await;
    let client = server.client();
    let api: Api<Widget> = Api::default_namespaced(client.clone());
    let reporter = Reporter {
        controller: "widget-controller".into(),
        instance: None,
    };
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        reconciles: AtomicUsize::new(0),
        last_seen: std::sync::Mutex::new(None),
    });
    create_small_widget(&api, "w").await;
    // The first status write fails; the controller's error policy retries it.
    server
        .faults()
        .fail_next_writes_to("widgets", 1, FailWith::InternalError);
    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    let task = tokio::spawn(controller);
    let observed = |generation: i64, phase: &'static str| {
        let api = api.clone();
        move || {
            let api = api.clone();
            async move {
                let w = api.get("w").await.ok()?;
                let s = w.status?;
                (s.observed_generation == Some(generation) && s.phase.as_deref() == Some(phase))
                    .then_some(())
            }
        }
    };
    eventually("status for generation 1", observed(1, "Ready-Small")).await;
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": "Large"}})),
    )
    .await
    .unwrap();
    eventually("status for generation 2", observed(2, "Ready-Large")).await;
    let w = api.get("w").await.unwrap();
    assert_eq!(
        w.metadata.generation,
        Some(2),
        "status writes never bump generation"
    );
    let events: Api<K8sEvent> = Api::default_namespaced(client.clone());
    let recorded = eventually("events recorded", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        let mine: Vec<K8sEvent> = list
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("Reconciled"))
            .collect();
        // The recorder folds repeats of one (reason, action, object) into a series.
        (mine.len() == 1 && mine[0].series.as_ref().is_some_and(|s| s.count >= 2)).then_some(mine)
    })
    .await;
    assert!(
        recorded
            .iter()
            .all(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("w"))
    );
    assert!(
        recorded
            .iter()
            .all(|e| e.reporting_controller.as_deref() == Some("widget-controller"))
    );
    // No hot loop: status applies that change nothing do not trigger more reconciles. Once the
    // controller has reconciled the stored version (a no-op apply: the status is current), the
    // count must stay flat over a settle window; a server that bumped the resourceVersion or
    // sent an event for a no-op write would reconcile again within milliseconds.
    let current = || async { api.get("w").await.ok()?.resource_version() };
    eventually("the controller reconciled the stored version", || async {
        let stored = current().await?;
        (ctx.last_seen.lock().unwrap().as_deref() == Some(stored.as_str())).then_some(())
    })
    .await;
    let settled = ctx.reconciles.load(Ordering::SeqCst);
    let window = std::time::Duration::from_secs(1);
    let moved = tokio::time::timeout(window, async {
        while ctx.reconciles.load(Ordering::SeqCst) == settled {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        moved.is_err(),
        "reconciled again after settling at {settled} (now {}, resourceVersion {:?})",
        ctx.reconciles.load(Ordering::SeqCst),
        current().await
    );
    assert_eq!(server.counters().injected_failures, 1);
    task.abort();
}

#[tokio::test]
async fn recorder_turns_repeated_events_into_a_series() {
    let server = start().await;
    let client = server.client();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "rec".into(),
            instance: Some("pod-1".into()),
        },
    );
    let api: Api<Widget> = Api::default_namespaced(client.clone());
    let w = create_small_widget(&api, "w").await;
    let ev = Event {
        type_: EventType::Warning,
        reason: "Flaky".into(),
        note: Some("again".into()),
        action: "Check".into(),
        secondary: None,
    };
    for _ in 0..3 {
        recorder.publish(&ev, &w.object_ref(&())).await.unwrap();
    }
    let events: Api<K8sEvent> = Api::default_namespaced(client);
    let list = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].series.as_ref().map(|s| s.count), Some(3));
    assert_eq!(list.items[0].type_.as_deref(), Some("Warning"));
    // The same store serves core v1 Events, with fields renamed.
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::default_namespaced(server.client());
    let by_object = core
        .list(&ListParams::default().fields("involvedObject.name=w,reason=Flaky"))
        .await
        .unwrap();
    assert_eq!(by_object.items.len(), 1);
    let e = &by_object.items[0];
    assert_eq!(e.message.as_deref(), Some("again"));
    assert_eq!(e.reporting_component.as_deref(), Some("rec"));
    assert_eq!(e.involved_object.name.as_deref(), Some("w"));
    assert_eq!(e.series.as_ref().and_then(|s| s.count), Some(3));
}

#[tokio::test]
async fn finalizer_helper_adds_then_cleans_up_before_deletion() {
    let server = start().await;
    let client = server.client();
    let api: Api<Widget> = Api::default_namespaced(client.clone());
    create_small_widget(&api, "f").await;
    let cleanups = AtomicUsize::new(0);
    let step = || async {
        let w = Arc::new(api.get("f").await.unwrap());
        finalizer(&api, "example.com/cleanup", w, |ev| {
            if let FinalizerEvent::Cleanup(_) = ev {
                cleanups.fetch_add(1, Ordering::SeqCst);
            }
            async { Ok::<_, ReconcileError>(Action::await_change()) }
        })
        .await
        .unwrap();
    };
    step().await;
    assert_eq!(
        api.get("f").await.unwrap().finalizers(),
        ["example.com/cleanup"]
    );
    assert!(
        api.delete("f", &DeleteParams::default())
            .await
            .unwrap()
            .is_left()
    );
    step().await;
    assert_eq!(cleanups.load(Ordering::SeqCst), 1);
    assert_eq!(status_of(api.get("f").await).code, 404);
}

/// One round of a minimal Lease-based election: true when `me` holds the lease afterwards.
async fn try_acquire(api: &Api<Lease>, me: &str, lease_seconds: i32) -> kube::Result<bool> {
    let now = jiff::Timestamp::now();
    let Some(mut lease) = api.get_opt("leader").await? else {
        let fresh: Lease = serde_json::from_value(json!({
            "metadata": {"name": "leader"},
            "spec": {"holderIdentity": me, "leaseDurationSeconds": lease_seconds, "leaseTransitions": 0,
                     "acquireTime": MicroTime(now), "renewTime": MicroTime(now)},
        }))
        .unwrap();
        return match api.create(&PostParams::default(), &fresh).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone();
    let expired = spec.renew_time.as_ref().is_none_or(|t| {
        t.0 + jiff::SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(0).into()) < now
    });
    if holder.as_deref() != Some(me) && !expired {
        return Ok(false);
    }
    if holder.as_deref() != Some(me) {
        spec.holder_identity = Some(me.to_string());
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.lease_duration_seconds = Some(lease_seconds);
    spec.renew_time = Some(MicroTime(now));
    match api.replace("leader", &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.is_conflict() => Ok(false),
        Err(e) => Err(e),
    }
}

#[tokio::test]
async fn lease_leader_election_has_one_winner_and_conflicts_on_stale_writes() {
    let server = start().await;
    let client = server.client();
    let a: Api<Lease> = Api::default_namespaced(client.clone());
    let b: Api<Lease> = Api::default_namespaced(server.client());
    // Concurrent first rounds: exactly one candidate wins.
    let (wa, wb) = tokio::join!(try_acquire(&a, "a", 3600), try_acquire(&b, "b", 3600));
    let (wa, wb) = (wa.unwrap(), wb.unwrap());
    assert!(wa ^ wb, "exactly one leader: a={wa} b={wb}");
    let (leader, follower, leader_api, follower_api) = if wa {
        ("a", "b", &a, &b)
    } else {
        ("b", "a", &b, &a)
    };
    for _ in 0..5 {
        let (l, f) = tokio::join!(
            try_acquire(leader_api, leader, 3600),
            try_acquire(follower_api, follower, 3600)
        );
        assert!(l.unwrap() && !f.unwrap());
    }
    // Two writers racing from the same read: the second replace is a 409.
    let seen = a.get("leader").await.unwrap();
    let mut first = seen.clone();
    first.spec.as_mut().unwrap().renew_time = Some(MicroTime(jiff::Timestamp::now()));
    a.replace("leader", &PostParams::default(), &first)
        .await
        .unwrap();
    let mut second = seen;
    second.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
    let err = status_of(b.replace("leader", &PostParams::default(), &second).await);
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    // An injected conflict makes one renewal fail; the next round succeeds.
    server
        .faults()
        .fail_next_writes_to("leases", 1, FailWith::Conflict);
    assert!(!try_acquire(leader_api, leader, 3600).await.unwrap());
    assert!(try_acquire(leader_api, leader, 3600).await.unwrap());
    // The leader stops renewing with a lease that has expired: the follower takes over.
    assert!(try_acquire(leader_api, leader, 0).await.unwrap());
    let taken = eventually("follower takes over", || async {
        try_acquire(follower_api, follower, 3600)
            .await
            .unwrap()
            .then_some(())
    });
    bounded("takeover", taken).await;
    let lease = a.get("leader").await.unwrap().spec.unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some(follower));
    assert_eq!(lease.lease_transitions, Some(1));
}
