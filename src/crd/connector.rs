//! `OktaCiamConnector`: one Okta org, the Secret holding its API token, and the scope
//! (email domains, group-name filter) that is the tenant boundary for sync and provisioning.

use std::sync::LazyLock;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// Schema pattern for `domain`: a DNS host name of two or more labels, with an optional port
/// (the port exists for the loopback emulator; the Okta client decides which hosts it talks to).
pub const DOMAIN_PATTERN: &str = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+(:[0-9]{1,5})?$";
/// Schema pattern for each `emailDomains` entry: a DNS name of two or more labels.
pub const EMAIL_DOMAIN_PATTERN: &str = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$";
/// Schema pattern for durations: Go duration syntax restricted to whole hours, minutes and
/// seconds (`1h`, `90m`, `1h30m`), which both CEL's `duration()` and the operator parse alike.
pub const DURATION_PATTERN: &str = r"^([0-9]+(h|m|s))+$";
/// Schema pattern for a Secret name (a DNS subdomain, as Kubernetes requires).
pub const SECRET_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// Schema pattern for a key inside a Secret's `data`.
pub const SECRET_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";
/// Schema pattern for an OAuth client ID.
pub const CLIENT_ID_PATTERN: &str = r"^[A-Za-z0-9_-]+$";
/// Schema pattern for an Okta API scope such as `okta.users.read`.
pub const SCOPE_PATTERN: &str = r"^okta\.[A-Za-z0-9]+(\.[A-Za-z0-9]+)*$";
/// The shortest accepted `syncInterval`, so one connector cannot drain an org's rate limits.
pub const MIN_SYNC_INTERVAL: Duration = Duration::from_secs(60);

static DOMAIN_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(DOMAIN_PATTERN).expect("valid"));
static EMAIL_DOMAIN_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(EMAIL_DOMAIN_PATTERN).expect("valid"));
static DURATION_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(DURATION_PATTERN).expect("valid"));
static SECRET_NAME_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(SECRET_NAME_PATTERN).expect("valid"));
static SECRET_KEY_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(SECRET_KEY_PATTERN).expect("valid"));
static CLIENT_ID_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(CLIENT_ID_PATTERN).expect("valid"));
static SCOPE_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(SCOPE_PATTERN).expect("valid"));

/// Desired state of an `OktaCiamConnector`: which Okta org to read, with which token, and
/// which part of it (users by email domain, groups by name) belongs to this connector.
// Each printcolumn(...) repeats the same keys, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "oktaciam.io",
    version = "v1alpha1",
    kind = "OktaCiamConnector",
    namespaced,
    status = "ConnectorStatus",
    shortname = "okc",
    category = "okta",
    doc = "OktaCiamConnector syncs one Okta Workforce org's users, groups and roles into an access snapshot and lets GroupMemberships in the same namespace provision group memberships in it.",
    printcolumn(
        name = "Domain",
        type_ = "string",
        json_path = ".spec.domain",
        description = "Okta org host name"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the last sync succeeded with valid credentials"
    ),
    printcolumn(
        name = "Users",
        type_ = "integer",
        json_path = ".status.counts.users",
        description = "Users in scope at the last sync"
    ),
    printcolumn(
        name = "Groups",
        type_ = "integer",
        json_path = ".status.counts.groups",
        description = "Groups in scope at the last sync"
    ),
    printcolumn(
        name = "Last Sync",
        type_ = "date",
        json_path = ".status.lastSuccessfulSyncTime",
        description = "When the last successful sync finished"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.tokenSecretRef) != has(self.auth)").message("set exactly one of tokenSecretRef and auth.oauth"))]
pub struct OktaCiamConnectorSpec {
    /// Host name of the Okta org, such as `company.okta.com` (no scheme, no path). The API is
    /// reached at `https://<domain>`.
    #[schemars(length(max = 253), regex(pattern = DOMAIN_PATTERN))]
    pub domain: String,

    /// The Secret in this connector's namespace that holds the Okta API token (SSWS). Set
    /// exactly one of `tokenSecretRef` and `auth.oauth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,

