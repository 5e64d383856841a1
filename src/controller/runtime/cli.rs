//! `okta-ciam-operator run` arguments.

use std::net::SocketAddr;
use std::time::Duration;

use super::leader::LeaseSettings;
use super::{Error, Result};

/// Run the operator: watch the cluster and keep every connector's sync and every group
/// membership in step with Okta.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Namespace to watch; repeat for several. Default: all namespaces.
    #[arg(
        long = "namespace",
        value_name = "NS",
        env = "OKTA_CIAM_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,

    /// Address serving /metrics, /healthz and /readyz.
    #[arg(long, env = "OKTA_CIAM_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Take part in leader election on a Lease so only one replica reconciles.
    #[arg(long, env = "OKTA_CIAM_LEADER_ELECT")]
    pub leader_elect: bool,

    /// Namespace of the leader election Lease. Default: the pod's namespace, else the
    /// kubeconfig's default namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Name of the leader election Lease.
    #[arg(
        long,
        env = "OKTA_CIAM_LEASE_NAME",
        default_value = "okta-ciam-operator"
    )]
    pub lease_name: String,

    /// How long a Lease stays valid without renewal.
    #[arg(long, env = "OKTA_CIAM_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,

    /// How long the leader keeps acting without a successful renewal (shorter than the lease
    /// duration).
    #[arg(long, env = "OKTA_CIAM_LEASE_RENEW_DEADLINE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub lease_renew_deadline: Duration,

    /// Time between leader election attempts.
    #[arg(long, env = "OKTA_CIAM_LEASE_RETRY_PERIOD", default_value = "2s", value_parser = humantime::parse_duration)]
    pub lease_retry_period: Duration,

    /// This replica's identity in the Lease. Default: the pod name, else the host name plus a
    /// random suffix.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Extra Okta domain suffix to accept besides Okta's own (repeatable).
    #[arg(
        long = "allow-domain",
        value_name = "SUFFIX",
        env = "OKTA_CIAM_ALLOW_DOMAINS",
        value_delimiter = ','
    )]
    pub allow_domains: Vec<String>,

    /// Accept plain-HTTP loopback org domains (127.0.0.1:PORT, localhost:PORT), for tests
    /// against the Okta emulator.
    #[arg(long, env = "OKTA_CIAM_INSECURE_LOOPBACK_HTTP")]
    pub insecure_loopback_http: bool,

    /// Allow `GroupMembership` writes at all. `false` refuses every membership write in the
    /// cluster (reason `ProvisioningDisabled`), whatever a connector's `spec.provisioning`
    /// says; syncs go on. Also read from `BATON_PROVISIONING`, the commercial connector's
    /// switch. Default: true.
    #[arg(
        long,
        env = "OKTA_CIAM_PROVISIONING",
        value_name = "true|false",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub provisioning: Option<bool>,

    /// `BATON_PROVISIONING`, the commercial connector's name for `--provisioning`; the
    /// operator's own flag and variable win over it.
    #[arg(
        long = "baton-provisioning",
        env = "BATON_PROVISIONING",
        hide = true,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub baton_provisioning: Option<bool>,

    /// Grant a `GroupMembership` only where an `AccessPolicy` allows it: its `standing` rules
    /// (namespace selector, org, group), or for a membership an approved `AccessRequest`
    /// created, that request's policy. Others are refused (`NotAllowedByPolicy`) before any
    /// Okta write; revocations never wait for a policy. Default: false (the install
    /// manifests turn it on).
    #[arg(
        long,
        env = "OKTA_CIAM_REQUIRE_POLICY",
        value_name = "true|false",
        default_value_t = false,
        default_missing_value = "true",
        num_args = 0..=1,
        require_equals = true,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub require_policy: bool,

    /// On SIGTERM, how long to wait for in-flight work before abandoning it.
    #[arg(long, env = "OKTA_CIAM_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
}

/// Trims, drops empties and duplicates (env lists often end with a comma), keeping order.
fn clean_list(values: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
        if !out.iter().any(|o| o == v) {
            out.push(v.to_owned());
        }
    }
    out
}

impl RunArgs {
    /// The namespaces to watch; empty means all.
    pub fn watched_namespaces(&self) -> Vec<String> {
        clean_list(&self.namespaces)
    }

    /// The extra allowed domain suffixes, lower-cased.
    pub fn allowed_domain_suffixes(&self) -> Vec<String> {
        clean_list(&self.allow_domains)
            .into_iter()
            .map(|s| s.trim_start_matches('.').to_ascii_lowercase())
            .collect()
    }

    /// Whether membership writes are allowed: `--provisioning`/`OKTA_CIAM_PROVISIONING`,
    /// else `BATON_PROVISIONING`, else true.
    pub fn provisioning_enabled(&self) -> bool {
        self.provisioning
            .or(self.baton_provisioning)
            .unwrap_or(true)
    }

    /// The Lease settings when leader election is on. `default_namespace` is used when neither
    /// `--lease-namespace` nor `POD_NAMESPACE` is set (kube's default namespace).
    pub fn lease_settings(&self, default_namespace: &str) -> Result<Option<LeaseSettings>> {
        if !self.leader_elect {
            return Ok(None);
        }
        let namespace = self
            .lease_namespace
            .as_deref()
            .map(str::trim)
            .filter(|ns| !ns.is_empty())
            .unwrap_or(default_namespace)
            .to_owned();
        let settings = LeaseSettings {
            namespace,
            name: self.lease_name.trim().to_owned(),
            identity: self.resolved_identity(),
            lease_duration: self.lease_duration,
            renew_deadline: self.lease_renew_deadline,
            retry_period: self.lease_retry_period,
        };
        settings.validate()?;
        Ok(Some(settings))
    }

