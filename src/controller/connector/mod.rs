//! The `OktaCiamConnector` reconciler.
//!
//! Pipeline, I/O only at the edges: validate the spec ([`decide`] and
//! [`OktaCiamConnectorSpec::validate`](crate::crd::OktaCiamConnectorSpec::validate)) -> read
//! the Secret -> get or (re)build the org's client in the
//! [`ClientRegistry`](crate::controller::runtime::clients::ClientRegistry) -> check the
//! credentials when the client is new or they were not known to be valid -> sync when due ->
//! store the [`index::ConnectorIndex`] -> write the status by server-side apply -> requeue at
//! `nextSyncTime`. Every decision (reasons, conditions, due-ness, back-off, Events) is a pure
//! function in [`decide`].
//!
//! The controller watches the Secrets connectors name by metadata only (the `data` never
//! passes through the watch; a Secret written by client-side `kubectl apply` does carry it in
//! its last-applied annotation, which the operator never reads or logs), so a rotated or
//! deleted token is noticed within seconds. A deleted
//! connector's client and index are dropped from the registry when the watch reports the
//! deletion (and, for deletions missed while the watch was down, at the next relist).
//!
//! Every connector carries a finalizer: its deletion waits until the `GroupMembership`s that
//! name it with `deletionPolicy: Revoke` have revoked their grants, unless the escape
//! annotation is set ([`revocations`]); its client stays while it terminates. Its status also
//! shows the mass-revocation circuit breaker (`RevocationsPaused`), reconciled again whenever
//! the number of held removals changes. Its `status.revocations` (the breaker's stored
//! window) is written by the breaker alone, under its own field manager: this reconciler's
//! status writes leave that field out.
//!
//! Only the leader reconciles; on gaining leadership every connector is reconciled again.

pub mod decide;
pub mod index;
mod reconcile;
pub mod revocations;

pub use reconcile::run;

/// The `kind` label used in metrics.
pub const KIND: &str = "OktaCiamConnector";

/// Errors the reconciler retries with back-off (status and Events explain the rest).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object has no namespace (the CRD is namespaced; never expected).
    #[error("OktaCiamConnector {0} has no namespace")]
    NoNamespace(String),
    /// The Secret could not be read for another reason than not existing.
    #[error("cannot read Secret {namespace}/{name}: {source}")]
    ReadSecret {
        /// The connector's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// The finalizer could not be added or removed, or the memberships not listed.
    #[error("cannot manage the deletion of {connector}: {source}")]
    Deletion {
        /// `namespace/name` of the connector.
        connector: String,
        /// The API error.
        source: kube::Error,
    },
    /// The status could not be written.
    #[error("cannot write the status of {connector}: {source}")]
    WriteStatus {
        /// `namespace/name` of the connector.
        connector: String,
        /// The API error.
        source: kube::Error,
    },
}

/// Result type of the connector reconciler.
pub type Result<T, E = Error> = std::result::Result<T, E>;
