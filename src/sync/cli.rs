//! `okta-ciam-operator sync`: one sync, written to a snapshot file.
//!
//! Every flag also reads the environment variable the commercial connector used
//! (`BATON_*`), so an existing deployment's environment works unchanged.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::changes;
use super::engine::{self, SyncConfig};
use super::incremental;
use super::progress::{StderrProgress, summary_table};
use super::scope::{EmailDomains, GroupNameFilter};
use super::snapshot::Snapshot;
use crate::okta::oauth::{OAuthConfig, PrivateKey, scopes};
use crate::okta::{ApiToken, ClientOptions, Credentials, DomainPolicy, OktaClient, OrgDomain};

#[cfg(feature = "emulator")]
/// Email domains `sync --demo` scopes users by (the demo org also has look-alikes of these).
const DEMO_EMAIL_DOMAINS: &[&str] = &["example.com", "example.org"];
#[cfg(feature = "emulator")]
/// Group-name filter `sync --demo` uses (matches "Engineering ..." groups mid-name too).
const DEMO_GROUP_NAME_FILTER: &str = "eng";

/// Arguments of `okta-ciam-operator sync`.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// Okta org domain, e.g. acme.okta.com (host[:port], no scheme).
    #[arg(long, env = "BATON_DOMAIN")]
    pub domain: Option<String>,

    /// Email domains that bring users into scope (comma separated; at least one).
    #[arg(long, env = "BATON_EMAIL_DOMAINS", value_delimiter = ',')]
    pub email_domains: Vec<String>,

    /// Only groups whose name contains this (case-insensitive); all groups when unset.
    #[arg(long, env = "BATON_GROUP_NAME_FILTER")]
    pub group_name_filter: Option<String>,

    /// File holding the API token. Without it the token comes from BATON_API_TOKEN or
    /// OKTA_API_TOKEN (never from a flag, so it stays out of process listings).
    #[arg(long, env = "OKTA_CIAM_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,

    /// OAuth 2.0 service app client ID: authenticate with the app's private key
    /// (private_key_jwt, DPoP) instead of an API token.
    #[arg(
        long,
        env = "OKTA_CIAM_OAUTH_CLIENT_ID",
        requires = "oauth_private_key_file",
        conflicts_with = "api_token_file"
    )]
    pub oauth_client_id: Option<String>,

    /// File holding the service app's private key: PEM (PKCS#8 or RSA) or a private JWK.
    #[arg(
        long,
        env = "OKTA_CIAM_OAUTH_PRIVATE_KEY_FILE",
        requires = "oauth_client_id"
    )]
    pub oauth_private_key_file: Option<PathBuf>,

    /// `kid` of the app's public key registered in Okta.
    #[arg(long, env = "OKTA_CIAM_OAUTH_KEY_ID", requires = "oauth_client_id")]
    pub oauth_key_id: Option<String>,

    /// Scopes to request (comma separated); default: the read scopes a sync uses.
    #[arg(
        long,
        env = "OKTA_CIAM_OAUTH_SCOPES",
        value_delimiter = ',',
        requires = "oauth_client_id"
    )]
    pub oauth_scopes: Vec<String>,

    /// Where to write the snapshot (atomically).
    #[arg(long, short, default_value = "snapshot.json")]
    pub output: PathBuf,

    /// Allow org hosts under this custom domain suffix (repeatable).
    #[arg(
        long = "allow-domain",
        env = "OKTA_CIAM_ALLOW_DOMAINS",
        value_delimiter = ','
    )]
    pub allow_domains: Vec<String>,

    /// Allow plain http:// to 127.0.0.1, [::1] or localhost with a port (the emulator).
    #[arg(long)]
    pub insecure_loopback_http: bool,

    /// Requests in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_concurrency: u16,

    /// Use at most this percentage of each rate-limit bucket, leaving the rest to others.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub budget_percent: u8,

    /// Apply the System Log's changes to the snapshot already at --output instead of reading
    /// everything (falls back to a full sync, saying why, when the log cannot be trusted).
    #[arg(long)]
    pub incremental: bool,

    /// Most System Log events an incremental sync applies before it reads everything instead.
    #[arg(long, default_value_t = 10_000)]
    pub max_log_events: usize,

    /// Start the built-in emulated org on a loopback port and sync it with sample filters
    /// (no Okta needed). --domain and the token are ignored.
    #[cfg(feature = "emulator")]
    #[arg(long)]
    pub demo: bool,
}

