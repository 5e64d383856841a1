//! Request/response conventions, exercised through `kube::Client` over HTTP.

use crate::common;

use common::{eventually, gadget_resource, start, status_of, widget, widget_resource};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::Discovery;
use kube::{Client, ResourceExt};
use kube_test_server::FailWith;
use serde_json::json;
use std::collections::BTreeMap;

fn secret(name: &str, labels: &[(&str, &str)]) -> Secret {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels.iter().cloned().collect::<BTreeMap<_, _>>()},
        "stringData": {"token": "s3cr3t"},
    }))
    .unwrap()
}

fn widgets(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &widget_resource())
}

#[tokio::test]
async fn discovery_and_version_describe_served_types() {
    let server = start().await;
    let client = server.client();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let (ar, caps) = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .find(|(ar, _)| ar.kind == "Widget")
        .expect("Widget discovered");
    assert_eq!(ar.plural, "widgets");
    assert!(
        caps.subresources
            .iter()
            .any(|(s, _)| s.plural == "widgets/status" || s.plural == "status")
    );
    for kind in ["Lease", "Secret", "Namespace", "Gadget"] {
        assert!(
            discovery
                .groups()
                .flat_map(|g| g.recommended_resources())
                .any(|(ar, _)| ar.kind == kind),
            "{kind}"
        );
    }
    assert!(
        server
            .unenforced_cel_rules()
            .iter()
            .any(|(kind, path, _)| kind == "example.com/v1/Widget" && path == "spec")
    );
}

#[tokio::test]
async fn create_get_and_metadata_like_the_real_server() {
    let server = start().await;
    let api: Api<Secret> = Api::default_namespaced(server.client());
    let created = api
        .create(&PostParams::default(), &secret("s1", &[]))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.as_ref().is_some_and(|u| u.len() == 36));
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, None, "built-ins do not track generation");
    let rv1: u64 = meta.resource_version.as_ref().unwrap().parse().unwrap();
    // stringData folds into base64 data; type defaults to Opaque.
    assert_eq!(created.data.as_ref().unwrap()["token"].0, b"s3cr3t");
    assert!(created.string_data.is_none());
    assert_eq!(created.type_.as_deref(), Some("Opaque"));
    assert_eq!(api.get("s1").await.unwrap().metadata.uid, meta.uid);

    let dup = status_of(api.create(&PostParams::default(), &secret("s1", &[])).await);
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    let missing = status_of(api.get("nope").await);
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "secrets \"nope\" not found");

    let mut generated = secret("", &[]);
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let g = api
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    assert!(g.name_any().starts_with("gen-") && g.name_any().len() == 9);
    let rv2: u64 = g.metadata.resource_version.unwrap().parse().unwrap();
    assert!(rv2 > rv1, "resourceVersion grows globally");

    let elsewhere: Api<Secret> = Api::namespaced(server.client(), "no-such-ns");
    let e = status_of(
        elsewhere
            .create(&PostParams::default(), &secret("s", &[]))
            .await,
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "namespaces \"no-such-ns\" not found")
    );
    let bad_name = status_of(
        api.create(&PostParams::default(), &secret("Bad_Name", &[]))
            .await,
    );
    assert_eq!((bad_name.code, bad_name.reason.as_str()), (422, "Invalid"));
    let c = server.counters();
    assert_eq!(c.count("create", "secrets"), 5);
    assert_eq!(c.count("get", "secrets"), 2);
}