    /// Authentication other than an API token: an OAuth 2.0 service app. Set exactly one of
    /// `tokenSecretRef` and `auth.oauth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,

    /// Email domains whose users this connector manages, such as `example.com`. Users whose
    /// primary email is in another domain are neither synced nor provisioned. Matched without
    /// regard to case.
    #[schemars(length(min = 1, max = 100), inner(length(max = 253), regex(pattern = EMAIL_DOMAIN_PATTERN)))]
    pub email_domains: Vec<String>,

    /// Only groups whose name contains this text (case-insensitive) are synced and may be
    /// provisioned. Unset: every group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub group_name_filter: Option<String>,

    /// Whether GroupMemberships may write group memberships in Okta through this connector.
    /// When false they are refused with reason `ProvisioningDisabled`.
    #[serde(default)]
    pub provisioning: bool,

    /// How often to sync, as a duration such as `30m` or `1h30m`. At least `1m`.
    #[serde(default = "default_sync_interval")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')").message("syncInterval must be at least 1m"))]
    pub sync_interval: String,

    /// How often a sync reads everything, as a duration such as `24h`. Syncs in between apply
    /// the changes the System Log names to the last snapshot (falling back to a full read when
    /// the log cannot be trusted). At least `1m`; at most `syncInterval` makes every sync full.
    #[serde(default = "default_full_sync_interval")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')").message("fullSyncInterval must be at least 1m"))]
    pub full_sync_interval: String,

    /// Limits on this connector's use of the org's API rate limits. Unset fields take the
    /// client's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,

    /// Stops syncing and provisioning without deleting anything, until set back to false.
    #[serde(default)]
    pub suspend: bool,

    /// Refuses a sync that suddenly sees far fewer users or groups than the last good one (a
    /// token scoped down, an API client without an admin role answered with empty lists):
    /// the last good snapshot stays in use and `Synced` turns False with reason
    /// `SnapshotShrank`. Unset fields take their defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shrink_guard: Option<ShrinkGuardSpec>,
    /// Safety limits on writes to Okta (the mass-revocation circuit breaker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety: Option<SafetySpec>,
}

/// Safety limits on what the operator writes to Okta through this connector.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SafetySpec {
    /// Mass-revocation circuit breaker: at most this many membership removals per sliding
    /// hour through this connector (default 100); further removals are held (the
    /// memberships show `RevocationHeld`, the connector `RevocationsPaused`) until the
    /// `oktaciam.io/release-revocations` annotation gets a new value or this is raised.
    /// 0 holds every removal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub max_revocations_per_hour: Option<i32>,
}

/// Default of `safety.maxRevocationsPerHour`.
pub const DEFAULT_MAX_REVOCATIONS_PER_HOUR: usize = 100;

impl OktaCiamConnectorSpec {
    /// The effective `safety.maxRevocationsPerHour`.
    pub fn max_revocations_per_hour(&self) -> usize {
        self.safety
            .as_ref()
            .and_then(|s| s.max_revocations_per_hour)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(DEFAULT_MAX_REVOCATIONS_PER_HOUR)
    }
}

/// Thresholds of the shrink guard. To accept a real drop, raise the threshold (100 turns the
/// check off); the changed spec syncs again at once.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ShrinkGuardSpec {
    /// Largest accepted drop of in-scope users, in percent of the last good sync (default 50;
    /// 100 accepts any drop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_user_drop_percent: Option<i32>,

    /// Largest accepted drop of in-scope groups, in percent of the last good sync (default
    /// 50; 100 accepts any drop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_group_drop_percent: Option<i32>,

    /// Counts below this in the last good sync are never guarded, so small orgs can change
    /// freely (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_previous_count: Option<i64>,
}

/// Default of `shrinkGuard.maxUserDropPercent` and `.maxGroupDropPercent`.
pub const DEFAULT_MAX_DROP_PERCENT: u8 = 50;
/// Default of `shrinkGuard.minPreviousCount`.
pub const DEFAULT_MIN_PREVIOUS_COUNT: u64 = 10;

fn default_sync_interval() -> String {
    "1h".to_owned()
}

