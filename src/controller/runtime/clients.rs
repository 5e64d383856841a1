//! One Okta client per connector, shared by both reconcilers, plus each connector's index.
//!
//! The connector reconciler asks for a client with the settings it just read
//! ([`ClientRegistry::get_or_build`]); the client is rebuilt only when the domain, the token or
//! the rate-limit options changed, so the sync and the membership reconciler keep drawing on
//! one rate-limit budget. The token is never stored: only a keyed hash of it
//! ([`TokenFingerprint`]) to notice rotation.
//!
//! Okta limits rates and concurrent requests per org, so connectors on the same org domain
//! share one [`OrgBudget`] (rate-limit state and bound on requests in flight), kept while any
//! connector of that org remains. When their settings differ, the **smallest**
//! `max_concurrency` and the **smallest** `budget_percent` among them apply to all: the
//! most careful connector's promise to leave room for others holds, and no connector can
//! raise the org's load by asking for more.
//!
//! After each successful sync the connector reconciler stores its index (the registry's `I`,
//! by default the connector's [`ConnectorIndex`]) with [`ClientRegistry::set_index`]; the
//! membership reconciler reads it with [`ClientRegistry::index`] and can wait for changes
//! with [`ClientRegistry::subscribe`].

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use super::breaker::RevocationBreaker;
use crate::controller::connector::index::ConnectorIndex;
use crate::okta::{ApiToken, ClientOptions, Credentials, OktaClient, OrgBudget, OrgDomain};

/// Identifies a connector: `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectorKey {
    /// Namespace of the `OktaCiamConnector`.
    pub namespace: String,
    /// Name of the `OktaCiamConnector`.
    pub name: String,
}

impl ConnectorKey {
    /// Builds a key.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ConnectorKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ConnectorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A keyed hash of an API token, to notice a rotated token without keeping it. The key is
/// random per process, so the value means nothing outside it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenFingerprint(u64);

impl fmt::Debug for TokenFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenFingerprint({:016x})", self.0)
    }
}

/// Everything a connector's client is built from, with the token reduced to its fingerprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSettings {
    /// The org domain as normalised by the client ([`OrgDomain`]'s display form).
    pub domain: String,
    /// Fingerprint of the API token ([`ClientRegistry::fingerprint`]).
    pub token: TokenFingerprint,
    /// Effective maximum of concurrent requests (after defaults).
    pub max_concurrency: usize,
    /// Effective share of each rate-limit bucket the client may use, in percent.
    pub budget_percent: u8,
}

impl ClientSettings {
    /// Which settings differ from `old`.
    pub fn changes_from(&self, old: &ClientSettings) -> SettingsChange {
        SettingsChange {
            domain: self.domain != old.domain,
            token: self.token != old.token,
            rate_limits: self.max_concurrency != old.max_concurrency
                || self.budget_percent != old.budget_percent,
        }
    }
}

/// Which of a connector's client settings changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SettingsChange {
    /// The org domain.
    pub domain: bool,
    /// The API token.
    pub token: bool,
    /// `max_concurrency` or `budget_percent`.
    pub rate_limits: bool,
}

/// What [`ClientRegistry::get_or_build`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Obtained {
    /// The connector had no client: one was built.
    Built,
    /// The settings changed as said: a new client replaced the old one.
    Rebuilt(SettingsChange),
    /// The existing client was reused.
    Reused,
}

struct Entry<C, I> {
    settings: ClientSettings,
    client: C,
    index: Option<Arc<I>>,
}

/// Clients and indexes of every connector. Share it as `Arc<ClientRegistry>`. Generic only so
/// its bookkeeping can be tested without HTTP clients or a real index.
pub struct ClientRegistry<C = OktaClient, I = ConnectorIndex> {
    entries: Mutex<HashMap<ConnectorKey, Entry<C, I>>>,
    /// One budget per org domain in use; locked only while `entries` is held.
    orgs: Mutex<HashMap<String, OrgBudget>>,
    hasher: RandomState,
    changes: watch::Sender<u64>,
    /// Per-connector removal budgets; kept when a connector's client goes, so deleting and
    /// recreating a connector does not reset its window.
    revocations: RevocationBreaker,
}

