//! The test server's own tests, in one binary (one link of kube and axum instead of three):
//! the API surface, the controller runtime against it, authorization reviews, and watch
//! semantics.

mod common;

mod api;
mod reviews;
mod runtime;
mod watch;
