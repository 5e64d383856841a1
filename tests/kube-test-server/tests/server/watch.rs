//! Watch semantics: raw watch events, bookmarks, 410 Expired, timeouts, and kube-runtime's watcher
//! and reflector resuming over dropped streams and relisting after compaction.

use crate::common;

use common::{bounded, eventually};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::{reflector, watcher};
use kube::{Client, ResourceExt};
use kube_test_server::{ServerOptions, TestServer};
use serde_json::json;
use std::time::Duration;
use tokio::sync::mpsc;

async fn start_with(bookmark_interval: Duration) -> TestServer {
    TestServer::start_with(ServerOptions {
        bookmark_interval,
        ..ServerOptions::default()
    })
    .await
    .unwrap()
}

fn secret(name: &str, app: &str) -> Secret {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": app}}})).unwrap()
}

/// Creates the Secret `name` labelled `app`; returns it as stored.
async fn create_secret(api: &Api<Secret>, name: &str, app: &str) -> Secret {
    api.create(&PostParams::default(), &secret(name, app))
        .await
        .unwrap()
}

/// Creates the Lease `name` in the default namespace: a write that only moves the global
/// resource version as far as Secret watchers are concerned.
async fn create_lease(client: Client, name: &str) {
    let lease: Lease =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {}})).unwrap();
    Api::<Lease>::default_namespaced(client)
        .create(&PostParams::default(), &lease)
        .await
        .unwrap();
}

/// A raw watch of the Secrets from resource version `rv`, with the default parameters.
async fn watch_from(
    api: &Api<Secret>,
    rv: &str,
) -> futures::stream::BoxStream<'static, kube::Result<WatchEvent<Secret>>> {
    api.watch(&WatchParams::default(), rv)
        .await
        .unwrap()
        .boxed()
}

/// Collects the `(type, name)` of raw watch events until `n` non-bookmark events arrived.
async fn next_events(
    stream: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<Secret>>> + Unpin),
    n: usize,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        let ev = bounded("watch event", stream.try_next())
            .await
            .unwrap()
            .expect("stream open");
        match ev {
            WatchEvent::Added(s) => out.push(("ADDED".into(), s.name_any())),
            WatchEvent::Modified(s) => out.push(("MODIFIED".into(), s.name_any())),
            WatchEvent::Deleted(s) => out.push(("DELETED".into(), s.name_any())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => out.push(("ERROR".into(), format!("{} {}", e.code, e.reason))),
        }
    }
    out
}

#[tokio::test]
async fn raw_watch_replays_from_resource_version_and_follows_selectors() {
    let server = start_with(Duration::from_secs(3600)).await;
    let api: Api<Secret> = Api::default_namespaced(server.client());
    let first = create_secret(&api, "a", "web").await;
    let from = first.resource_version().unwrap();
    create_secret(&api, "b", "db").await;
    let mut stream = watch_from(&api, &from).await;
    assert_eq!(
        next_events(&mut stream, 1).await,
        [("ADDED".to_string(), "b".to_string())]
    );
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}})),
    )
    .await
    .unwrap();
    api.delete("b", &DeleteParams::default()).await.unwrap();
    let got = next_events(&mut stream, 2).await;
    assert_eq!(
        got,
        [
            ("MODIFIED".into(), "a".into()),
            ("DELETED".into(), "b".into())
        ]
    );

    // With a selector, objects entering and leaving the selection appear as ADDED and DELETED.
    let selected = WatchParams::default().labels("app=web");
    let mut web = api.watch(&selected, "0").await.unwrap().boxed();
    assert_eq!(
        next_events(&mut web, 1).await,
        [("ADDED".to_string(), "a".to_string())]
    );
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}})),
    )
    .await
    .unwrap();
    create_secret(&api, "c", "db").await;
    api.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}})),
    )
    .await
    .unwrap();
    let got = next_events(&mut web, 2).await;
    assert_eq!(
        got,
        [("DELETED".into(), "a".into()), ("ADDED".into(), "c".into())]
    );
}