#[tokio::test]
async fn list_selectors_pagination_and_resource_versions() {
    let server = start().await;
    let client = server.client();
    let api: Api<Secret> = Api::default_namespaced(client.clone());
    for (name, tier) in [
        ("a", "web"),
        ("b", "db"),
        ("c", "web"),
        ("d", "cache"),
        ("e", "web"),
    ] {
        api.create(
            &PostParams::default(),
            &secret(name, &[("tier", tier), ("app", "shop")]),
        )
        .await
        .unwrap();
    }
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "other"}})).unwrap(),
        )
        .await
        .unwrap();
    Api::<Secret>::namespaced(client.clone(), "other")
        .create(&PostParams::default(), &secret("a", &[("tier", "web")]))
        .await
        .unwrap();

    let names = |l: kube::core::ObjectList<Secret>| {
        l.items.iter().map(|s| s.name_any()).collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier=web"))
                .await
                .unwrap()
        ),
        ["a", "c", "e"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier in (db,cache),app"))
                .await
                .unwrap()
        ),
        ["b", "d"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier notin (web),!missing"))
                .await
                .unwrap()
        ),
        ["b", "d"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=c"))
                .await
                .unwrap()
        ),
        ["c"]
    );
    let all: Api<Secret> = Api::all(client.clone());
    let everywhere = all
        .list(&ListParams::default().fields("metadata.name=a"))
        .await
        .unwrap();
    assert_eq!(everywhere.items.len(), 2);
    let only_other = all
        .list(&ListParams::default().fields("metadata.namespace=other"))
        .await
        .unwrap();
    assert_eq!(names(only_other), ["a"]);
    let bad = status_of(api.list(&ListParams::default().fields("spec.nope=1")).await);
    assert_eq!((bad.code, bad.reason.as_str()), (400, "BadRequest"));

    // Pages come from one snapshot: a write between pages does not show up.
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(names(first.clone()), ["a", "b"]);
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    let token = first.metadata.continue_.clone().unwrap();
    api.create(&PostParams::default(), &secret("aa", &[]))
        .await
        .unwrap();
    let second = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(second.clone()), ["c", "d"]);
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
    let last = api
        .list(
            &ListParams::default()
                .limit(2)
                .continue_token(second.metadata.continue_.as_ref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(names(last.clone()), ["e"]);
    assert!(last.metadata.continue_.as_deref().is_none_or(str::is_empty));

    server.compact_history();
    let expired = status_of(
        api.list(&ListParams::default().limit(2).continue_token(&token))
            .await,
    );
    assert_eq!((expired.code, expired.reason.as_str()), (410, "Expired"));

    // kube retries 504 by default; this check wants the first answer.
    let mut config = server.kube_config();
    config.default_retry = false;
    let no_retry: Api<Secret> = Api::default_namespaced(Client::try_from(config).unwrap());
    let current = server.current_resource_version();
    let future = status_of(
        no_retry
            .list(&ListParams::default().at(&(current + 100).to_string()))
            .await,
    );
    assert_eq!(future.code, 504);
    let exact_old = ListParams::default()
        .at("2")
        .matching(kube::api::VersionMatch::Exact);
    assert_eq!(status_of(api.list(&exact_old).await).code, 410);
    let any = api.list(&ListParams::default().match_any()).await.unwrap();
    assert_eq!(any.items.len(), 6);
}

#[tokio::test]
async fn replace_with_stale_resource_version_conflicts() {
    let server = start().await;
    let api: Api<Lease> = Api::default_namespaced(server.client());
    let lease: Lease =
        serde_json::from_value(json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "a"}}))
            .unwrap();
    let v1 = api.create(&PostParams::default(), &lease).await.unwrap();
    let mut v2 = v1.clone();
    v2.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let v2 = api.replace("l", &PostParams::default(), &v2).await.unwrap();
    assert_ne!(v2.metadata.resource_version, v1.metadata.resource_version);
    let mut stale = v1.clone();
    stale.spec.as_mut().unwrap().holder_identity = Some("c".into());
    let err = status_of(api.replace("l", &PostParams::default(), &stale).await);
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(
        err.message.contains("the object has been modified"),
        "{}",
        err.message
    );
    // Without a resourceVersion the update is unconditional.
    stale.metadata.resource_version = None;
    let forced = api
        .replace("l", &PostParams::default(), &stale)
        .await
        .unwrap();
    assert_eq!(forced.spec.unwrap().holder_identity.as_deref(), Some("c"));
    // A no-op write does not bump the resourceVersion, neither the object's nor the server's.
    let before = forced_clone(&api).await;
    let server_rv = server.current_resource_version();
    let again = api
        .replace("l", &PostParams::default(), &before)
        .await
        .unwrap();
    assert!(before.metadata.resource_version.is_some());
    assert_eq!(
        again.metadata.resource_version,
        before.metadata.resource_version
    );
    assert_eq!(server.current_resource_version(), server_rv);
    let missing = status_of(
        api.replace("nope", &PostParams::default(), &lease_named("nope"))
            .await,
    );
    assert_eq!(missing.code, 404);
}