fn default_full_sync_interval() -> String {
    "24h".to_owned()
}

fn default_token_key() -> String {
    "apiToken".to_owned()
}

/// A key in a Secret in the same namespace as the object that refers to it.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SecretKeyRef {
    /// Name of the Secret. Secrets in other namespaces cannot be referenced.
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_NAME_PATTERN))]
    pub name: String,

    /// Key in the Secret's data that holds the token. For a Secret made for the commercial
    /// connector, set this to `BATON_API_TOKEN`.
    #[serde(default = "default_token_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub key: String,
}

fn default_private_key_key() -> String {
    "privateKey".to_owned()
}

/// Authentication without an API token.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// An Okta API service app: client credentials with a `private_key_jwt` client assertion
    /// and DPoP-bound access tokens limited to the granted scopes.
    pub oauth: OAuthSpec,
}

/// An OAuth 2.0 API service app in Okta.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OAuthSpec {
    /// The service app's client ID, such as `0oa1b2c3d4e5f6g7h8i9`.
    #[schemars(length(min = 1, max = 100), regex(pattern = CLIENT_ID_PATTERN))]
    pub client_id: String,

    /// The Secret in this connector's namespace that holds the app's private key: PEM
    /// (`PRIVATE KEY`, PKCS#8, RSA or P-256; or `RSA PRIVATE KEY`) or a private JSON Web Key
    /// (RSA or EC P-256). Its public key must be registered with the app in Okta.
    pub private_key_secret_ref: PrivateKeySecretRef,

    /// The `kid` of the app's public key in Okta, sent in the client assertion. Needed when
    /// the app has more than one key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub key_id: Option<String>,

    /// Okta API scopes to request, each granted to the app in Okta. Unset: the scopes the
    /// connector uses (`okta.orgs.read okta.users.read okta.groups.read okta.roles.read`,
    /// plus `okta.groups.manage` when `provisioning` is true).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), inner(length(max = 100), regex(pattern = SCOPE_PATTERN)))]
    pub scopes: Vec<String>,
}

/// A key in a Secret, in the connector's namespace, holding a private key.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PrivateKeySecretRef {
    /// Name of the Secret. Secrets in other namespaces cannot be referenced.
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_NAME_PATTERN))]
    pub name: String,

    /// Key in the Secret's data that holds the private key.
    #[serde(default = "default_private_key_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub key: String,
}

/// Limits on one connector's share of an org's API rate limits.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitSpec {
    /// Most Okta requests in flight at once (Okta allows 75 per Workforce org).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 75))]
    pub max_concurrency: Option<i32>,

    /// Share, in percent, of each rate-limit bucket this connector may use, leaving the rest
    /// to other API clients of the org.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub budget_percent: Option<i32>,
}

/// Observed state of an `OktaCiamConnector`, written only by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Current state: `Ready`, `CredentialsValid` and `Synced`, with reasons such as
    /// `Synced`, `InvalidSpec`, `SecretNotFound`, `SecretKeyMissing`, `InvalidKey`,
    /// `Unauthorized`, `InsufficientScope`, `Forbidden`, `OktaUnreachable`, `RateLimited`,
    /// `SyncFailed` or `Suspended`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// When the last sync, successful or not, finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,

    /// When the last successful sync finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_sync_time: Option<Time>,

    /// How long the last sync took, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_duration_seconds: Option<f64>,

    /// When the next sync is due; after a failed Okta call, when it is retried (back-off
    /// from 5s doubling to 5m, per connector, reset by a new spec or token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_sync_time: Option<Time>,

    /// What the last successful sync found in scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<SyncCounts>,

    /// Okta API usage of the last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub okta: Option<OktaRequestStats>,

    /// The mass-revocation circuit breaker's window, kept here so that a restarted operator
    /// or a new leader goes on counting where the last one stopped. Written before the
    /// removals it counts are made, by its own field manager
    /// (`okta-ciam-operator-revocations`); the rest of the status never touches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocations: Option<RevocationWindowStatus>,
}

/// The server-side apply field manager that owns `status.revocations` alone.
pub const REVOCATIONS_FIELD_MANAGER: &str = "okta-ciam-operator-revocations";

