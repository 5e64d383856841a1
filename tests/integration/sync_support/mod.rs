//! Helpers shared by the `sync_*` tests: an in-process emulator and a client for it.
#![allow(dead_code)] // each test file uses a different subset

use std::sync::Arc;

use okta_ciam_operator::okta::{
    ApiToken, ClientOptions, DomainPolicy, OktaClient, OrgDomain, SswsAuth,
};
use okta_ciam_operator::sync::engine::{self, SyncConfig};
use okta_ciam_operator::sync::progress::NoProgress;
use okta_ciam_operator::sync::scope::{EmailDomains, GroupNameFilter};
use okta_ciam_operator::sync::snapshot::Snapshot;
use okta_emulator::{self as emulator, EmulatorConfig, EmulatorHandle, Fixture};

/// Starts the emulator on an ephemeral loopback port with `fixture` and its rate limits.
pub async fn start(fixture: Fixture) -> EmulatorHandle {
    emulator::start(EmulatorConfig::new(fixture))
        .await
        .expect("start the emulator")
}

/// A client for the emulator with `token`.
pub fn client_with_token(handle: &EmulatorHandle, token: &str) -> OktaClient {
    let policy = DomainPolicy {
        insecure_loopback_http: true,
        ..DomainPolicy::default()
    };
    let domain = OrgDomain::parse(&handle.domain(), &policy).expect("emulator domain");
    OktaClient::new(
        domain,
        Arc::new(SswsAuth::new(ApiToken::new(token.to_string()))),
        ClientOptions::default(),
    )
    .expect("client")
}

/// A client for the emulator with its first token.
pub fn client(handle: &EmulatorHandle) -> OktaClient {
    client_with_token(handle, &handle.token())
}

/// A sync configuration from a comma-separated domain list and a filter ("" = none).
pub fn config(domains: &str, filter: &str) -> SyncConfig {
    SyncConfig {
        email_domains: EmailDomains::parse_list(domains).expect("domains"),
        group_name_filter: GroupNameFilter::new(filter).expect("filter"),
        concurrency: 8,
    }
}

/// Runs one sync without progress output.
pub async fn sync(client: &OktaClient, config: &SyncConfig) -> Snapshot {
    engine::sync(client, config, &NoProgress)
        .await
        .expect("sync succeeds")
}
