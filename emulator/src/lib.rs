//! An emulated Okta org serving the Management API subset the operator uses, for tests,
//! benchmarks and demos (`okta-ciam-operator emulator`). See `docs/emulator.md`.
//!
//! Layers: [`fixture`] describes an org (YAML, generator, demo); [`state`] holds it in memory;
//! [`search`], [`routes`], [`ratelimit`] and [`api`] decide answers without I/O; [`server`] and
//! [`handle`] are the HTTP edge and the in-process controls.

pub mod api;
pub mod cli;
pub mod fixture;
pub mod handle;
pub mod oauth;
pub mod ratelimit;
pub mod routes;
pub mod search;
pub mod server;
pub mod spec;
pub mod state;
pub mod syslog;

pub use fixture::{
    Fixture, FixtureCustomRole, FixtureGroup, FixtureOrg, FixtureRateLimits, FixtureRoleAssignment,
    FixtureUser, GenerateSpec, Member,
};
pub use handle::{EmulatorHandle, serve, start};
pub use oauth::FixtureServiceApp;
pub use ratelimit::RateLimits;
pub use server::{EmulatorStats, Faults, RequestStats};

/// Errors of the emulator layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The fixture is malformed or inconsistent.
    #[error("invalid fixture: {0}")]
    Fixture(String),
    /// The fixture file cannot be read.
    #[error("cannot read fixture {path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The `--generate` spec is malformed.
    #[error("invalid generate spec: {0}")]
    GenerateSpec(String),
    /// No user with this id.
    #[error("unknown user {0}")]
    UnknownUser(String),
    /// No group with this id.
    #[error("unknown group {0}")]
    UnknownGroup(String),
    /// Not one of the spec's standard admin role types.
    #[error("unknown role type {0}")]
    UnknownRole(String),
    /// Not one of Okta's user statuses.
    #[error("invalid user status {0}")]
    InvalidStatus(String),
    /// Another user already has this login.
    #[error("login {0} is taken")]
    LoginTaken(String),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// Result of the emulator layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to serve.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The org.
    pub fixture: Fixture,
    /// Rate limits (see [`EmulatorConfig::new`] for taking them from the fixture).
    pub rate_limits: RateLimits,
}

impl EmulatorConfig {
    /// Serves `fixture` with the rate limits it declares (Okta's defaults otherwise).
    pub fn new(fixture: Fixture) -> EmulatorConfig {
        EmulatorConfig {
            rate_limits: fixture.rate_limits(),
            fixture,
        }
    }
}