/// The removals the circuit breaker counted in the last hour, and the release it last acted on.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RevocationWindowStatus {
    /// Removals counted, per minute, oldest first: at most one entry per minute of the hour,
    /// so the list stays this short at any `maxRevocationsPerHour`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 61))]
    pub removals: Vec<RemovalCount>,
    /// The `oktaciam.io/release-revocations` annotation value last acted on (a value already
    /// acted on releases nothing again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<String>,
}

/// Removals allowed in the minute that ends at `minute`.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RemovalCount {
    /// The end of the minute (removals are rounded up to it, so each counts up to a minute
    /// longer than an hour, never shorter).
    pub minute: Time,
    /// How many removals were allowed in that minute.
    #[schemars(range(min = 1, max = 100000))]
    pub count: i32,
}

/// Sizes of the last successful snapshot.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SyncCounts {
    /// Users in the connector's email domains.
    pub users: i64,
    /// Groups matching the group-name filter.
    pub groups: i64,
    /// Distinct admin roles (standard and custom) held in scope.
    pub roles: i64,
    /// Custom admin roles defined in the org.
    pub custom_roles: i64,
    /// (user, group) memberships between synced users and groups.
    pub group_memberships: i64,
    /// Admin role assignments to synced users and groups.
    pub role_assignments: i64,
}

/// Okta API usage during one sync.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct OktaRequestStats {
    /// HTTP requests sent, retries included.
    pub requests: i64,
    /// Responses that were HTTP 429 (rate limited).
    pub rate_limited: i64,
    /// Requests that were retries of an earlier failed attempt.
    pub retries: i64,
}

/// Reasons on a connector's conditions. Each is documented for users in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectorReason {
    /// The spec breaks a rule the schema cannot express; fix the spec.
    InvalidSpec,
    /// The Secret named by `tokenSecretRef` (or `auth.oauth.privateKeySecretRef`) does not
    /// exist in the namespace.
    SecretNotFound,
    /// The Secret exists but has no entry under the referenced key.
    SecretKeyMissing,
    /// The Secret's private key (`auth.oauth`) cannot be read as a PEM or JWK key.
    InvalidKey,
    /// Okta rejected the credentials: the API token, or the service app's client assertion
    /// or DPoP proof (HTTP 401).
    Unauthorized,
    /// The OAuth access token lacks a scope an operation needs, or the app was not granted
    /// a requested scope; the message names the scope.
    InsufficientScope,
    /// The token lacks a permission the sync needs (HTTP 403).
    Forbidden,
    /// Okta could not be reached (DNS, connection, TLS or 5xx); retried with back-off.
    OktaUnreachable,
    /// Okta's rate limits are slowing the sync down; it is still progressing.
    RateLimited,
    /// The sync failed for another reason; the message says which.
    SyncFailed,
    /// `spec.suspend` is true: nothing is synced or provisioned.
    Suspended,
    /// The last sync saw far fewer users or groups than the last good one; that one is kept.
    SnapshotShrank,
    /// The last sync succeeded.
    Synced,
}

impl ConnectorReason {
    /// Every reason, for documentation and exhaustive tests.
    pub const ALL: [Self; 13] = [
        Self::InvalidSpec,
        Self::SecretNotFound,
        Self::SecretKeyMissing,
        Self::InvalidKey,
        Self::Unauthorized,
        Self::InsufficientScope,
        Self::Forbidden,
        Self::OktaUnreachable,
        Self::RateLimited,
        Self::SyncFailed,
        Self::Suspended,
        Self::SnapshotShrank,
        Self::Synced,
    ];