async fn forced_clone(api: &Api<Lease>) -> Lease {
    api.get("l").await.unwrap()
}

fn lease_named(name: &str) -> Lease {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": {}})).unwrap()
}

#[tokio::test]
async fn merge_json_and_strategic_patches() {
    let server = start().await;
    let client = server.client();
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    secrets
        .create(&PostParams::default(), &secret("p", &[("a", "1")]))
        .await
        .unwrap();
    let pp = PatchParams::default();
    let merged = secrets
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"a": null, "b": "2"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        merged.labels(),
        &BTreeMap::from([("b".to_string(), "2".to_string())])
    );
    let strategic = secrets
        .patch(
            "p",
            &pp,
            &Patch::Strategic(json!({"metadata": {"annotations": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(strategic.annotations()["x"], "y");
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/labels/b", "value": "2"},
        {"op": "add", "path": "/metadata/labels/c", "value": "3"}
    ]))
    .unwrap();
    let jp = secrets
        .patch("p", &pp, &Patch::Json::<()>(ops))
        .await
        .unwrap();
    assert_eq!(jp.labels()["c"], "3");
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/metadata/labels/b", "value": "9"}]))
            .unwrap();
    let err = status_of(secrets.patch("p", &pp, &Patch::Json::<()>(failing)).await);
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    // A patch carrying a stale resourceVersion is a precondition and conflicts.
    let stale = secrets
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"metadata": {"resourceVersion": "1", "labels": {"d": "4"}}})),
        )
        .await;
    assert_eq!(status_of(stale).code, 409);
    assert_eq!(
        status_of(secrets.patch("none", &pp, &Patch::Merge(json!({}))).await).code,
        404
    );

    let api = widgets(&client, "default");
    api.create(
        &PostParams::default(),
        &widget("w", json!({"size": "Small"})),
    )
    .await
    .unwrap();
    let smp = status_of(
        api.patch(
            "w",
            &pp,
            &Patch::Strategic(json!({"spec": {"size": "Large"}})),
        )
        .await,
    );
    assert_eq!(
        (smp.code, smp.reason.as_str()),
        (415, "UnsupportedMediaType")
    );
    let w = api
        .patch("w", &pp, &Patch::Merge(json!({"spec": {"size": "Large"}})))
        .await
        .unwrap();
    assert_eq!(w.data["spec"]["size"], "Large");
}

