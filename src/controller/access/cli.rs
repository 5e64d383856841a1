//! `okta-ciam-operator access request|approve|deny|list`, also installed as the kubectl plugin
//! `kubectl-okta` (a symlink to the binary: `kubectl okta request ...`).
//!
//! Creates `AccessRequest`s and `AccessApproval`s for the current user: who that is comes from
//! the API server (`SelfSubjectReview`, Kubernetes 1.28+), exactly as the admission policy
//! will see it, so the objects pass its identity checks.

use std::fmt::Write as _;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::crd::{AccessApproval, AccessRequest, Identity};

/// The name the binary answers to as a kubectl plugin.
pub const PLUGIN_NAME: &str = "kubectl-okta";

/// Most groups one identity records (the CRDs' limit).
const MAX_GROUPS: usize = 100;

/// Failures of the access CLI.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable kubeconfig or in-cluster configuration.
    #[error("cannot configure the Kubernetes client: {0}")]
    KubeConfig(#[source] kube::Error),
    /// A Kubernetes API call failed.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// The API error.
        source: kube::Error,
    },
    /// The API server did not say who the current user is.
    #[error("the API server did not report who you are (SelfSubjectReview without a username)")]
    Anonymous,
}

/// Result of the access CLI.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Arguments of `access`.
#[derive(Debug, clap::Args)]
pub struct AccessArgs {
    /// Namespace of the requests; defaults to the kubeconfig context's.
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: AccessCommand,
}

/// The `access` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AccessCommand {
    /// Ask for membership in an Okta group under an AccessPolicy, as the current user.
    Request(RequestArgs),
    /// Approve an AccessRequest, as the current user.
    Approve(DecideArgs),
    /// Deny an AccessRequest, as the current user.
    Deny(DecideArgs),
    /// List AccessRequests: phase, group, user, approvals, expiry.
    List,
}

/// Arguments of `access request`.
#[derive(Debug, clap::Args)]
pub struct RequestArgs {
    /// The AccessPolicy to request under.
    pub policy: String,
    /// The Okta group's name.
    #[arg(long)]
    pub group: String,
    /// How long, such as `2h`; defaults to the policy's `defaultDuration`.
    #[arg(long)]
    pub duration: Option<String>,
    /// Why the access is needed.
    #[arg(long)]
    pub reason: Option<String>,
    /// A ticket or incident reference.
    #[arg(long)]
    pub ticket: Option<String>,
    /// The Okta user, when the policy allows requests for others; defaults to your username.
    #[arg(long)]
    pub user: Option<String>,
}

/// Arguments of `access approve` and `access deny`.
#[derive(Debug, clap::Args)]
pub struct DecideArgs {
    /// The AccessRequest's name.
    pub request: String,
    /// Why.
    #[arg(long)]
    pub reason: Option<String>,
}

/// The arguments as the main command line sees them: invoked as `kubectl-okta` (the kubectl
/// plugin), `kubectl-okta X` means `okta-ciam-operator access X`.
pub fn plugin_args(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let invoked_as_plugin = args.first().is_some_and(|a| {
        std::path::Path::new(a)
            .file_name()
            .is_some_and(|n| n == PLUGIN_NAME)
    });
    if !invoked_as_plugin {
        return args;
    }
    let mut out = vec!["okta-ciam-operator".into(), "access".into()];
    out.extend(args.into_iter().skip(1));
    out
}

/// Runs `access` against the kubeconfig's cluster and prints the result.
pub async fn run(args: AccessArgs) -> Result<()> {
    let client = kube::Client::try_default()
        .await
        .map_err(Error::KubeConfig)?;
    print!("{}", run_with(client, args).await?);
    Ok(())
}

/// Runs `access` with `client`; returns what to print.
pub async fn run_with(client: kube::Client, args: AccessArgs) -> Result<String> {
    let ns = args
        .namespace
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let kube = |what: String| move |source| Error::Kube { what, source };
    match args.command {
        AccessCommand::Request(r) => {
            let me = whoami(&client).await?;
            let obj: AccessRequest = serde_json::from_value(json!({
                "metadata": {"generateName": format!("{}-", name_prefix(&me.username))},
                "spec": {
                    "policy": r.policy, "requester": me, "group": r.group,
                    "user": r.user, "duration": r.duration, "reason": r.reason, "ticket": r.ticket,
                },
            }))
            .expect("an AccessRequest from its parts");
            let created = Api::<AccessRequest>::namespaced(client, &ns)
                .create(&PostParams::default(), &obj)
                .await
                .map_err(kube(format!("cannot create the AccessRequest in {ns}")))?;
            Ok(format!(
                "accessrequest/{} created in {ns}; approvers run: okta-ciam-operator access approve {}\n",
                created.name_any(),
                created.name_any()
            ))
        }
        AccessCommand::Approve(d) => decide(client, &ns, d, "Approve").await,
        AccessCommand::Deny(d) => decide(client, &ns, d, "Deny").await,
        AccessCommand::List => {
            let list = Api::<AccessRequest>::namespaced(client, &ns)
                .list(&ListParams::default())
                .await
                .map_err(kube(format!("cannot list AccessRequests in {ns}")))?;
            Ok(table(&list.items))
        }
    }
}

