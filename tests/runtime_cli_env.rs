//! The `run` flags' environment twins. One test in its own binary: it sets process
//! environment variables, which must not race with other tests.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use okta_ciam_operator::cli::{Cli, Command};

fn parse(argv: &[&str]) -> okta_ciam_operator::controller::runtime::cli::RunArgs {
    match Cli::try_parse_from(argv).expect("parses").command {
        Command::Run(args) => *args,
        other => panic!("not run: {other:?}"),
    }
}

#[test]
fn environment_twins_and_defaults() {
    let vars = [
        "OKTA_CIAM_NAMESPACES",
        "OKTA_CIAM_METRICS_ADDR",
        "OKTA_CIAM_LEADER_ELECT",
        "POD_NAMESPACE",
        "OKTA_CIAM_LEASE_NAME",
        "POD_NAME",
        "OKTA_CIAM_ALLOW_DOMAINS",
        "OKTA_CIAM_INSECURE_LOOPBACK_HTTP",
        "OKTA_CIAM_SHUTDOWN_GRACE",
        "OKTA_CIAM_PROVISIONING",
        "BATON_PROVISIONING",
    ];
    // SAFETY: this binary has a single test, so no other thread reads the environment.
    unsafe {
        for v in vars {
            std::env::remove_var(v);
        }
    }
    let defaults = parse(&["okta-ciam-operator", "run"]);
    assert!(
        defaults.watched_namespaces().is_empty(),
        "all namespaces by default"
    );
    assert_eq!(
        defaults.metrics_addr,
        "0.0.0.0:8080".parse::<SocketAddr>().unwrap()
    );
    assert!(!defaults.leader_elect);
    assert!(!defaults.insecure_loopback_http);
    assert_eq!(defaults.lease_name, "okta-ciam-operator");
    assert_eq!(defaults.lease_namespace, None);
    assert_eq!(defaults.identity, None);
    assert_eq!(defaults.shutdown_grace, Duration::from_secs(20));
    assert!(
        defaults.provisioning_enabled(),
        "provisioning on by default"
    );

    // SAFETY: as above.
    unsafe {
        std::env::set_var("OKTA_CIAM_NAMESPACES", "team-a,team-b");
        std::env::set_var("OKTA_CIAM_METRICS_ADDR", "127.0.0.1:9090");
        std::env::set_var("OKTA_CIAM_LEADER_ELECT", "true");
        std::env::set_var("POD_NAMESPACE", "okta-system");
        std::env::set_var("OKTA_CIAM_LEASE_NAME", "lock");
        std::env::set_var("POD_NAME", "operator-7d9f-abcde");
        std::env::set_var("OKTA_CIAM_ALLOW_DOMAINS", "corp.example,Example.ORG");
        std::env::set_var("OKTA_CIAM_INSECURE_LOOPBACK_HTTP", "true");
        std::env::set_var("OKTA_CIAM_SHUTDOWN_GRACE", "45s");
    }
    let env = parse(&["okta-ciam-operator", "run"]);
    assert_eq!(env.watched_namespaces(), ["team-a", "team-b"]);
    assert_eq!(
        env.metrics_addr,
        "127.0.0.1:9090".parse::<SocketAddr>().unwrap()
    );
    assert!(env.leader_elect && env.insecure_loopback_http);
    assert_eq!(
        env.allowed_domain_suffixes(),
        ["corp.example", "example.org"]
    );
    assert_eq!(env.shutdown_grace, Duration::from_secs(45));
    let lease = env.lease_settings("default").unwrap().unwrap();
    assert_eq!(
        (
            lease.namespace.as_str(),
            lease.name.as_str(),
            lease.identity.as_str()
        ),
        ("okta-system", "lock", "operator-7d9f-abcde")
    );

    // Flags win over the environment; "false" in the environment turns a switch off.
    // SAFETY: as above.
    unsafe {
        std::env::set_var("OKTA_CIAM_LEADER_ELECT", "false");
    }
    let flags = parse(&[
        "okta-ciam-operator",
        "run",
        "--namespace",
        "x",
        "--metrics-addr",
        "127.0.0.1:1",
    ]);
    assert_eq!(flags.watched_namespaces(), ["x"]);
    assert_eq!(flags.metrics_addr.port(), 1);
    assert!(!flags.leader_elect);

    // The provisioning switch: BATON_PROVISIONING alone turns it off; the operator's own
    // variable wins over it, and the flag over both.
    // SAFETY: as above.
    unsafe {
        std::env::set_var("BATON_PROVISIONING", "false");
    }
    assert!(!parse(&["okta-ciam-operator", "run"]).provisioning_enabled());
    // SAFETY: as above.
    unsafe {
        std::env::set_var("OKTA_CIAM_PROVISIONING", "true");
    }
    assert!(parse(&["okta-ciam-operator", "run"]).provisioning_enabled());
    assert!(
        !parse(&["okta-ciam-operator", "run", "--provisioning", "false"]).provisioning_enabled()
    );
    // SAFETY: as above.
    unsafe {
        std::env::set_var("OKTA_CIAM_PROVISIONING", "nope");
    }
    assert!(
        Cli::try_parse_from(["okta-ciam-operator", "run"]).is_err(),
        "a malformed switch is an error, not a default"
    );
}