#[tokio::test]
async fn validation_defaults_and_pruning_of_custom_objects() {
    let server = start().await;
    let api = widgets(&server.client(), "default");
    let w = api
        .create(
            &PostParams::default(),
            &widget(
                "ok",
                json!({"size": "Small", "unknown": 1, "settings": {"paused": true}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(w.data["spec"]["minReplicas"], 1);
    assert_eq!(w.data["spec"]["maxReplicas"], 3);
    assert_eq!(
        w.data["spec"]["settings"],
        json!({"interval": "5m", "paused": true})
    );
    assert!(
        w.data["spec"].get("unknown").is_none(),
        "unknown fields are pruned"
    );
    assert_eq!(w.metadata.generation, Some(1));

    let bad = widget(
        "bad",
        json!({"size": "Huge", "owner": "Not Valid", "minReplicas": -1, "maxReplicas": 11, "tags": ["a", "a"]}),
    );
    let err = status_of(api.create(&PostParams::default(), &bad).await);
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert!(
        err.message
            .starts_with("Widget.example.com \"bad\" is invalid: ["),
        "{}",
        err.message
    );
    let causes: Vec<(String, String)> = err
        .details
        .unwrap()
        .causes
        .into_iter()
        .map(|c| (c.reason, c.field))
        .collect();
    for (reason, field) in [
        ("FieldValueNotSupported", "spec.size"),
        ("FieldValueInvalid", "spec.owner"),
        ("FieldValueInvalid", "spec.minReplicas"),
        ("FieldValueInvalid", "spec.maxReplicas"),
        ("FieldValueDuplicate", "spec.tags[1]"),
    ] {
        assert!(
            causes.contains(&(reason.to_string(), field.to_string())),
            "{reason} {field} in {causes:?}"
        );
    }
    let missing = status_of(
        api.create(&PostParams::default(), &widget("m", json!({})))
            .await,
    );
    let cause = &missing.details.unwrap().causes[0];
    assert_eq!(
        (cause.reason.as_str(), cause.field.as_str()),
        ("FieldValueRequired", "spec.size")
    );
    assert_eq!(
        missing.message,
        "Widget.example.com \"m\" is invalid: spec.size: Required value"
    );
    let wrong_type = status_of(
        api.patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"minReplicas": "two"}})),
        )
        .await,
    );
    assert_eq!(
        wrong_type.details.unwrap().causes[0].reason,
        "FieldValueTypeInvalid"
    );
    // `self == oldSelf` is enforced on updates.
    api.patch(
        "ok",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"region": "eu"}})),
    )
    .await
    .unwrap();
    let moved = status_of(
        api.patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"region": "us"}})),
        )
        .await,
    );
    assert_eq!(moved.code, 422);
    assert!(
        moved
            .message
            .contains("spec.region: Invalid value: \"string\": region is immutable"),
        "{}",
        moved.message
    );
    // Other CEL rules are not enforced: this violates one but is accepted (documented gap).
    let cel = widget(
        "cel",
        json!({"size": "Small", "minReplicas": 5, "maxReplicas": 2}),
    );
    assert!(api.create(&PostParams::default(), &cel).await.is_ok());
    assert!(server.counters().objects >= 5);
}

#[tokio::test]
async fn status_subresource_rules_and_generation() {
    let server = start().await;
    let client = server.client();
    let api = widgets(&client, "default");
    let mut w = widget("s", json!({"size": "Small"}));
    w.data["status"] = json!({"phase": "Ignored"});
    let created = api.create(&PostParams::default(), &w).await.unwrap();
    assert!(
        created.data.get("status").is_none(),
        "status is dropped on create"
    );

    // The main endpoint ignores status; a spec change bumps generation.
    let pp = PatchParams::default();
    let p = api
        .patch(
            "s",
            &pp,
            &Patch::Merge(json!({"spec": {"size": "Large"}, "status": {"phase": "X"}})),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.generation, Some(2));
    assert!(p.data.get("status").is_none());
    // Metadata-only changes do not bump generation.
    let l = api
        .patch(
            "s",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"k": "v"}}})),
        )
        .await
        .unwrap();
    assert_eq!(l.metadata.generation, Some(2));

    // /status changes only status and does not bump generation.
    let s = api
        .patch_status("s", &pp, &Patch::Merge(json!({"spec": {"size": "Small"}, "status": {"phase": "Ready", "observedGeneration": 2}})))
        .await
        .unwrap();
    assert_eq!(s.data["status"]["phase"], "Ready");
    assert_eq!(s.data["spec"]["size"], "Large");
    assert_eq!(s.metadata.generation, Some(2));
    let mut replaced = api.get_status("s").await.unwrap();
    replaced.data["status"]["phase"] = json!("Degraded");
    replaced.data["spec"]["size"] = json!("Small");
    let r = api
        .replace_status("s", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(
        (
            r.data["status"]["phase"].as_str(),
            r.data["spec"]["size"].as_str()
        ),
        (Some("Degraded"), Some("Large"))
    );
    let stale = status_of(
        api.replace_status("s", &PostParams::default(), &replaced)
            .await,
    );
    assert_eq!(stale.code, 409);
    // Custom resources refuse unconditional updates.
    let mut unconditional = api.get("s").await.unwrap();
    unconditional.metadata.resource_version = None;
    let err = status_of(
        api.replace("s", &PostParams::default(), &unconditional)
            .await,
    );
    assert_eq!(err.code, 422);
    assert_eq!(
        err.details.unwrap().causes[0].field,
        "metadata.resourceVersion"
    );
    let bad_status = status_of(
        api.patch_status(
            "s",
            &pp,
            &Patch::Merge(
                json!({"status": {"conditions": [{"type": "Ready", "status": "Maybe"}]}}),
            ),
        )
        .await,
    );
    assert_eq!(bad_status.code, 422);

    // Without a status subresource, status is ordinary content and bumps generation.
    let gadgets: Api<DynamicObject> = Api::all_with(client.clone(), &gadget_resource());
    let g: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": {"a": 1}, "status": {"b": 2}})).unwrap();
    let g = gadgets.create(&PostParams::default(), &g).await.unwrap();
    assert_eq!(g.data["status"]["b"], 2);
    let g2 = gadgets
        .patch("g", &pp, &Patch::Merge(json!({"status": {"b": 3}})))
        .await
        .unwrap();
    assert_eq!(g2.metadata.generation, Some(2));
    assert_eq!(status_of(gadgets.get_status("g").await).code, 404);
}