/// Runs `sync` (or `sync --demo`).
pub async fn run(args: SyncArgs) -> anyhow::Result<()> {
    #[cfg(feature = "emulator")]
    if args.demo {
        return run_demo(args).await;
    }
    let domain_input = args
        .domain
        .as_deref()
        .context("--domain (or BATON_DOMAIN) is required")?;
    let email_domains = EmailDomains::new(&args.email_domains)?;
    let filter = GroupNameFilter::new(args.group_name_filter.as_deref().unwrap_or(""))?;
    let policy = DomainPolicy {
        allowed_suffixes: args.allow_domains.clone(),
        insecure_loopback_http: args.insecure_loopback_http,
    };
    let domain = OrgDomain::parse(domain_input, &policy)?;
    if args.insecure_loopback_http {
        tracing::warn!("plain HTTP to a loopback address is allowed (--insecure-loopback-http)");
    }
    let credentials = match &args.oauth_client_id {
        Some(client_id) => Credentials::OAuth(Box::new(read_oauth(client_id, &args)?)),
        None => Credentials::ApiToken(read_token(args.api_token_file.as_deref())?),
    };
    execute(domain, credentials, email_domains, filter, &args).await
}

#[cfg(feature = "emulator")]
async fn run_demo(args: SyncArgs) -> anyhow::Result<()> {
    use okta_emulator::{EmulatorConfig, Fixture};
    let fixture = Fixture::demo();
    let rate_limits = fixture.rate_limits();
    let handle = okta_emulator::start(EmulatorConfig {
        fixture,
        rate_limits,
    })
    .await
    .context("cannot start the demo emulator")?;
    eprintln!("demo: emulated Okta org listening on {}", handle.url());
    let policy = DomainPolicy {
        insecure_loopback_http: true,
        ..DomainPolicy::default()
    };
    let domain = OrgDomain::parse(&handle.domain(), &policy)?;
    let email_domains = if args.email_domains.is_empty() {
        EmailDomains::new(DEMO_EMAIL_DOMAINS)?
    } else {
        EmailDomains::new(&args.email_domains)?
    };
    let filter = GroupNameFilter::new(
        args.group_name_filter
            .as_deref()
            .unwrap_or(DEMO_GROUP_NAME_FILTER),
    )?;
    let token = Credentials::ApiToken(ApiToken::new(handle.token()));
    let result = execute(domain, token, email_domains, filter, &args).await;
    handle.shutdown().await;
    result
}

async fn execute(
    domain: OrgDomain,
    credentials: Credentials,
    email_domains: EmailDomains,
    group_name_filter: Option<GroupNameFilter>,
    args: &SyncArgs,
) -> anyhow::Result<()> {
    let options = ClientOptions {
        max_concurrency: usize::from(args.max_concurrency),
        budget_percent: args.budget_percent,
        ..ClientOptions::default()
    };
    let config = SyncConfig {
        email_domains,
        group_name_filter,
        concurrency: usize::from(args.max_concurrency),
    };
    let auth = credentials.into_auth(&domain, options.request_timeout)?;
    let client = OktaClient::new(domain, auth, options)?;
    // The change log is against the file being replaced, when it is of the same org and scope
    // (an unreadable or foreign file is simply replaced).
    let previous = Snapshot::read(&args.output).ok();
    let progress = StderrProgress::new();
    let snapshot = if args.incremental {
        incremental::sync_auto(
            &client,
            &config,
            previous.as_ref(),
            None,
            args.max_log_events,
            &progress,
        )
        .await?
    } else {
        let mut s = engine::sync(&client, &config, &progress).await?;
        if let Some(previous) = previous.filter(|p| p.same_scope(&s)) {
            s.changes = Some(changes::diff(previous.access(), s.access(), &|_| None));
        }
        s
    };
    snapshot.write_atomic(&args.output)?;
    print!("{}", summary_table(&snapshot));
    println!("snapshot written to {}", args.output.display());
    Ok(())
}

/// The service app's settings, its private key read from `--oauth-private-key-file`.
fn read_oauth(client_id: &str, args: &SyncArgs) -> anyhow::Result<OAuthConfig> {
    let path = args
        .oauth_private_key_file
        .as_deref()
        .context("--oauth-private-key-file is required with --oauth-client-id")?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the private key file {}", path.display()))?;
    let key = PrivateKey::parse(&text)
        .with_context(|| format!("the private key file {}", path.display()))?;
    // An empty OKTA_CIAM_OAUTH_SCOPES means unset, as for the other variables.
    let given: Vec<String> = args
        .oauth_scopes
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let scopes = if given.is_empty() {
        scopes::needed(false, args.incremental)
    } else {
        given
    };
    Ok(OAuthConfig {
        client_id: client_id.to_owned(),
        key,
        key_id: args.oauth_key_id.clone(),
        scopes,
    })
}

/// The token from `--api-token-file`, else `BATON_API_TOKEN`, else `OKTA_API_TOKEN`.
fn read_token(file: Option<&Path>) -> anyhow::Result<ApiToken> {
    let raw = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the API token file {}", path.display()))?,
        None => std::env::var("BATON_API_TOKEN")
            .or_else(|_| std::env::var("OKTA_API_TOKEN"))
            .map_err(|_| {
                anyhow::anyhow!(
                    "no API token: pass --api-token-file or set BATON_API_TOKEN or OKTA_API_TOKEN"
                )
            })?,
    };
    let token = raw.trim();
    anyhow::ensure!(!token.is_empty(), "the API token is empty");
    Ok(ApiToken::new(token.to_string()))
}
