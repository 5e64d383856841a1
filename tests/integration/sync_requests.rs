//! Request economy and failure handling of a sync against a generated org.

use crate::sync_support;

use std::collections::BTreeSet;

use okta_ciam_operator::okta;
use okta_ciam_operator::sync::engine;
use okta_ciam_operator::sync::progress::NoProgress;
use okta_ciam_operator::sync::snapshot::GrantKind;
use okta_ciam_operator::sync::{self as sync_layer};
use okta_emulator::{Fixture, GenerateSpec};
use sync_support::{client, client_with_token, config, start, sync};

fn generated() -> Fixture {
    let spec: GenerateSpec = "users=2000,groups=60,memberships-per-user=4,admins=8,custom-roles=2,\
         domains=example.com:example.org:example.net:example.com.evil.io:example.community"
        .parse()
        .expect("spec");
    Fixture::generate(&spec, 42)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_stay_within_a_fifth_of_the_floor_and_memberships_match_the_org() {
    let h = start(generated()).await;
    let c = client(&h);
    let s = sync(&c, &config("example.com", "")).await;
    let st = &s.stats;

    // Every request the emulator saw was one the client counted, none was refused.
    let server = h.stats();
    assert_eq!(server.requests.total, st.requests);
    assert_eq!(server.rate_limited, 0);
    assert_eq!(st.rate_limited, 0);
    assert!(st.request_floor > 0);
    assert!(
        st.requests >= st.request_floor && st.requests * 5 <= st.request_floor * 6,
        "requests {} vs floor {}",
        st.requests,
        st.request_floor
    );
    assert_eq!(st.floor_inputs.users, s.users.len() as u64);
    assert_eq!(st.floor_inputs.groups, 60);

    // Memberships equal the org's, restricted to in-scope users (an independent oracle).
    let in_scope: BTreeSet<&str> = s.users.iter().map(|u| u.id.as_str()).collect();
    let mut expected = BTreeSet::new();
    for g in &s.groups {
        for m in h.members_of(&g.id) {
            if in_scope.contains(m.as_str()) {
                expected.insert((m, g.id.clone()));
            }
        }
    }
    let got: BTreeSet<(String, String)> = s
        .grants
        .iter()
        .filter(|g| g.kind == GrantKind::GroupMembership)
        .map(|g| (g.principal_id.clone(), g.target_id.clone()))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
    // Every user is in example.com exactly (look-alike domains were generated too).
    assert!(s.users.iter().all(|u| u.login.ends_with("@example.com")));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_fails_with_unauthorized_and_never_shows_the_token() {
    let h = start(generated()).await;
    let c = client_with_token(&h, "not-the-token-4242");
    let err = engine::sync(&c, &config("example.com", ""), &NoProgress)
        .await
        .expect_err("401");
    assert!(
        matches!(err, sync_layer::Error::Okta(okta::Error::Unauthorized(_))),
        "{err:?}"
    );
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("not-the-token-4242"), "{shown}");
    assert!(!err.to_string().contains('\n'));
    h.shutdown().await;
}