impl<C, I> ClientRegistry<C, I> {
    fn lock(&self) -> MutexGuard<'_, HashMap<ConnectorKey, Entry<C, I>>> {
        // The map stays consistent even if a holder panicked: every update is a single insert
        // or remove.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_orgs(&self) -> MutexGuard<'_, HashMap<String, OrgBudget>> {
        self.orgs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The budget shared by the connectors on `domain` ([`ClientSettings::domain`]), if any
    /// connector uses that org.
    pub fn org_budget(&self, domain: &str) -> Option<OrgBudget> {
        let _entries = self.lock();
        self.lock_orgs().get(domain).cloned()
    }

    /// Brings the budgets of `domains` in line with the connectors now on them: the smallest
    /// limits apply, and an org no connector uses any more loses its budget. Called with the
    /// entries held, after every change to them.
    fn settle(&self, entries: &HashMap<ConnectorKey, Entry<C, I>>, domains: &[&str]) {
        let mut orgs = self.lock_orgs();
        for domain in domains {
            let limits = entries
                .values()
                .filter(|e| e.settings.domain == *domain)
                .map(|e| (e.settings.max_concurrency, e.settings.budget_percent))
                .reduce(|(c1, b1), (c2, b2)| (c1.min(c2), b1.min(b2)));
            match (limits, orgs.get(*domain)) {
                (None, _) => {
                    orgs.remove(*domain);
                }
                (Some((c, b)), Some(budget)) => {
                    if budget.limits() != (c.max(1), b.clamp(1, 100)) {
                        budget.set_limits(c, b);
                    }
                }
                (Some(_), None) => {}
            }
        }
    }
}

impl<C, I> fmt::Debug for ClientRegistry<C, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<String> = self.lock().keys().map(ToString::to_string).collect();
        keys.sort();
        f.debug_struct("ClientRegistry")
            .field("connectors", &keys)
            .finish_non_exhaustive()
    }
}

impl<C: Clone, I> Default for ClientRegistry<C, I> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Clone, I> ClientRegistry<C, I> {
    /// An empty registry with a fresh fingerprint key.
    pub fn new() -> Self {
        ClientRegistry {
            entries: Mutex::new(HashMap::new()),
            orgs: Mutex::new(HashMap::new()),
            hasher: RandomState::new(),
            changes: watch::channel(0).0,
            revocations: RevocationBreaker::default(),
        }
    }

    /// The mass-revocation circuit breaker every removal path asks for budget
    /// ([`RevocationBreaker::request`]).
    pub fn revocations(&self) -> &RevocationBreaker {
        &self.revocations
    }

