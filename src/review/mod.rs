//! User access reviews over a snapshot: the campaign's items frozen from it ([`items`]), the
//! reviewers' workbook and what its `Revoke` decisions would remove ([`workbook`]), and the
//! `review` command ([`cli`]).
//!
//! Decisions read from a file are not authenticated (anyone can type a reviewer's name into a
//! sheet), so from files the command only ever plans (`review apply --dry-run`); removing
//! access on a review decision is reserved to decisions whose author Kubernetes admission has
//! proven.

pub mod cli;
pub mod items;
pub mod workbook;

/// Errors of the review layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The workbook (a filled-in sheet) cannot be used as it is.
    #[error("invalid decisions workbook: {0}")]
    Workbook(String),
    /// The sheet is not readable CSV.
    #[error("cannot read the decisions CSV: {0}")]
    Csv(#[from] csv::Error),
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Result of the review layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
