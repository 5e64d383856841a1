//! The in-process handle: start, inspect, mutate and stop an emulator from Rust tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::server::{EmulatorStats, Faults, Shared, lock, now_ms, router};
use super::state::{Assignee, Org};
use super::syslog::Actor;
use super::{EmulatorConfig, Error, Result};

/// A running emulator. Dropping it without [`EmulatorHandle::shutdown`] stops serving too.
pub struct EmulatorHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    first_token: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for EmulatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Starts an emulator on an ephemeral loopback port (`127.0.0.1:0`).
pub async fn start(config: EmulatorConfig) -> Result<EmulatorHandle> {
    serve(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Starts an emulator listening on `listen`, serving in a background task.
pub async fn serve(config: EmulatorConfig, listen: SocketAddr) -> Result<EmulatorHandle> {
    let org = Org::from_fixture(&config.fixture)?;
    let first_token = config.fixture.tokens.first().cloned().unwrap_or_default();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| Error::Bind {
            addr: listen.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: listen.to_string(),
        source,
    })?;
    let shared = Arc::new(Shared::new(
        org,
        config.rate_limits,
        format!("http://{addr}"),
        &config.fixture.service_apps,
    ));
    let app = router(shared.clone());
    let cancel = shared.cancel.clone();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "emulator server stopped");
        }
    });
    tracing::info!(%addr, "okta emulator listening");
    Ok(EmulatorHandle {
        shared,
        addr,
        first_token,
        task: Some(task),
    })
}

pub(crate) fn revoke(shared: &Shared, token: &str) -> bool {
    shared
        .org
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .tokens
        .remove(token)
}

pub(crate) fn add_token(shared: &Shared, token: &str) -> bool {
    shared
        .org
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .tokens
        .insert(token.to_string())
}

pub(crate) fn change_membership(
    shared: &Shared,
    group_id: &str,
    user_id: &str,
    add: bool,
) -> Result<bool> {
    let mut org = shared.org.write().unwrap_or_else(|e| e.into_inner());
    let g = org
        .group_index(group_id)
        .ok_or_else(|| Error::UnknownGroup(group_id.into()))?;
    let u = org
        .user_index_by_id(user_id)
        .ok_or_else(|| Error::UnknownUser(user_id.into()))?;
    Ok(if add {
        org.add_member(g, u, &Actor::control(), now_ms())
    } else {
        org.remove_member(g, u, &Actor::control(), now_ms())
    })
}

pub(crate) fn set_status(shared: &Shared, user_id: &str, status: &str) -> Result<()> {
    let mut org = shared.org.write().unwrap_or_else(|e| e.into_inner());
    let u = org
        .user_index_by_id(user_id)
        .ok_or_else(|| Error::UnknownUser(user_id.into()))?;
    org.set_user_status(u, status, &Actor::control(), now_ms())
}

pub(crate) fn set_profile(shared: &Shared, user_id: &str, login: &str, email: &str) -> Result<()> {
    let mut org = shared.org.write().unwrap_or_else(|e| e.into_inner());
    let u = org
        .user_index_by_id(user_id)
        .ok_or_else(|| Error::UnknownUser(user_id.into()))?;
    org.set_user_profile(u, login, email, &Actor::control(), now_ms())
}

pub(crate) fn set_standard_role(
    shared: &Shared,
    principal_id: &str,
    role_type: &str,
    assign: bool,
) -> Result<bool> {
    let mut org = shared.org.write().unwrap_or_else(|e| e.into_inner());
    let assignee = match (
        org.user_index_by_id(principal_id),
        org.group_index(principal_id),
    ) {
        (Some(u), _) => Assignee::User(u),
        (None, Some(g)) => Assignee::Group(g),
        (None, None) => return Err(Error::UnknownUser(principal_id.into())),
    };
    org.set_standard_role(assignee, role_type, assign, &Actor::control(), now_ms())
}

pub(crate) fn rename(shared: &Shared, group_id: &str, name: &str) -> Result<()> {
    let mut org = shared.org.write().unwrap_or_else(|e| e.into_inner());
    let g = org
        .group_index(group_id)
        .ok_or_else(|| Error::UnknownGroup(group_id.into()))?;
    org.rename_group(g, name, &Actor::control(), now_ms());
    Ok(())
}