#[tokio::test]
async fn server_side_apply_ownership_conflicts_and_force() {
    let server = start().await;
    let api = widgets(&server.client(), "default");
    let alice = PatchParams::apply("alice");
    let applied = api
        .patch(
            "ssa",
            &alice,
            &Patch::Apply(widget("ssa", json!({"size": "Small", "owner": "alice"}))),
        )
        .await
        .unwrap();
    assert_eq!(applied.metadata.generation, Some(1));
    let mf = applied.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(
        (mf[0].manager.as_deref(), mf[0].operation.as_deref()),
        (Some("alice"), Some("Apply"))
    );
    assert!(mf[0].fields_v1.as_ref().unwrap().0["f:spec"]["f:owner"].is_object());

    // Bob applying a different value for alice's field conflicts.
    let bob = PatchParams::apply("bob");
    let err = status_of(
        api.patch(
            "ssa",
            &bob,
            &Patch::Apply(widget("ssa", json!({"size": "Small", "owner": "bob"}))),
        )
        .await,
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(
        err.message
            .starts_with("Apply failed with 1 conflict: conflict with \"alice\""),
        "{}",
        err.message
    );
    let cause = &err.details.unwrap().causes[0];
    assert_eq!(
        (cause.reason.as_str(), cause.field.as_str()),
        ("FieldManagerConflict", ".spec.owner")
    );
    // Same value: shared ownership, no conflict.
    api.patch(
        "ssa",
        &bob,
        &Patch::Apply(widget("ssa", json!({"size": "Small"}))),
    )
    .await
    .unwrap();
    // Force takes ownership.
    let forced = api
        .patch(
            "ssa",
            &bob.clone().force(),
            &Patch::Apply(widget("ssa", json!({"size": "Small", "owner": "bob"}))),
        )
        .await
        .unwrap();
    assert_eq!(forced.data["spec"]["owner"], "bob");
    // Alice stops applying owner (now bob's) and tags: owner stays, alice-only fields go.
    api.patch(
        "ssa",
        &alice,
        &Patch::Apply(widget("ssa", json!({"size": "Small", "tags": ["x"]}))),
    )
    .await
    .unwrap();
    let dropped = api
        .patch(
            "ssa",
            &alice,
            &Patch::Apply(widget("ssa", json!({"size": "Small"}))),
        )
        .await
        .unwrap();
    assert_eq!(dropped.data["spec"]["owner"], "bob");
    assert!(dropped.data["spec"].get("tags").is_none());
    // An Update manager owning a field also conflicts with apply.
    api.patch(
        "ssa",
        &PatchParams {
            field_manager: Some("editor".into()),
            ..Default::default()
        },
        &Patch::Merge(json!({"spec": {"size": "Large"}})),
    )
    .await
    .unwrap();
    let err = status_of(
        api.patch(
            "ssa",
            &alice,
            &Patch::Apply(widget("ssa", json!({"size": "Small"}))),
        )
        .await,
    );
    assert!(err.message.contains("\"editor\""), "{}", err.message);
    let missing_manager = status_of(
        api.patch(
            "ssa",
            &PatchParams::default(),
            &Patch::Apply(widget("ssa", json!({"size": "Small"}))),
        )
        .await,
    );
    assert_eq!(missing_manager.code, 400);

    // Status apply through /status changes only status, with its own managed entry.
    let mut st = widget("ssa", json!({"size": "Small"}));
    st.data["status"] = json!({"phase": "Ready"});
    let s = api
        .patch_status(
            "ssa",
            &PatchParams::apply("ctrl").force(),
            &Patch::Apply(&st),
        )
        .await
        .unwrap();
    assert_eq!(s.data["status"]["phase"], "Ready");
    assert_eq!(s.data["spec"]["size"], "Large");
    let entry = s
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .find(|e| e.manager.as_deref() == Some("ctrl"))
        .unwrap();
    assert_eq!(entry.subresource.as_deref(), Some("status"));
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let server = start().await;
    let api = widgets(&server.client(), "default");
    let mut w = widget("f", json!({"size": "Small"}));
    w.metadata.finalizers = Some(vec!["example.com/cleanup".into()]);
    let created = api.create(&PostParams::default(), &w).await.unwrap();
    let deleting = api.delete("f", &DeleteParams::background()).await.unwrap();
    let deleting = deleting
        .left()
        .expect("object kept while finalizers remain");
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert_eq!(
        deleting.metadata.generation,
        Some(2),
        "deletion bumps generation"
    );
    assert!(api.get("f").await.is_ok());
    // A second delete is idempotent; new finalizers are refused while deleting.
    assert!(
        api.delete("f", &DeleteParams::default())
            .await
            .unwrap()
            .is_left()
    );
    let add = status_of(
        api.patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/cleanup", "other"]}})),
        )
        .await,
    );
    assert_eq!(add.code, 422);
    common::clear_finalizers(&api, "f").await;
    assert_eq!(status_of(api.get("f").await).code, 404);

    // Preconditions.
    let plain = api
        .create(
            &PostParams::default(),
            &widget("p", json!({"size": "Small"})),
        )
        .await
        .unwrap();
    let wrong = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: created.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    assert_eq!(status_of(api.delete("p", &wrong).await).code, 409);
    let right = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: plain.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    let gone = api
        .delete("p", &right)
        .await
        .unwrap()
        .right()
        .expect("immediate deletion answers Status");
    assert_eq!(gone.details.unwrap().name, "p");
}

