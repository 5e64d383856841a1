//! `okta-ciam-operator access ...` (the `kubectl okta` plugin) against the Kubernetes API test
//! server: each person's kubeconfig sends their own token, and the server's SelfSubjectReview
//! says who that is, so the objects carry the identities admission will check.

use crate::support;

use clap::Parser;
use kube::Api;
use kube_test_server::{TestServer, UserInfo};
use okta_ciam_operator::cli::{Cli, Command};
use okta_ciam_operator::controller::access::cli::{Error, run_with};
use okta_ciam_operator::crd::{AccessApproval, AccessRequest, Decision};

const NS: &str = "identity";

struct Person {
    client: kube::Client,
    _dir: tempfile::TempDir,
}

/// A kubeconfig (default namespace `default`) sending `token`, authenticated as `user`.
async fn person(server: &TestServer, token: &str, user: Option<(&str, &[&str])>) -> Person {
    if let Some((username, groups)) = user {
        server.authorizer().authenticate(
            token,
            UserInfo {
                username: username.into(),
                groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            },
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig_as(&path, token).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&path).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    Person {
        client: kube::Client::try_from(config).unwrap(),
        _dir: dir,
    }
}

/// Runs `kubectl okta <args>` as `who`.
async fn kubectl_okta(who: &Person, args: &[&str]) -> Result<String, Error> {
    let argv = ["kubectl-okta"]
        .iter()
        .chain(args)
        .map(Into::into)
        .collect();
    let argv = okta_ciam_operator::controller::access::cli::plugin_args(argv);
    let Command::Access(access) = Cli::try_parse_from(argv).unwrap().command else {
        panic!("not the access subcommand")
    };
    run_with(who.client.clone(), access).await
}

#[tokio::test]
async fn people_request_approve_deny_and_list_as_themselves() {
    let server = support::start_test_server().await;
    support::create_namespace(&server.client(), NS).await;
    let alice = person(
        &server,
        "alice-token",
        Some(("alice@example.com", &["engineers", "system:authenticated"])),
    )
    .await;
    let bob = person(
        &server,
        "bob-token",
        Some(("bob@example.com", &["oncall-leads"])),
    )
    .await;

    let out = kubectl_okta(
        &alice,
        &[
            "request",
            "oncall",
            "--group",
            "Eng On-Call",
            "--duration",
            "2h",
            "--reason",
            "INC-7",
            "-n",
            NS,
        ],
    )
    .await
    .unwrap();
    let requests: Api<AccessRequest> = Api::namespaced(server.client(), NS);
    let all = requests.list(&Default::default()).await.unwrap().items;
    assert_eq!(all.len(), 1);
    let req = &all[0];
    let name = req.metadata.name.clone().unwrap();
    assert!(name.starts_with("alice-"), "{name}");
    assert!(
        out.contains(&format!("accessrequest/{name} created")),
        "{out}"
    );
    assert_eq!(req.spec.requester.username, "alice@example.com");
    assert_eq!(req.spec.requester.groups, ["engineers"]);
    assert_eq!(req.spec.group, "Eng On-Call");
    assert_eq!(req.spec.duration.as_deref(), Some("2h"));
    assert_eq!(req.spec.reason.as_deref(), Some("INC-7"));
    assert_eq!(req.spec.user, None);

    kubectl_okta(&bob, &["approve", &name, "--reason", "on call", "-n", NS])
        .await
        .unwrap();
    kubectl_okta(&bob, &["deny", &name, "-n", NS])
        .await
        .unwrap();
    let approvals: Api<AccessApproval> = Api::namespaced(server.client(), NS);
    let mut decisions: Vec<(Decision, String, String, String)> = approvals
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|a| {
            (
                a.spec.decision,
                a.spec.approver.username,
                a.spec.request.uid,
                a.spec.policy,
            )
        })
        .collect();
    decisions.sort_by_key(|d| format!("{:?}", d.0));
    let uid = req.metadata.uid.clone().unwrap();
    assert_eq!(
        decisions,
        [
            (
                Decision::Approve,
                "bob@example.com".into(),
                uid.clone(),
                "oncall".into()
            ),
            (
                Decision::Deny,
                "bob@example.com".into(),
                uid,
                "oncall".into()
            ),
        ]
    );

    let table = kubectl_okta(&alice, &["list", "-n", NS]).await.unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("APPROVALS"),
        "{table}"
    );
    assert!(
        lines[1].starts_with(&name) && lines[1].contains("Eng On-Call"),
        "{table}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_people_and_requests_fail_with_a_reason() {
    let server = support::start_test_server().await;
    support::create_namespace(&server.client(), NS).await;
    let stranger = person(&server, "nobody", None).await;
    let err = kubectl_okta(&stranger, &["request", "oncall", "--group", "G", "-n", NS])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("who you are"), "{err}");
    let bob = person(&server, "bob-token", Some(("bob@example.com", &[]))).await;
    let err = kubectl_okta(&bob, &["approve", "missing", "-n", NS])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot read AccessRequest identity/missing"),
        "{err}"
    );
    let requests: Api<AccessRequest> = Api::namespaced(server.client(), NS);
    assert!(
        requests
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    server.shutdown().await;
}