impl EmulatorHandle {
    fn org(&self) -> std::sync::RwLockReadGuard<'_, Org> {
        self.shared.org.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Base URL, `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> url::Url {
        url::Url::parse(&format!("{}/", self.shared.base)).expect("loopback URL is valid")
    }

    /// The org "domain" as the client takes it: `127.0.0.1:PORT`.
    pub fn domain(&self) -> String {
        self.addr.to_string()
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The fixture's first token (empty when the fixture has none).
    pub fn token(&self) -> String {
        self.first_token.clone()
    }

    /// Request counters so far.
    pub fn stats(&self) -> EmulatorStats {
        lock(&self.shared.stats).clone()
    }

    /// The whole org as JSON (same as `GET /__emulator/state`).
    pub fn state_json(&self) -> serde_json::Value {
        self.org().state_json()
    }

    /// Replaces the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.shared.faults) = faults;
    }

    /// The injected faults now, with the `*_next` counts still unconsumed.
    pub fn faults(&self) -> Faults {
        lock(&self.shared.faults).clone()
    }

    /// Makes every OAuth access token issued so far expire now (clients must fetch new ones).
    pub fn expire_access_tokens(&self) {
        lock(&self.shared.oauth).expire_tokens(now_ms().div_euclid(1000));
    }

    /// Replaces the public keys registered for service app `client_id` (key rotation in
    /// Okta). False when no such app exists.
    pub fn set_service_app_keys(&self, client_id: &str, jwks: Vec<serde_json::Value>) -> bool {
        lock(&self.shared.oauth).set_keys(client_id, jwks)
    }

    /// Token requests received at `/oauth2/v1/token` and access tokens issued.
    pub fn oauth_counts(&self) -> (u64, u64) {
        let oauth = lock(&self.shared.oauth);
        (oauth.token_requests, oauth.tokens_issued)
    }

    /// Stops accepting `token`; returns whether it was accepted before.
    pub fn revoke_token(&self, token: &str) -> bool {
        revoke(&self.shared, token)
    }

    /// Starts accepting `token`; returns whether it is new.
    pub fn add_token(&self, token: &str) -> bool {
        add_token(&self.shared, token)
    }

    /// Removes a membership as if changed outside the operator (any group type); returns
    /// whether it existed.
    pub fn remove_membership(&self, group_id: &str, user_id: &str) -> Result<bool> {
        change_membership(&self.shared, group_id, user_id, false)
    }

    /// Adds a membership as if changed outside the operator; returns whether it is new.
    pub fn add_membership(&self, group_id: &str, user_id: &str) -> Result<bool> {
        change_membership(&self.shared, group_id, user_id, true)
    }

    /// Sets a user's status, e.g. `SUSPENDED`.
    pub fn set_user_status(&self, user_id: &str, status: &str) -> Result<()> {
        set_status(&self.shared, user_id, status)
    }

    /// Changes a user's `profile.login` and `profile.email`, e.g. out of the email domains.
    pub fn set_user_profile(&self, user_id: &str, login: &str, email: &str) -> Result<()> {
        set_profile(&self.shared, user_id, login, email)
    }

    /// Renames a group.
    pub fn rename_group(&self, group_id: &str, name: &str) -> Result<()> {
        rename(&self.shared, group_id, name)
    }

    /// Assigns (`assign`) or unassigns a standard admin role of the user or group with this
    /// id, as an admin does in the console (logged like Okta's privilege grants).
    pub fn set_standard_role(
        &self,
        principal_id: &str,
        role_type: &str,
        assign: bool,
    ) -> Result<bool> {
        set_standard_role(&self.shared, principal_id, role_type, assign)
    }

    /// Ids of a group's members in id order (empty for an unknown group).
    pub fn members_of(&self, group_id: &str) -> Vec<String> {
        let org = self.org();
        org.group_index(group_id)
            .map(|g| {
                org.groups[g as usize]
                    .members
                    .iter()
                    .map(|u| org.users[*u as usize].id.to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The id of the user with this login (case-insensitive).
    pub fn user_id(&self, login: &str) -> Option<String> {
        let org = self.org();
        org.user_index(login)
            .map(|u| org.users[u as usize].id.to_string())
    }

    /// The id of the first group with this exact name.
    pub fn group_id(&self, name: &str) -> Option<String> {
        let org = self.org();
        org.group_index_by_name(name)
            .map(|g| org.groups[g as usize].id.to_string())
    }

    /// Stops serving: stalled requests are released, open connections closed, and the server
    /// task awaited (at most 10 s, then aborted).
    pub async fn shutdown(mut self) {
        self.shared.cancel.cancel();
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}