#[tokio::test]
async fn namespace_deletion_cascades_and_waits_for_finalizers() {
    let server = start().await;
    let client = server.client();
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "tmp"}})).unwrap(),
    )
    .await
    .unwrap();
    let api = widgets(&client, "tmp");
    let mut held = widget("held", json!({"size": "Small"}));
    held.metadata.finalizers = Some(vec!["x/y".into()]);
    api.create(&PostParams::default(), &held).await.unwrap();
    Api::<Secret>::namespaced(client.clone(), "tmp")
        .create(&PostParams::default(), &secret("s", &[]))
        .await
        .unwrap();
    nss.delete("tmp", &DeleteParams::default()).await.unwrap();
    let ns = nss.get("tmp").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    assert_eq!(
        status_of(
            Api::<Secret>::namespaced(client.clone(), "tmp")
                .get("s")
                .await
        )
        .code,
        404
    );
    assert!(
        api.get("held")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    let refused = status_of(
        Api::<Secret>::namespaced(client.clone(), "tmp")
            .create(&PostParams::default(), &secret("late", &[]))
            .await,
    );
    assert_eq!((refused.code, refused.reason.as_str()), (403, "Forbidden"));
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": []}})),
    )
    .await
    .unwrap();
    eventually("namespace gone", || async {
        nss.get_opt("tmp").await.unwrap().is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn injected_faults_and_counters() {
    let server = start().await;
    let api: Api<Secret> = Api::default_namespaced(server.client());
    server.faults().fail_next_writes(1, FailWith::InternalError);
    let err = status_of(api.create(&PostParams::default(), &secret("x", &[])).await);
    assert_eq!((err.code, err.reason.as_str()), (500, "InternalError"));
    server
        .faults()
        .fail_next_writes_to("secrets", 2, FailWith::Conflict);
    assert_eq!(
        status_of(api.create(&PostParams::default(), &secret("x", &[])).await).code,
        409
    );
    assert!(
        api.get_opt("x").await.unwrap().is_none(),
        "reads are never failed and failed writes store nothing"
    );
    assert_eq!(
        status_of(api.create(&PostParams::default(), &secret("x", &[])).await).code,
        409
    );
    api.create(&PostParams::default(), &secret("x", &[]))
        .await
        .unwrap();
    // A lower bound: the response must not arrive before the injected delay has passed.
    let delay = std::time::Duration::from_millis(200);
    server.faults().set_delay(delay);
    let sent = std::time::Instant::now();
    assert!(api.get("x").await.is_ok());
    let held = sent.elapsed();
    assert!(held >= delay, "answered after {held:?}, delay {delay:?}");
    server.faults().clear();
    let c = server.counters();
    assert_eq!(c.injected_failures, 3);
    assert_eq!(c.writes("secrets"), 4);
}

#[tokio::test]
async fn kubeconfig_file_reaches_the_server() {
    let server = start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path).unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    assert_eq!(config.default_namespace, "default");
    let client = Client::try_from(config).unwrap();
    let nss = Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap();
    let names: Vec<String> = nss.items.iter().map(|n| n.name_any()).collect();
    assert_eq!(names, ["default", "kube-public", "kube-system"]);
    server.shutdown().await;
}

#[tokio::test]
async fn requests_are_counted_per_kubeconfig_user() {
    let server = start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig_as(&path, "operator").unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let operator: Api<Lease> = Api::default_namespaced(Client::try_from(config).unwrap());
    operator
        .create(&PostParams::default(), &lease_named("l"))
        .await
        .unwrap();
    operator.get("l").await.unwrap();
    let widgets =
        Api::<DynamicObject>::namespaced_with(server.client(), "default", &widget_resource());
    widgets
        .create(
            &PostParams::default(),
            &widget("w", json!({"size": "Small"})),
        )
        .await
        .unwrap();
    widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "x"}})),
        )
        .await
        .unwrap();
    let c = server.counters();
    let lease = |verb: &str| {
        (
            "coordination.k8s.io".to_string(),
            "leases".to_string(),
            verb.to_string(),
        )
    };
    assert_eq!(
        c.accesses_of("operator"),
        BTreeMap::from([(lease("create"), 1), (lease("get"), 1)])
    );
    let test_client = c.accesses_of("");
    assert_eq!(
        test_client.get(&(
            "example.com".to_string(),
            "widgets/status".to_string(),
            "patch".to_string()
        )),
        Some(&1)
    );
    assert!(!test_client.keys().any(|(g, ..)| g == "coordination.k8s.io"));
    server.shutdown().await;
}