    /// The `reason` string written to conditions and Events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidSpec => "InvalidSpec",
            Self::SecretNotFound => "SecretNotFound",
            Self::SecretKeyMissing => "SecretKeyMissing",
            Self::InvalidKey => "InvalidKey",
            Self::Unauthorized => "Unauthorized",
            Self::InsufficientScope => "InsufficientScope",
            Self::Forbidden => "Forbidden",
            Self::OktaUnreachable => "OktaUnreachable",
            Self::RateLimited => "RateLimited",
            Self::SyncFailed => "SyncFailed",
            Self::Suspended => "Suspended",
            Self::SnapshotShrank => "SnapshotShrank",
            Self::Synced => "Synced",
        }
    }

    /// Whether a `Ready=False` with this reason needs a person to act (Argo CD shows it as
    /// Degraded); the others resolve on their own (Progressing) or are intended (Suspended).
    pub fn needs_attention(self) -> bool {
        !matches!(
            self,
            Self::OktaUnreachable | Self::RateLimited | Self::Suspended | Self::Synced
        )
    }
}

impl std::fmt::Display for ConnectorReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connector spec that passed [`OktaCiamConnectorSpec::validate`], normalised for use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidConnectorSpec {
    /// The org's host name (with port, if one was given), lower case.
    pub domain: String,
    /// Email domains, lower case, without duplicates, in the order first given.
    pub email_domains: Vec<String>,
    /// The group-name filter; `None` when unset.
    pub group_name_filter: Option<String>,
    /// Time between syncs, at least [`MIN_SYNC_INTERVAL`].
    pub sync_interval: Duration,
    /// Time between full syncs, at least [`MIN_SYNC_INTERVAL`].
    pub full_sync_interval: Duration,
    /// Rate-limit settings as given (ranges checked).
    pub rate_limit: RateLimitSpec,
    /// How to authenticate.
    pub credentials: CredentialsSpec,
    /// Shrink-guard thresholds with defaults applied.
    pub shrink_guard: crate::sync::shrink::ShrinkThresholds,
}

impl ValidConnectorSpec {
    /// Whether syncs between full ones read the System Log (`fullSyncInterval` longer than
    /// `syncInterval`), so OAuth apps need `okta.logs.read` too.
    pub fn syncs_incrementally(&self) -> bool {
        self.full_sync_interval > self.sync_interval
    }
}

/// Which credentials a valid spec names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsSpec {
    /// An API token in this Secret key.
    ApiToken(SecretKeyRef),
    /// An OAuth service app (names and key as given; `scopes` empty when unset).
    OAuth(OAuthSpec),
}

impl CredentialsSpec {
    /// The Secret holding the token or the private key, and the key in it.
    pub fn secret(&self) -> (&str, &str) {
        match self {
            CredentialsSpec::ApiToken(r) => (&r.name, &r.key),
            CredentialsSpec::OAuth(o) => (
                &o.private_key_secret_ref.name,
                &o.private_key_secret_ref.key,
            ),
        }
    }
}