    fn bump(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The fingerprint of `token` for [`ClientSettings::token`].
    pub fn fingerprint(&self, token: &str) -> TokenFingerprint {
        TokenFingerprint(self.hasher.hash_one(token))
    }

    /// Returns the connector's client, building it with `build` when the connector has none or
    /// its settings differ from those the current client was built with. A changed domain also
    /// drops the index (it described another org); a new token or new rate-limit options keep
    /// it. When `build` fails the previous client and index are left as they were.
    pub fn get_or_build<E>(
        &self,
        key: &ConnectorKey,
        settings: ClientSettings,
        build: impl FnOnce() -> Result<C, E>,
    ) -> Result<(C, Obtained), E> {
        self.get_or_build_in_org(key, settings, |_| build())
    }

    /// [`ClientRegistry::get_or_build`], handing `build` the budget of the org the settings
    /// name, shared with every other connector on that org (created for the first one).
    pub fn get_or_build_in_org<E>(
        &self,
        key: &ConnectorKey,
        settings: ClientSettings,
        build: impl FnOnce(&OrgBudget) -> Result<C, E>,
    ) -> Result<(C, Obtained), E> {
        let mut entries = self.lock();
        let (index, obtained, old_domain) = match entries.get(key) {
            Some(entry) if entry.settings == settings => {
                return Ok((entry.client.clone(), Obtained::Reused));
            }
            Some(entry) => {
                let change = settings.changes_from(&entry.settings);
                // A changed domain drops the index (it described another org) and leaves the
                // old org's budget to be settled.
                let index = (!change.domain).then(|| entry.index.clone()).flatten();
                let old_domain = change.domain.then(|| entry.settings.domain.clone());
                (index, Obtained::Rebuilt(change), old_domain)
            }
            None => (None, Obtained::Built, None),
        };
        let budget = self
            .lock_orgs()
            .entry(settings.domain.clone())
            .or_insert_with(|| OrgBudget::new(settings.max_concurrency, settings.budget_percent))
            .clone();
        let domain = settings.domain.clone();
        let client = match build(&budget) {
            Ok(client) => client,
            Err(e) => {
                // A budget made for this attempt alone goes again.
                self.settle(&entries, &[&domain]);
                return Err(e);
            }
        };
        entries.insert(
            key.clone(),
            Entry {
                settings,
                client: client.clone(),
                index,
            },
        );
        let mut touched = vec![domain.as_str()];
        touched.extend(old_domain.as_deref());
        self.settle(&entries, &touched);
        drop(entries);
        self.bump();
        Ok((client, obtained))
    }

    /// The connector's current client, if it has one.
    pub fn client(&self, key: &ConnectorKey) -> Option<C> {
        self.lock().get(key).map(|e| e.client.clone())
    }

    /// Stores the connector's index, replacing the previous one. Returns `false` (and stores
    /// nothing) when the connector has no client, e.g. because it was deleted meanwhile.
    pub fn set_index(&self, key: &ConnectorKey, index: Arc<I>) -> bool {
        let stored = match self.lock().get_mut(key) {
            Some(entry) => {
                entry.index = Some(index);
                true
            }
            None => false,
        };
        if stored {
            self.bump();
        }
        stored
    }

    /// The connector's index, if one is stored.
    pub fn index(&self, key: &ConnectorKey) -> Option<Arc<I>> {
        self.lock().get(key)?.index.clone()
    }

    /// Drops the connector's index (e.g. its filters changed) but keeps its client.
    pub fn invalidate_index(&self, key: &ConnectorKey) {
        let dropped = self
            .lock()
            .get_mut(key)
            .is_some_and(|e| e.index.take().is_some());
        if dropped {
            self.bump();
        }
    }

    /// Forgets a deleted connector's client and index. Returns whether it was known.
    pub fn remove(&self, key: &ConnectorKey) -> bool {
        let mut entries = self.lock();
        let removed = match entries.remove(key) {
            Some(entry) => {
                self.settle(&entries, &[&entry.settings.domain]);
                true
            }
            None => false,
        };
        drop(entries);
        if removed {
            self.bump();
        }
        removed
    }

    /// The connectors that have a client, sorted.
    pub fn keys(&self) -> Vec<ConnectorKey> {
        let mut keys: Vec<ConnectorKey> = self.lock().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// A receiver whose value changes whenever any client or index is built, replaced or
    /// removed; the membership reconciler waits on it for an index to appear.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

impl<I> ClientRegistry<OktaClient, I> {
    /// [`ClientRegistry::okta_client_for`] with an API token.
    pub fn okta_client(
        &self,
        key: &ConnectorKey,
        domain: &OrgDomain,
        token: &ApiToken,
        options: ClientOptions,
    ) -> crate::okta::Result<(OktaClient, Obtained)> {
        self.okta_client_for(key, domain, Credentials::ApiToken(token.clone()), options)
    }

    /// The connector's Okta client for `domain`, `credentials` and `options`, built (or
    /// rebuilt) only when one of them changed (a new token, or OAuth settings or key). Only `max_concurrency` and `budget_percent` of
    /// `options` are compared: the other options are the operator's own and do not change
    /// while it runs. The client paces on the org's shared [`OrgBudget`], whose limits are
    /// the smallest among the org's connectors.
    pub fn okta_client_for(
        &self,
        key: &ConnectorKey,
        domain: &OrgDomain,
        credentials: Credentials,
        options: ClientOptions,
    ) -> crate::okta::Result<(OktaClient, Obtained)> {
        let settings = ClientSettings {
            domain: domain.to_string(),
            token: self.fingerprint(&credentials.identity()),
            max_concurrency: options.max_concurrency,
            budget_percent: options.budget_percent,
        };
        self.get_or_build_in_org(key, settings, |budget| {
            let auth = credentials.into_auth(domain, options.request_timeout)?;
            OktaClient::with_budget(domain.clone(), auth, options, budget.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A stand-in client that remembers which build produced it.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct FakeClient(u32);

    fn settings<I>(
        reg: &ClientRegistry<FakeClient, I>,
        domain: &str,
        token: &str,
    ) -> ClientSettings {
        ClientSettings {
            domain: domain.into(),
            token: reg.fingerprint(token),
            max_concurrency: 8,
            budget_percent: 50,
        }
    }

    /// Obtains the client for `domain` and `token`, counting builds in `builds`.
    fn obtain<I>(
        reg: &ClientRegistry<FakeClient, I>,
        key: &ConnectorKey,
        domain: &str,
        token: &str,
        builds: &Cell<u32>,
    ) -> (FakeClient, Obtained) {
        reg.get_or_build(key, settings(reg, domain, token), build_counter(builds))
            .unwrap()
    }

    fn build_counter(counter: &Cell<u32>) -> impl FnOnce() -> Result<FakeClient, String> + '_ {
        move || {
            counter.set(counter.get() + 1);
            Ok(FakeClient(counter.get()))
        }
    }

    #[test]
    fn builds_once_and_reuses_while_settings_are_unchanged() {
        let reg: ClientRegistry<FakeClient, ()> = ClientRegistry::new();
        let key = ConnectorKey::new("ns", "corp");
        let builds = Cell::new(0);
        let s = settings(&reg, "corp.okta.com", "t1");
        let (c1, o1) = reg
            .get_or_build(&key, s.clone(), build_counter(&builds))
            .unwrap();
        let (c2, o2) = reg.get_or_build(&key, s, build_counter(&builds)).unwrap();
        assert_eq!((o1, o2), (Obtained::Built, Obtained::Reused));
        assert_eq!(c1, c2);
        assert_eq!(builds.get(), 1);
        assert_eq!(reg.client(&key), Some(FakeClient(1)));
    }

    #[test]
    fn rebuilds_on_token_or_rate_limit_change_and_keeps_the_index() {
        let reg = ClientRegistry::new();
        let key = ConnectorKey::new("ns", "corp");
        let builds = Cell::new(0);
        obtain(&reg, &key, "corp.okta.com", "t1", &builds);
        assert!(reg.set_index(&key, Arc::new(vec!["u1".to_string()])));

        let (c, o) = obtain(&reg, &key, "corp.okta.com", "t2", &builds);
        let token = SettingsChange {
            token: true,
            ..SettingsChange::default()
        };
        assert_eq!((c, o), (FakeClient(2), Obtained::Rebuilt(token)));
        assert_eq!(reg.index(&key).unwrap().as_slice(), ["u1"]);

        let mut faster = settings(&reg, "corp.okta.com", "t2");
        faster.max_concurrency = 2;
        let (c, o) = reg
            .get_or_build(&key, faster, build_counter(&builds))
            .unwrap();
        let rate_limits = SettingsChange {
            rate_limits: true,
            ..SettingsChange::default()
        };
        assert_eq!((c, o), (FakeClient(3), Obtained::Rebuilt(rate_limits)));
        assert!(reg.index(&key).is_some());
    }

    #[test]
    fn a_new_domain_drops_the_index() {
        let reg = ClientRegistry::new();
        let key = ConnectorKey::new("ns", "corp");
        let builds = Cell::new(0);
        obtain(&reg, &key, "a.okta.com", "t", &builds);
        reg.set_index(&key, Arc::new(1u32));
        obtain(&reg, &key, "b.okta.com", "t", &builds);
        assert!(reg.index(&key).is_none());
    }

    #[test]
    fn a_failed_build_keeps_the_previous_client() {
        let reg = ClientRegistry::new();
        let key = ConnectorKey::new("ns", "corp");
        let builds = Cell::new(0);
        obtain(&reg, &key, "a.okta.com", "t", &builds);
        reg.set_index(&key, Arc::new(7u8));
        let err = reg
            .get_or_build(&key, settings(&reg, "b.okta.com", "t"), || {
                Err::<FakeClient, _>("bad domain".to_string())
            })
            .unwrap_err();
        assert_eq!(err, "bad domain");
        assert_eq!(reg.client(&key), Some(FakeClient(1)));
        assert_eq!(reg.index(&key).as_deref(), Some(&7));
        // The old settings still match, so the next call reuses.
        let (_, o) = obtain(&reg, &key, "a.okta.com", "t", &builds);
        assert_eq!(o, Obtained::Reused);
    }

    #[test]
    fn invalidation_drops_the_index_and_keeps_the_client() {
        let reg = ClientRegistry::new();
        let key = ConnectorKey::new("ns", "corp");
        let builds = Cell::new(0);
        obtain(&reg, &key, "a.okta.com", "t", &builds);
        reg.set_index(&key, Arc::new(5u64));
        assert_eq!(reg.index(&key).as_deref(), Some(&5));
        reg.invalidate_index(&key);
        assert!(reg.index(&key).is_none());
        assert!(
            reg.client(&key).is_some(),
            "invalidating the index keeps the client"
        );
    }

    #[test]
    fn removal_forgets_client_and_index_and_late_indexes_are_refused() {
        let reg = ClientRegistry::new();
        let a = ConnectorKey::new("ns", "a");
        let b = ConnectorKey::new("ns", "b");
        let builds = Cell::new(0);
        obtain(&reg, &a, "a.okta.com", "t", &builds);
        obtain(&reg, &b, "b.okta.com", "t", &builds);
        assert_eq!(reg.keys(), vec![a.clone(), b.clone()]);
        assert!(reg.remove(&a));
        assert!(!reg.remove(&a));
        assert!(reg.client(&a).is_none());
        assert!(
            !reg.set_index(&a, Arc::new(1u8)),
            "a deleted connector gets no index"
        );
        assert_eq!(reg.keys(), vec![b]);
    }

    #[test]
    fn fingerprints_differ_per_token_and_never_show_the_token() {
        let reg: ClientRegistry<FakeClient, ()> = ClientRegistry::new();
        let secret = "00aSecretTokenValue";
        assert_eq!(reg.fingerprint(secret), reg.fingerprint(secret));
        assert_ne!(reg.fingerprint(secret), reg.fingerprint("00another"));
        let shown = format!("{:?}", settings(&reg, "a.okta.com", secret));
        assert!(!shown.contains(secret), "{shown}");
    }

    #[test]
    fn okta_clients_are_rebuilt_only_when_domain_token_or_rate_limits_change() {
        let reg: ClientRegistry = ClientRegistry::new();
        let key = ConnectorKey::new("ns", "corp");
        let policy = crate::okta::DomainPolicy::default();
        let domain = OrgDomain::parse("corp.okta.com", &policy).unwrap();
        let other = OrgDomain::parse("other.okta.com", &policy).unwrap();
        let token = ApiToken::new("token-1".into());
        let get = |domain: &OrgDomain, token: &ApiToken, options: ClientOptions| {
            reg.okta_client(&key, domain, token, options).unwrap().1
        };
        assert_eq!(
            get(&domain, &token, ClientOptions::default()),
            Obtained::Built
        );
        assert_eq!(
            get(&domain, &token, ClientOptions::default()),
            Obtained::Reused
        );
        let retries = ClientOptions {
            max_retries: 1,
            ..ClientOptions::default()
        };
        assert_eq!(get(&domain, &token, retries), Obtained::Reused);
        let budget = ClientOptions {
            budget_percent: 20,
            ..ClientOptions::default()
        };
        let change = |domain, token, rate_limits| {
            Obtained::Rebuilt(SettingsChange {
                domain,
                token,
                rate_limits,
            })
        };
        assert_eq!(
            get(&domain, &token, budget.clone()),
            change(false, false, true)
        );
        let rotated = ApiToken::new("token-2".into());
        assert_eq!(
            get(&domain, &rotated, budget.clone()),
            change(false, true, false)
        );
        assert_eq!(
            get(&other, &rotated, budget.clone()),
            change(true, false, false)
        );
        // Moving to OAuth is a change of credentials, like a new token; so is a new key.
        let oauth = || crate::okta::OAuthConfig {
            client_id: "0oa1".into(),
            key: crate::okta::PrivateKey::generate_es256().0,
            key_id: None,
            scopes: vec!["okta.users.read".into()],
        };
        let get_oauth = |config| {
            reg.okta_client_for(
                &key,
                &other,
                Credentials::OAuth(Box::new(config)),
                budget.clone(),
            )
            .unwrap()
            .1
        };
        assert_eq!(get_oauth(oauth()), change(false, true, false));
        assert_eq!(get_oauth(oauth()), change(false, true, false));
    }

    fn with<I>(
        reg: &ClientRegistry<FakeClient, I>,
        domain: &str,
        token: &str,
        max_concurrency: usize,
        budget_percent: u8,
    ) -> ClientSettings {
        ClientSettings {
            max_concurrency,
            budget_percent,
            ..settings(reg, domain, token)
        }
    }

    #[test]
    fn connectors_of_one_org_share_a_budget_with_the_smallest_limits_until_the_last_goes() {
        let reg: ClientRegistry<FakeClient, ()> = ClientRegistry::new();
        let (a, b, c) = (
            ConnectorKey::new("ns", "a"),
            ConnectorKey::new("team", "b"),
            ConnectorKey::new("ns", "c"),
        );
        let handed = std::cell::RefCell::new(Vec::new());
        let build = |budget: &OrgBudget| {
            handed.borrow_mut().push(budget.clone());
            Ok::<_, String>(FakeClient(handed.borrow().len() as u32))
        };
        reg.get_or_build_in_org(&a, with(&reg, "corp.okta.com", "t1", 8, 50), build)
            .unwrap();
        let corp = reg.org_budget("corp.okta.com").unwrap();
        assert_eq!(corp.limits(), (8, 50));
        // A second connector of the same org (its own token) joins the same budget, and its
        // smaller concurrency applies to both; its larger share does not.
        reg.get_or_build_in_org(&b, with(&reg, "corp.okta.com", "t2", 3, 70), build)
            .unwrap();
        assert!(handed.borrow()[1].same_as(&corp));
        assert_eq!(corp.limits(), (3, 50));
        // Another org has its own.
        reg.get_or_build_in_org(&c, with(&reg, "other.okta.com", "t1", 8, 50), build)
            .unwrap();
        assert!(!handed.borrow()[2].same_as(&corp));
        // A rotated token rebuilds the client on the same budget.
        reg.get_or_build_in_org(&a, with(&reg, "corp.okta.com", "t9", 8, 20), build)
            .unwrap();
        assert!(handed.borrow()[3].same_as(&corp));
        assert_eq!(corp.limits(), (3, 20));
        // The careful connector leaves: the other's limits apply again.
        assert!(reg.remove(&b));
        assert_eq!(corp.limits(), (8, 20));
        // The last connector of the org leaves: the budget goes.
        assert!(reg.remove(&a));
        assert!(reg.org_budget("corp.okta.com").is_none());
        assert!(reg.org_budget("other.okta.com").is_some());
        // Moving a connector to another org settles both; a failed build leaves no budget.
        reg.get_or_build_in_org(&c, with(&reg, "third.okta.com", "t1", 8, 50), build)
            .unwrap();
        assert!(reg.org_budget("other.okta.com").is_none());
        assert!(reg.org_budget("third.okta.com").is_some());
        let failed = reg.get_or_build_in_org(&a, with(&reg, "new.okta.com", "t", 8, 50), |_| {
            Err::<FakeClient, _>("bad".to_string())
        });
        assert!(failed.is_err());
        assert!(reg.org_budget("new.okta.com").is_none());
    }

    #[tokio::test]
    async fn subscribers_see_index_changes() {
        let reg = ClientRegistry::new();
        let key = ConnectorKey::new("ns", "corp");
        let mut rx = reg.subscribe();
        rx.borrow_and_update();
        let builds = Cell::new(0);
        obtain(&reg, &key, "a.okta.com", "t", &builds);
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        obtain(&reg, &key, "a.okta.com", "t", &builds);
        assert!(!rx.has_changed().unwrap(), "reuse is not a change");
        reg.set_index(&key, Arc::new(()));
        assert!(rx.has_changed().unwrap());
    }
}