#[tokio::test]
async fn owner_references_are_garbage_collected_unless_orphaned() {
    let server = start().await;
    let client = server.client();
    let api = widgets(&client, "default");
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    for owner in ["o1", "o2"] {
        let w = api
            .create(
                &PostParams::default(),
                &widget(owner, json!({"size": "Small"})),
            )
            .await
            .unwrap();
        let mut s = secret(&format!("{owner}-secret"), &[]);
        s.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "example.com/v1".into(),
                kind: "Widget".into(),
                name: owner.into(),
                uid: w.metadata.uid.unwrap(),
                ..Default::default()
            },
        ]);
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    api.delete("o1", &DeleteParams::background()).await.unwrap();
    assert!(
        secrets.get_opt("o1-secret").await.unwrap().is_none(),
        "dependent collected"
    );
    api.delete("o2", &DeleteParams::orphan()).await.unwrap();
    let kept = secrets.get("o2-secret").await.unwrap();
    assert!(
        kept.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty(),
        "orphaned dependents lose the reference"
    );
}

#[tokio::test]
async fn metadata_labels_and_namespace_names_are_validated() {
    let server = start().await;
    let client = server.client();
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let err = status_of(
        secrets
            .create(&PostParams::default(), &secret("l", &[("bad key!", "v")]))
            .await,
    );
    assert_eq!(
        (err.code, err.details.unwrap().causes[0].field.as_str()),
        (422, "metadata.labels")
    );
    let err = status_of(
        secrets
            .create(
                &PostParams::default(),
                &secret("l", &[("example.com/k", "-bad")]),
            )
            .await,
    );
    assert_eq!(err.code, 422);
    secrets
        .create(
            &PostParams::default(),
            &secret("l", &[("example.com/k", ""), ("k", "v.1")]),
        )
        .await
        .unwrap();
    let nss: Api<Namespace> = Api::all(client);
    let dotted: Namespace = serde_json::from_value(json!({"metadata": {"name": "a.b"}})).unwrap();
    assert_eq!(
        status_of(nss.create(&PostParams::default(), &dotted).await).code,
        422
    );
}