impl OktaCiamConnectorSpec {
    /// The Secrets the connector reads: the token's, the private key's, or both while a spec
    /// is invalid.
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        let token = self.token_secret_ref.as_ref().map(|r| r.name.as_str());
        let key = self
            .auth
            .as_ref()
            .map(|a| a.oauth.private_key_secret_ref.name.as_str());
        token.into_iter().chain(key)
    }

    /// Checks the spec again in code (objects may reach the operator without the schema having
    /// been applied, e.g. an older CRD) and normalises it. Every problem is reported, each
    /// naming its field.
    pub fn validate(&self) -> Result<ValidConnectorSpec> {
        let mut problems = Vec::new();

        let domain = self.domain.trim().to_ascii_lowercase();
        if !DOMAIN_RE.is_match(&domain) || domain.len() > 253 {
            problems.push(format!(
                "domain {:?} is not a host name such as company.okta.com (no scheme, path or spaces)",
                self.domain
            ));
        } else if domain
            .split('.')
            .next()
            .is_some_and(|label| label.ends_with("-admin"))
        {
            problems.push(format!(
                "domain {:?} is the Okta admin console host; use the org host without -admin",
                self.domain
            ));
        }

        let mut secret_ref = |field: &str, name: &str, key: &str| {
            if !SECRET_NAME_RE.is_match(name) {
                problems.push(format!("{field}.name {name:?} is not a valid Secret name"));
            }
            if !SECRET_KEY_RE.is_match(key) {
                problems.push(format!("{field}.key {key:?} is not a valid Secret key"));
            }
        };
        let credentials = match (&self.token_secret_ref, &self.auth) {
            (Some(r), None) => {
                secret_ref("tokenSecretRef", &r.name, &r.key);
                Some(CredentialsSpec::ApiToken(r.clone()))
            }
            (None, Some(AuthSpec { oauth })) => {
                let r = &oauth.private_key_secret_ref;
                secret_ref("auth.oauth.privateKeySecretRef", &r.name, &r.key);
                if !CLIENT_ID_RE.is_match(&oauth.client_id) || oauth.client_id.len() > 100 {
                    problems.push(format!(
                        "auth.oauth.clientId {:?} is not an Okta client ID",
                        oauth.client_id
                    ));
                }
                if oauth.key_id.as_deref().is_some_and(|k| k.trim().is_empty()) {
                    problems.push("auth.oauth.keyId must not be empty; leave it unset".to_owned());
                }
                for (i, scope) in oauth.scopes.iter().enumerate() {
                    if !SCOPE_RE.is_match(scope) {
                        problems.push(format!(
                            "auth.oauth.scopes[{i}] {scope:?} is not an Okta API scope such as okta.users.read"
                        ));
                    }
                }
                Some(CredentialsSpec::OAuth(oauth.clone()))
            }
            _ => {
                problems.push("set exactly one of tokenSecretRef and auth.oauth".to_owned());
                None
            }
        };

        let mut email_domains: Vec<String> = Vec::new();
        if self.email_domains.is_empty() {
            problems.push("emailDomains must list at least one domain".to_owned());
        }
        for (i, raw) in self.email_domains.iter().enumerate() {
            let d = raw.trim().to_ascii_lowercase();
            if !EMAIL_DOMAIN_RE.is_match(&d) || d.len() > 253 {
                problems.push(format!(
                    "emailDomains[{i}] {raw:?} is not a DNS name such as example.com"
                ));
            } else if !email_domains.contains(&d) {
                email_domains.push(d);
            }
        }

        let group_name_filter = match self.group_name_filter.as_deref().map(str::trim) {
            Some("") => {
                problems.push(
                    "groupNameFilter must not be empty; leave it unset to sync every group"
                        .to_owned(),
                );
                None
            }
            other => other.map(str::to_owned),
        };

        let sync_interval = match parse_duration(&self.sync_interval) {
            Ok(d) if d < MIN_SYNC_INTERVAL => {
                problems.push(format!(
                    "syncInterval {:?} is shorter than 1m",
                    self.sync_interval
                ));
                d
            }
            Ok(d) => d,
            Err(why) => {
                problems.push(format!("syncInterval {:?} {why}", self.sync_interval));
                MIN_SYNC_INTERVAL
            }
        };

        let full_sync_interval = match parse_duration(&self.full_sync_interval) {
            Ok(d) if d < MIN_SYNC_INTERVAL => {
                problems.push(format!(
                    "fullSyncInterval {:?} is shorter than 1m",
                    self.full_sync_interval
                ));
                d
            }
            Ok(d) => d,
            Err(why) => {
                problems.push(format!(
                    "fullSyncInterval {:?} {why}",
                    self.full_sync_interval
                ));
                MIN_SYNC_INTERVAL
            }
        };

        let rate_limit = self.rate_limit.unwrap_or_default();
        if let Some(n) = rate_limit.max_concurrency.filter(|n| !(1..=75).contains(n)) {
            problems.push(format!("rateLimit.maxConcurrency {n} is outside 1..75"));
        }
        if let Some(n) = rate_limit.budget_percent.filter(|n| !(1..=100).contains(n)) {
            problems.push(format!("rateLimit.budgetPercent {n} is outside 1..100"));
        }

        let guard = self.shrink_guard.unwrap_or_default();
        let percent = |field: &str, v: Option<i32>, problems: &mut Vec<String>| match v {
            None => DEFAULT_MAX_DROP_PERCENT,
            Some(n) => u8::try_from(n)
                .ok()
                .filter(|n| *n <= 100)
                .unwrap_or_else(|| {
                    problems.push(format!("shrinkGuard.{field} {n} is outside 0..100"));
                    100
                }),
        };
        let shrink_guard = crate::sync::shrink::ShrinkThresholds {
            max_user_drop_percent: percent(
                "maxUserDropPercent",
                guard.max_user_drop_percent,
                &mut problems,
            ),
            max_group_drop_percent: percent(
                "maxGroupDropPercent",
                guard.max_group_drop_percent,
                &mut problems,
            ),
            min_previous_count: match guard.min_previous_count {
                None => DEFAULT_MIN_PREVIOUS_COUNT,
                Some(n) => u64::try_from(n).unwrap_or_else(|_| {
                    problems.push(format!("shrinkGuard.minPreviousCount {n} is negative"));
                    0
                }),
            },
        };

        let Some(credentials) = credentials.filter(|_| problems.is_empty()) else {
            return Err(Error::InvalidSpec(problems));
        };
        Ok(ValidConnectorSpec {
            credentials,
            domain,
            email_domains,
            group_name_filter,
            sync_interval,
            full_sync_interval,
            rate_limit,
            shrink_guard,
        })
    }
}

