//! The integration and end-to-end tests, in one test binary: linking kube, axum and reqwest
//! once instead of once per file is most of the suite's build time on a small machine, and
//! tests that wait on servers overlap instead of running binary after binary.
//!
//! Each module is one area; the `*_support`, `support`, `common` and `log_capture` modules are
//! the helpers they share. (`tests/runtime_cli_env.rs` stays a binary of its own: it sets
//! process environment variables.)

// Shared helpers.
mod common;
mod e2e_support;
mod log_capture;
mod membership_support;
mod runtime_support;
mod support;
mod sync_support;

// Manifests, CRDs and Argo CD health checks (no servers).
mod argocd_health;
mod crd_drift;
mod manifests;

// The Okta client, the emulator and the sync.
mod emulator_api;
mod emulator_cli;
mod emulator_conformance;
mod okta_client;
mod okta_client_emulator;
mod okta_oauth;
mod review_cli;
mod sync_changes;
mod sync_cli;
mod sync_incremental;
mod sync_requests;
mod sync_scope;

// The reconcilers and the runtime against the Kubernetes API test server and the emulator.
mod connector_reconciler;
mod membership_policy;
mod membership_reconciler;
mod membership_revocation;
mod membership_scale;
mod runtime_binary;
mod runtime_clients;
mod runtime_kubeserver;
mod runtime_leader;
mod runtime_metrics_server;
mod runtime_operator;

// Just-in-time access requests: admission manifest, reconciler, and the `access` command.
mod access_admission;
mod access_cli;
mod access_requests;

// User access review campaigns in the cluster.
mod review_reconciler;

// The real operator binary, end to end.
mod e2e_connector;
mod e2e_leader;
mod e2e_policy;
mod e2e_rbac;
mod e2e_restart;
mod e2e_revocation;
mod e2e_watch;
mod okta_oauth_e2e;