async fn decide(client: kube::Client, ns: &str, d: DecideArgs, decision: &str) -> Result<String> {
    let requests: Api<AccessRequest> = Api::namespaced(client.clone(), ns);
    let req = requests
        .get(&d.request)
        .await
        .map_err(|source| Error::Kube {
            what: format!("cannot read AccessRequest {ns}/{}", d.request),
            source,
        })?;
    let me = whoami(&client).await?;
    let obj: AccessApproval = serde_json::from_value(json!({
        "metadata": {"generateName": format!("{}-{}-", d.request, name_prefix(&me.username))},
        "spec": {
            "request": {"name": req.name_any(), "uid": req.uid().unwrap_or_default()},
            "policy": req.spec.policy, "decision": decision, "reason": d.reason, "approver": me,
        },
    }))
    .expect("an AccessApproval from its parts");
    let created = Api::<AccessApproval>::namespaced(client, ns)
        .create(&PostParams::default(), &obj)
        .await
        .map_err(|source| Error::Kube {
            what: format!("cannot record the decision on {ns}/{}", d.request),
            source,
        })?;
    Ok(format!(
        "accessapproval/{} created: {decision} on accessrequest/{}\n",
        created.name_any(),
        d.request
    ))
}

/// The current user, as the API server authenticates this kubeconfig.
async fn whoami(client: &kube::Client) -> Result<Identity> {
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(|source| Error::Kube {
            what: "cannot ask the API server who you are (SelfSubjectReview)".into(),
            source,
        })?;
    let info = review
        .status
        .and_then(|s| s.user_info)
        .ok_or(Error::Anonymous)?;
    let username = info
        .username
        .filter(|u| !u.is_empty())
        .ok_or(Error::Anonymous)?;
    // `system:` groups (such as system:authenticated) say nothing a policy could name.
    let groups = info
        .groups
        .unwrap_or_default()
        .into_iter()
        .filter(|g| !g.starts_with("system:"))
        .take(MAX_GROUPS)
        .collect();
    Ok(Identity { username, groups })
}

/// A DNS-label-safe prefix from a username: `Alice.Smith@example.com` -> `alice-smith`.
pub fn name_prefix(username: &str) -> String {
    let local = username.split('@').next().unwrap_or_default();
    let mut out: String = local
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    out.truncate(40);
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        "request".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// The `list` table, one row per request.
pub fn table(items: &[AccessRequest]) -> String {
    let mut rows = vec![[
        "NAME".to_owned(),
        "PHASE".into(),
        "GROUP".into(),
        "USER".into(),
        "APPROVALS".into(),
        "EXPIRES".into(),
        "REQUESTER".into(),
    ]];
    for r in items {
        let s = r.status.clone().unwrap_or_default();
        let dash = || "-".to_owned();
        rows.push([
            r.name_any(),
            s.phase.map_or_else(dash, |p| format!("{p:?}")),
            r.spec.group.clone(),
            s.okta_user.unwrap_or_else(dash),
            s.approvals.unwrap_or_else(dash),
            s.expires_at.map_or_else(dash, |t| t.0.to_string()),
            r.spec.requester.username.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("   ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_name_maps_to_the_access_subcommand() {
        let args = |v: &[&str]| {
            v.iter()
                .map(Into::into)
                .collect::<Vec<std::ffi::OsString>>()
        };
        assert_eq!(
            plugin_args(args(&[
                "/usr/local/bin/kubectl-okta",
                "list",
                "-n",
                "identity"
            ])),
            args(&["okta-ciam-operator", "access", "list", "-n", "identity"])
        );
        let direct = args(&["okta-ciam-operator", "access", "list"]);
        assert_eq!(plugin_args(direct.clone()), direct);
    }

    #[test]
    fn name_prefixes_are_dns_labels() {
        assert_eq!(name_prefix("Alice.Smith@example.com"), "alice-smith");
        assert_eq!(
            name_prefix("system:serviceaccount:x:y"),
            "system-serviceaccount-x-y"
        );
        assert_eq!(name_prefix("@@"), "request");
        assert!(name_prefix(&"a".repeat(300)).len() <= 40);
    }
}