#[tokio::test]
async fn bookmarks_and_timeout_end_the_stream() {
    let server = start_with(Duration::from_millis(50)).await;
    let api: Api<Secret> = Api::default_namespaced(server.client());
    let rv = server.current_resource_version().to_string();
    let mut stream = api
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .unwrap()
        .boxed();
    let mut bookmarks = 0;
    // The server closes the stream after timeoutSeconds; every item before that is a bookmark.
    while let Some(ev) = bounded("watch end", stream.try_next()).await.unwrap() {
        match ev {
            WatchEvent::Bookmark(b) => {
                assert_eq!(b.metadata.resource_version, rv);
                bookmarks += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(bookmarks >= 1);
    let unmarked = api
        .watch(&WatchParams::default().timeout(1).disable_bookmarks(), &rv)
        .await
        .unwrap();
    assert_eq!(
        bounded("watch end", unmarked.collect::<Vec<_>>())
            .await
            .len(),
        0
    );
}

#[tokio::test]
async fn too_old_resource_version_is_410_expired() {
    let server = start_with(Duration::from_secs(3600)).await;
    let api: Api<Secret> = Api::default_namespaced(server.client());
    let old = create_secret(&api, "a", "web").await;
    create_secret(&api, "b", "web").await;
    server.compact_history();
    let mut stream = watch_from(&api, &old.resource_version().unwrap()).await;
    assert_eq!(
        next_events(&mut stream, 1).await,
        [("ERROR".to_string(), "410 Expired".to_string())]
    );
    // The current version is still fine.
    let now = server.current_resource_version().to_string();
    let mut ok = watch_from(&api, &now).await;
    create_secret(&api, "c", "web").await;
    assert_eq!(
        next_events(&mut ok, 1).await,
        [("ADDED".to_string(), "c".to_string())]
    );
}

#[tokio::test]
async fn history_limit_expires_old_versions() {
    let server = TestServer::start_with(ServerOptions {
        history_limit: 3,
        ..ServerOptions::default()
    })
    .await
    .unwrap();
    let api: Api<Secret> = Api::default_namespaced(server.client());
    let from = server.current_resource_version().to_string();
    for n in ["a", "b", "c", "d"] {
        create_secret(&api, n, "x").await;
    }
    let mut stream = watch_from(&api, &from).await;
    assert_eq!(next_events(&mut stream, 1).await[0].0, "ERROR");
}

/// Runs a watcher in a task, forwarding applied/deleted object names and errors.
fn spawn_watcher(
    client: Client,
    config: watcher::Config,
) -> (mpsc::UnboundedReceiver<String>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let api: Api<Secret> = Api::default_namespaced(client);
    let task = tokio::spawn(async move {
        let mut stream = watcher(api, config).boxed();
        while let Some(ev) = stream.next().await {
            let msg = match ev {
                Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => {
                    format!("apply {}", s.name_any())
                }
                Ok(watcher::Event::Delete(s)) => format!("delete {}", s.name_any()),
                Ok(watcher::Event::Init) => "init".into(),
                Ok(watcher::Event::InitDone) => "init-done".into(),
                Err(e) => format!("error {e}"),
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
    });
    (rx, task)
}

async fn expect(rx: &mut mpsc::UnboundedReceiver<String>, want: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let msg = bounded(want, rx.recv()).await.expect("watcher running");
        let done = msg == want;
        seen.push(msg);
        if done {
            return seen;
        }
    }
}

#[tokio::test]
async fn watcher_resumes_after_dropped_streams_without_relisting() {
    let server = start_with(Duration::from_secs(3600)).await;
    let client = server.client();
    let api: Api<Secret> = Api::default_namespaced(client.clone());
    create_secret(&api, "a", "x").await;
    let (mut rx, task) = spawn_watcher(client, watcher::Config::default());
    expect(&mut rx, "init-done").await;
    create_secret(&api, "b", "x").await;
    expect(&mut rx, "apply b").await;
    for round in 0..3 {
        let watches = server.counters().count("watch", "secrets");
        server.faults().drop_watches();
        eventually("re-watch", || async {
            (server.counters().count("watch", "secrets") > watches).then_some(())
        })
        .await;
        let name = format!("after-drop-{round}");
        create_secret(&api, &name, "x").await;
        let seen = expect(&mut rx, &format!("apply {name}")).await;
        assert!(
            !seen.iter().any(|m| m == "init"),
            "resumed without relist: {seen:?}"
        );
    }
    assert_eq!(
        server.counters().count("list", "secrets"),
        1,
        "no relist after clean drops"
    );
    task.abort();
}

#[tokio::test]
async fn watcher_relists_after_410_expired() {
    let server = start_with(Duration::from_secs(3600)).await;
    let client = server.client();
    let api: Api<Secret> = Api::default_namespaced(client.clone());
    create_secret(&api, "a", "x").await;
    let (mut rx, task) = spawn_watcher(client.clone(), watcher::Config::default());
    expect(&mut rx, "init-done").await;
    // Advance the global version past the watcher's without it noticing, then compact and drop.
    create_lease(client.clone(), "l").await;
    api.delete("a", &DeleteParams::default()).await.unwrap();
    expect(&mut rx, "delete a").await;
    create_lease(client, "m").await;
    server.compact_history();
    server.faults().drop_watches();
    let seen = expect(&mut rx, "init-done").await;
    assert!(
        seen.iter()
            .any(|m| m.starts_with("error") && (m.contains("410") || m.contains("Expired"))),
        "{seen:?}"
    );
    assert_eq!(
        server.counters().count("list", "secrets"),
        2,
        "relisted once"
    );
    create_secret(&api, "b", "x").await;
    expect(&mut rx, "apply b").await;
    task.abort();
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events_end_bookmark() {
    let server = start_with(Duration::from_secs(3600)).await;
    let client = server.client();
    let api: Api<Secret> = Api::default_namespaced(client.clone());
    create_secret(&api, "a", "x").await;
    let (mut rx, task) = spawn_watcher(client, watcher::Config::default().streaming_lists());
    let seen = expect(&mut rx, "init-done").await;
    assert_eq!(seen, ["init", "apply a", "init-done"]);
    assert_eq!(
        server.counters().count("list", "secrets"),
        0,
        "streaming lists do not LIST"
    );
    create_secret(&api, "b", "x").await;
    expect(&mut rx, "apply b").await;
    task.abort();
}

#[tokio::test]
async fn reflector_store_follows_the_server() {
    let server = start_with(Duration::from_millis(100)).await;
    let client = server.client();
    let api: Api<Secret> = Api::default_namespaced(client.clone());
    let (reader, writer) = reflector::store::<Secret>();
    let stream = reflector::reflector(
        writer,
        watcher(api.clone(), watcher::Config::default().page_size(2)),
    );
    let task = tokio::spawn(stream.for_each(|_| async {}));
    for n in ["a", "b", "c", "d", "e"] {
        create_secret(&api, n, "x").await;
    }
    bounded("store ready", reader.wait_until_ready())
        .await
        .unwrap();
    eventually("five cached", || async {
        (reader.state().len() == 5).then_some(())
    })
    .await;
    server.faults().drop_watches();
    api.delete("c", &DeleteParams::default()).await.unwrap();
    eventually("four cached", || async {
        (reader.state().len() == 4).then_some(())
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn metadata_only_get_list_and_metadata_watcher() {
    let server = start_with(Duration::from_secs(3600)).await;
    let client = server.client();
    let api: Api<Secret> = Api::default_namespaced(client.clone());
    create_secret(&api, "a", "web").await;
    let meta = api.get_metadata("a").await.unwrap();
    assert_eq!(
        meta.types.as_ref().map(|t| t.kind.as_str()),
        Some("PartialObjectMetadata")
    );
    assert_eq!(meta.labels()["app"], "web");
    let list = api
        .list_metadata(&kube::api::ListParams::default())
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    let meta_api: Api<kube::core::PartialObjectMeta<Secret>> = Api::default_namespaced(client);
    let mut stream = watcher(meta_api, watcher::Config::default()).boxed();
    let mut names = Vec::new();
    while names.len() < 2 {
        match bounded("metadata watch", stream.try_next())
            .await
            .unwrap()
            .expect("stream open")
        {
            watcher::Event::InitApply(m) | watcher::Event::Apply(m) => names.push(m.name_any()),
            watcher::Event::InitDone => {
                create_secret(&api, "b", "web").await;
            }
            _ => {}
        }
    }
    assert_eq!(names, ["a", "b"]);
}

#[tokio::test]
async fn last_finalizer_removal_is_modified_then_deleted() {
    let server = start_with(Duration::from_secs(3600)).await;
    let api: Api<Secret> = Api::default_namespaced(server.client());
    let mut s = secret("f", "x");
    s.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &s).await.unwrap();
    let from = server.current_resource_version().to_string();
    let mut stream = watch_from(&api, &from).await;
    api.delete("f", &DeleteParams::default()).await.unwrap();
    common::clear_finalizers(&api, "f").await;
    let got = next_events(&mut stream, 3).await;
    let kinds: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["MODIFIED", "MODIFIED", "DELETED"]);
}

#[tokio::test]
async fn shutdown_ends_open_watches_and_is_bounded_by_stalled_requests() {
    use tokio::io::AsyncWriteExt;
    let server = start_with(Duration::from_secs(3600)).await;
    let api: Api<Secret> = Api::default_namespaced(server.client());
    let now = server.current_resource_version().to_string();
    let mut open = watch_from(&api, &now).await;
    // A client that sends the head of a request and stalls in its body: the handler waits
    // for the body, so a graceful shutdown without a bound would wait for ever.
    let mut stalled = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    stalled
        .write_all(
            b"POST /api/v1/namespaces/default/secrets HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    // The stalled request is counted once it reached the handler.
    eventually("the stalled request reached the server", || async {
        (server.counters().count("create", "secrets") == 1).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    bounded("shutdown", server.shutdown()).await;
    let took = started.elapsed();
    assert!(
        took >= kube_test_server::SHUTDOWN_GRACE,
        "shutdown waited for the in-flight request for {took:?}"
    );
    // The open watch ended rather than living on until its 30 min maximum.
    let rest: Vec<_> = bounded("the open watch ends", open.by_ref().collect::<Vec<_>>()).await;
    assert!(
        rest.iter().all(|e| !matches!(e, Ok(WatchEvent::Added(_)))),
        "{rest:?}"
    );
}

#[tokio::test]
async fn watch_from_a_future_resource_version_reports_only_what_comes_after_it() {
    let server = start_with(Duration::from_secs(3600)).await;
    let api: Api<Secret> = Api::default_namespaced(server.client());
    let future = server.current_resource_version() + 2;
    let mut stream = watch_from(&api, &future.to_string()).await;
    // Each create moves the global resourceVersion by one: a and b are at or below `future`.
    for name in ["a", "b", "c"] {
        create_secret(&api, name, "web").await;
    }
    assert_eq!(server.current_resource_version(), future + 1);
    assert_eq!(
        next_events(&mut stream, 1).await,
        [("ADDED".to_string(), "c".to_string())]
    );
}

#[tokio::test]
async fn watch_with_an_unparsable_resource_version_is_400_before_streaming() {
    let server = start_with(Duration::from_secs(3600)).await;
    let api: Api<Secret> = Api::default_namespaced(server.client());
    let refused = api.watch(&WatchParams::default(), "not-a-number").await;
    let status = common::status_of(refused.map(|_| ()));
    assert_eq!((status.code, status.reason.as_str()), (400, "BadRequest"));
    assert!(
        status.message.contains("not-a-number"),
        "{}",
        status.message
    );
    assert_eq!(
        server.counters().watch_events_sent,
        0,
        "nothing was streamed"
    );
}

#[tokio::test]
async fn get_of_an_object_path_with_watch_true_is_a_plain_get() {
    let server = start_with(Duration::from_secs(3600)).await;
    let client = server.client();
    let api: Api<Secret> = Api::default_namespaced(client.clone());
    create_secret(&api, "a", "web").await;
    let req = http::Request::get("/api/v1/namespaces/default/secrets/a?watch=true")
        .body(Vec::new())
        .unwrap();
    // As kube-apiserver: the object itself, not a stream of watch events.
    let got: Secret = bounded("the GET answers", client.request(req))
        .await
        .unwrap();
    assert_eq!(got.name_any(), "a");
    let c = server.counters();
    assert_eq!(
        (c.count("get", "secrets"), c.count("watch", "secrets")),
        (1, 0)
    );
}
