//! The sync engine: reads an org's access state through a connector's filters into an
//! [`Snapshot`](snapshot::Snapshot).
//!
//! Decisions live in pure modules ([`scope`], [`plan`], [`roles`], [`snapshot`]) that are unit
//! tested without servers; the I/O is in [`engine`] (Okta reads) and [`snapshot::Snapshot::write_atomic`].

pub mod changes;
pub mod cli;
pub mod diff;
pub mod engine;
pub mod incremental;
pub mod plan;
pub mod progress;
pub mod roles;
pub mod scope;
pub mod shrink;
pub mod snapshot;

use std::path::PathBuf;

/// Everything that can make a sync fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A sync without email domains would be "everyone"; that is refused on purpose.
    #[error(
        "no email domains configured: a sync needs at least one (an empty list is not \"everyone\")"
    )]
    NoEmailDomains,
    /// An email domain that is not a plain DNS name.
    #[error("invalid email domain {domain:?}: {reason}")]
    InvalidEmailDomain {
        /// The domain as given.
        domain: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A group-name filter that cannot be sent to Okta.
    #[error("invalid group name filter: {0}")]
    InvalidGroupNameFilter(&'static str),
    /// An Okta request failed (after the client's own retries).
    #[error("Okta: {0}")]
    Okta(#[from] crate::okta::Error),
    /// Writing the snapshot file failed.
    #[error("cannot write the snapshot to {}: {source}", path.display())]
    Write {
        /// The target path.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The snapshot could not be encoded as JSON.
    #[error("cannot encode the snapshot: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Result type of the sync layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error's text without the identifiers Okta mints per response (see
    /// [`crate::okta::Error::stable_text`]); [`std::fmt::Display`] keeps them.
    pub fn stable_text(&self) -> String {
        match self {
            Error::Okta(e) => format!("Okta: {}", e.stable_text()),
            other => other.to_string(),
        }
    }
}