#[tokio::test]
async fn delete_collection_and_dry_run() {
    let server = start().await;
    let api: Api<Secret> = Api::default_namespaced(server.client());
    for (n, tier) in [("a", "web"), ("b", "web"), ("c", "db")] {
        api.create(&PostParams::default(), &secret(n, &[("tier", tier)]))
            .await
            .unwrap();
    }
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let would = api.create(&dry, &secret("d", &[])).await.unwrap();
    assert!(would.metadata.uid.is_some());
    assert!(
        api.get_opt("d").await.unwrap().is_none(),
        "dry run stores nothing"
    );
    let deleted = api
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("tier=web"),
        )
        .await
        .unwrap();
    let deleted = deleted.left().expect("a list of deleted objects");
    assert_eq!(deleted.items.len(), 2);
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| s.name_any())
        .collect();
    assert_eq!(left, ["c"]);
}

#[tokio::test]
async fn status_apply_merges_list_map_items_per_manager() {
    let server = start().await;
    let api = widgets(&server.client(), "default");
    api.create(
        &PostParams::default(),
        &widget("c", json!({"size": "Small"})),
    )
    .await
    .unwrap();
    let status = |conds: serde_json::Value| {
        let mut w = widget("c", json!({"size": "Small"}));
        w.data["status"] = json!({"conditions": conds});
        w
    };
    let ready = json!({"type": "Ready", "status": "True"});
    let synced = json!({"type": "Synced", "status": "False"});
    api.patch_status(
        "c",
        &PatchParams::apply("a"),
        &Patch::Apply(status(json!([ready]))),
    )
    .await
    .unwrap();
    let both = api
        .patch_status(
            "c",
            &PatchParams::apply("b"),
            &Patch::Apply(status(json!([synced]))),
        )
        .await
        .unwrap();
    assert_eq!(both.data["status"]["conditions"], json!([ready, synced]));
    let clash = status_of(
        api.patch_status(
            "c",
            &PatchParams::apply("b"),
            &Patch::Apply(status(json!([{"type": "Ready", "status": "False"}]))),
        )
        .await,
    );
    assert_eq!(clash.code, 409);
    let dup = status_of(
        api.patch_status(
            "c",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [ready, ready]}})),
        )
        .await,
    );
    assert_eq!(dup.details.unwrap().causes[0].reason, "FieldValueDuplicate");
    let only_b = api
        .patch_status(
            "c",
            &PatchParams::apply("a"),
            &Patch::Apply(status(json!([]))),
        )
        .await
        .unwrap();
    assert_eq!(only_b.data["status"]["conditions"], json!([synced]));
}
