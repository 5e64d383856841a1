//! An emulated Okta org. (Being built; see issue 2.)
pub mod cli;