    /// `--identity`/`POD_NAME` if set, else a name unique to this process.
    fn resolved_identity(&self) -> String {
        match self.identity.as_deref().map(str::trim) {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => generated_identity(&host_name()),
        }
    }

    /// Checks the arguments that need no cluster access.
    pub fn validate(&self) -> Result<()> {
        if self.shutdown_grace.is_zero() {
            return Err(Error::InvalidArgs(
                "--shutdown-grace must be positive".into(),
            ));
        }
        if self.leader_elect && self.lease_name.trim().is_empty() {
            return Err(Error::InvalidArgs("--lease-name must not be empty".into()));
        }
        Ok(())
    }
}

/// The host name from `HOSTNAME` or the kernel, if any.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "okta-ciam-operator".to_owned())
}

/// `host-xxxxxxxx`: the suffix keeps two processes on one host (or a restarted process whose
/// old lease is still live) from sharing an identity.
fn generated_identity(host: &str) -> String {
    format!("{host}-{:08x}", rand::random::<u32>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Wrapper {
        #[command(flatten)]
        args: RunArgs,
    }

    fn parse(argv: &[&str]) -> RunArgs {
        Wrapper::try_parse_from(std::iter::once("run").chain(argv.iter().copied()))
            .expect("parses")
            .args
    }

    #[test]
    fn lists_are_cleaned() {
        let a = parse(&[
            "--namespace",
            "a",
            "--namespace",
            "b,,a, c ",
            "--allow-domain",
            ".Example.COM",
        ]);
        assert_eq!(a.watched_namespaces(), ["a", "b", "c"]);
        assert_eq!(a.allowed_domain_suffixes(), ["example.com"]);
    }

    #[test]
    fn require_policy_is_a_switch_that_also_takes_a_boolean() {
        assert!(parse(&["--require-policy"]).require_policy);
        assert!(parse(&["--require-policy=true"]).require_policy);
        assert!(!parse(&["--require-policy=false"]).require_policy);
        // A value needs '=': a following word is not taken as the flag's value.
        assert!(Wrapper::try_parse_from(["run", "--require-policy", "false"]).is_err());
    }

    #[test]
    fn provisioning_switch_defaults_on_and_the_operator_flag_wins_over_baton() {
        let mut a = parse(&[]);
        // The environment of the test process must not decide this test.
        (a.provisioning, a.baton_provisioning) = (None, None);
        assert!(a.provisioning_enabled());
        let a = parse(&["--provisioning", "false"]);
        assert!(!a.provisioning_enabled());
        let a = parse(&["--provisioning", "true", "--baton-provisioning", "false"]);
        assert!(a.provisioning_enabled());
        let mut a = parse(&["--baton-provisioning", "false"]);
        a.provisioning = None;
        assert!(!a.provisioning_enabled());
        assert!(
            Wrapper::try_parse_from(["run", "--provisioning", "maybe"]).is_err(),
            "only booleans"
        );
    }

    #[test]
    fn lease_settings_only_with_leader_election() {
        let off = parse(&["--identity", "pod-1"]);
        assert_eq!(off.lease_settings("default").unwrap(), None);
        let on = parse(&[
            "--leader-elect",
            "--identity",
            "pod-1",
            "--lease-namespace",
            "ops",
        ]);
        let s = on.lease_settings("default").unwrap().unwrap();
        assert_eq!(
            (s.namespace.as_str(), s.name.as_str(), s.identity.as_str()),
            ("ops", "okta-ciam-operator", "pod-1")
        );
        assert_eq!(s.lease_duration, LeaseSettings::DEFAULT_LEASE_DURATION);
        assert_eq!(s.renew_deadline, LeaseSettings::DEFAULT_RENEW_DEADLINE);
        assert_eq!(s.retry_period, LeaseSettings::DEFAULT_RETRY_PERIOD);
    }

    #[test]
    fn lease_namespace_falls_back_to_the_default() {
        let mut a = parse(&["--leader-elect", "--identity", "p"]);
        a.lease_namespace = None; // POD_NAMESPACE may be set where tests run
        assert_eq!(
            a.lease_settings("kube-ns").unwrap().unwrap().namespace,
            "kube-ns"
        );
    }

    #[test]
    fn unsafe_lease_timings_are_refused() {
        let a = parse(&[
            "--leader-elect",
            "--identity",
            "p",
            "--lease-namespace",
            "x",
            "--lease-duration",
            "10s",
            "--lease-renew-deadline",
            "10s",
        ]);
        assert!(matches!(a.lease_settings("d"), Err(Error::InvalidArgs(_))));
    }

    #[test]
    fn generated_identities_are_unique_per_process_start() {
        let a = generated_identity("host");
        assert!(
            a.starts_with("host-") && a.len() == "host-".len() + 8,
            "{a}"
        );
        // Two draws of 32 random bits colliding would be a 1-in-4-billion event.
        assert_ne!(a, generated_identity("host"));
        let mut blank = parse(&[]);
        blank.identity = Some("  ".into());
        assert!(!blank.resolved_identity().trim().is_empty());
    }

    #[test]
    fn zero_grace_is_refused() {
        let a = parse(&["--shutdown-grace", "0s"]);
        assert!(a.validate().is_err());
        parse(&[]).validate().unwrap();
    }
}