/// Parses a duration in the syntax [`DURATION_PATTERN`] allows (`1h30m`, `90s`), explaining
/// what is wrong otherwise. Shared by both kinds.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    if !DURATION_RE.is_match(text) {
        return Err("is not a duration such as 30m, 1h or 1h30m (units h, m, s)".to_owned());
    }
    let go: kube::core::Duration = text
        .parse()
        .map_err(|e| format!("is not a duration: {e}"))?;
    Ok(go.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> OktaCiamConnectorSpec {
        serde_json::from_value(serde_json::json!({
            "domain": "Acme.okta.com",
            "tokenSecretRef": {"name": "okta-token"},
            "emailDomains": ["Example.COM", "example.com", "corp.example.org"],
        }))
        .unwrap()
    }

    fn problems(spec: &OktaCiamConnectorSpec) -> Vec<String> {
        match spec.validate() {
            Err(Error::InvalidSpec(p)) => p,
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
    }

    #[test]
    fn defaults_apply_when_deserialising_a_minimal_spec() {
        let s = spec();
        assert_eq!(s.token_secret_ref.unwrap().key, "apiToken");
        assert_eq!(s.sync_interval, "1h");
        assert!(!s.provisioning && !s.suspend);
        assert_eq!(s.rate_limit, None);
    }

    #[test]
    fn valid_spec_is_normalised() {
        let v = spec().validate().unwrap();
        assert_eq!(v.domain, "acme.okta.com");
        assert_eq!(v.email_domains, ["example.com", "corp.example.org"]);
        assert_eq!(v.sync_interval, Duration::from_secs(3600));
        assert_eq!(v.full_sync_interval, Duration::from_secs(24 * 3600));
        assert_eq!(v.group_name_filter, None);
        assert_eq!(
            v.shrink_guard,
            crate::sync::shrink::ShrinkThresholds {
                max_user_drop_percent: 50,
                max_group_drop_percent: 50,
                min_previous_count: 10,
            }
        );
    }

    #[test]
    fn loopback_emulator_host_with_port_is_accepted() {
        let mut s = spec();
        s.domain = "127.0.0.1:41234".into();
        assert_eq!(s.validate().unwrap().domain, "127.0.0.1:41234");
    }

    #[test]
    fn bad_domains_are_rejected_with_the_field_named() {
        for bad in [
            "https://acme.okta.com",
            "acme.okta.com/api",
            "acme",
            "acme..okta.com",
            "-a.okta.com",
            "",
        ] {
            let mut s = spec();
            s.domain = bad.into();
            let p = problems(&s);
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert!(p[0].starts_with("domain "), "{p:?}");
        }
        let mut s = spec();
        s.domain = "acme-admin.okta.com".into();
        assert!(problems(&s)[0].contains("admin console"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut s = spec();
        s.email_domains = vec!["example.com".into(), "not a domain".into(), "@x.com".into()];
        s.sync_interval = "30s".into();
        s.rate_limit = Some(RateLimitSpec {
            max_concurrency: Some(76),
            budget_percent: Some(0),
        });
        s.group_name_filter = Some("  ".into());
        s.token_secret_ref.as_mut().unwrap().key = "bad key".into();
        s.shrink_guard = Some(ShrinkGuardSpec {
            max_user_drop_percent: Some(101),
            max_group_drop_percent: Some(-1),
            min_previous_count: Some(-5),
        });
        let p = problems(&s);
        assert_eq!(p.len(), 10, "{p:?}");
        assert!(p.iter().any(|m| m.contains("maxUserDropPercent 101")));
        assert!(p.iter().any(|m| m.contains("maxGroupDropPercent -1")));
        assert!(p.iter().any(|m| m.contains("minPreviousCount -5")));
        assert!(p.iter().any(|m| m.starts_with("emailDomains[1]")));
        assert!(p.iter().any(|m| m.starts_with("emailDomains[2]")));
        assert!(p.iter().any(|m| m.contains("shorter than 1m")));
        assert!(p.iter().any(|m| m.contains("maxConcurrency 76")));
        assert!(p.iter().any(|m| m.contains("budgetPercent 0")));
        assert!(p.iter().any(|m| m.starts_with("groupNameFilter")));
        assert!(p.iter().any(|m| m.starts_with("tokenSecretRef.key")));
        let msg = Error::InvalidSpec(p).to_string();
        assert!(msg.starts_with("invalid spec: "));
    }

    #[test]
    fn oauth_replaces_the_token_and_is_checked() {
        let mut s = spec();
        let oauth: OAuthSpec = serde_json::from_value(serde_json::json!({
            "clientId": "0oa1service",
            "privateKeySecretRef": {"name": "okta-key"},
            "scopes": ["okta.users.read"],
        }))
        .unwrap();
        assert_eq!(oauth.private_key_secret_ref.key, "privateKey");
        s.auth = Some(AuthSpec {
            oauth: oauth.clone(),
        });
        assert_eq!(
            problems(&s),
            ["set exactly one of tokenSecretRef and auth.oauth"]
        );
        s.token_secret_ref = None;
        let v = s.validate().unwrap();
        assert_eq!(v.credentials.secret(), ("okta-key", "privateKey"));
        s.auth = None;
        assert_eq!(
            problems(&s),
            ["set exactly one of tokenSecretRef and auth.oauth"]
        );
        let mut bad = oauth;
        bad.client_id = "0oa 1".into();
        bad.scopes = vec!["users.read".into()];
        bad.key_id = Some(" ".into());
        bad.private_key_secret_ref.key = "a key".into();
        s.auth = Some(AuthSpec { oauth: bad });
        let p = problems(&s);
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p.iter().any(|m| m.starts_with("auth.oauth.clientId")));
        assert!(p.iter().any(|m| m.starts_with("auth.oauth.scopes[0]")));
        assert!(p.iter().any(|m| m.starts_with("auth.oauth.keyId")));
        assert!(
            p.iter()
                .any(|m| m.starts_with("auth.oauth.privateKeySecretRef.key"))
        );
    }

    #[test]
    fn empty_email_domains_are_rejected() {
        let mut s = spec();
        s.email_domains.clear();
        assert_eq!(problems(&s), ["emailDomains must list at least one domain"]);
    }

    #[test]
    fn durations_follow_the_schema_pattern() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1m"), Ok(MIN_SYNC_INTERVAL));
        for bad in ["", "1", "1.5h", "-1h", "1d", "1 h", "h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reason_strings_are_the_variant_names() {
        for r in ConnectorReason::ALL {
            assert_eq!(format!("{r:?}"), r.as_str());
        }
    }

    #[test]
    fn only_transient_and_intended_reasons_do_not_need_attention() {
        let calm: Vec<_> = ConnectorReason::ALL
            .into_iter()
            .filter(|r| !r.needs_attention())
            .collect();
        assert_eq!(
            calm,
            [
                ConnectorReason::OktaUnreachable,
                ConnectorReason::RateLimited,
                ConnectorReason::Suspended,
                ConnectorReason::Synced
            ]
        );
    }
}
