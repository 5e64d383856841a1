//! Where tests find Okta's official Management API spec, the authority the emulator's answers
//! (and the client's role tables) are checked against.
//!
//! The spec is Okta's file and is not part of this repository. It is looked up in one order:
//! the path in `OKTA_OPENAPI_SPEC`, else `shared/okta/management-openapi-2026.06.3.yaml` in the
//! nearest ancestor of the crate that has it (`../shared/` next to a checkout, also from a
//! nested worktree). When it is in neither place, tests that need it skip with one line on
//! stderr; CI sets `OKTA_OPENAPI_SPEC`, so there a missing file fails instead of skipping.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The environment variable naming the spec file. When it is set the file must exist.
pub const SPEC_ENV: &str = "OKTA_OPENAPI_SPEC";

/// The spec's place below a `shared/` directory beside the checkout.
pub const SHARED_SPEC_PATH: &str = "shared/okta/management-openapi-2026.06.3.yaml";

/// The spec file, if it can be found (see the module docs for the order).
///
/// # Panics
/// When `OKTA_OPENAPI_SPEC` names a file that does not exist: a wrong explicit path is a
/// mistake to report, not a reason to skip.
pub fn spec_path() -> Option<PathBuf> {
    if let Some(explicit) = std::env::var_os(SPEC_ENV) {
        let path = PathBuf::from(explicit);
        assert!(
            path.is_file(),
            "{SPEC_ENV}={} is not a file",
            path.display()
        );
        return Some(path);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join(SHARED_SPEC_PATH))
        .find(|p| p.is_file())
}

/// The spec's text for `test`, or `None` after printing one line saying that `test` was skipped
/// and why. The line goes straight to the process's stderr, past the test harness's output
/// capture, so a skipped check is never silent.
pub fn spec_text_or_skip(test: &str) -> Option<String> {
    match spec_path() {
        Some(path) => Some(
            std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())),
        ),
        None => {
            report_skip(test);
            None
        }
    }
}

/// Prints the one line saying that `test` was skipped because the spec is absent, straight to
/// the process's stderr (past the test harness's capture).
pub fn report_skip(test: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: Okta's OpenAPI spec not found (set {SPEC_ENV} or put it at ../{SHARED_SPEC_PATH})"
    );
}

/// The spec's standard admin roles: `(type, label)` for each row of the `RoleType` schema's
/// table except `CUSTOM`, after checking that the table lists exactly the schema's `enum`.
/// The label is the description without its trailing "standard role" / "IAM-based standard
/// role".
///
/// # Panics
/// When the schema is missing or its table and enum disagree: the spec changed shape and the
/// role tables need a person's look.
pub fn standard_roles(spec: &str) -> Vec<(String, String)> {
    let start = spec
        .find("\n    RoleType:\n")
        .expect("the spec has a RoleType schema")
        + 1;
    let mut lines = spec[start..].lines();
    let name = lines.next().unwrap_or_default();
    // The schema's own lines are indented deeper than the next schema's name.
    let schema: Vec<&str> = std::iter::once(name)
        .chain(lines.take_while(|l| l.is_empty() || l.starts_with("     ")))
        .collect();
    let enum_values: Vec<&str> = schema
        .iter()
        .skip_while(|l| l.trim() != "enum:")
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("- "))
        .map(|l| l.trim().trim_start_matches("- ").trim())
        .filter(|v| *v != "CUSTOM")
        .collect();
    let rows: Vec<(String, String)> = schema
        .iter()
        .filter_map(|l| {
            let cells: Vec<&str> = l
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            match cells.as_slice() {
                [t, d]
                    if !t.is_empty() && t.chars().all(|c| c.is_ascii_uppercase() || c == '_') =>
                {
                    Some((t.to_string(), d.to_string()))
                }
                _ => None,
            }
        })
        .filter(|(t, _)| t != "CUSTOM")
        .map(|(t, description)| {
            let label = description
                .strip_suffix(" IAM-based standard role")
                .or_else(|| description.strip_suffix(" standard role"))
                .unwrap_or_else(|| panic!("{t}: unexpected description {description:?}"))
                .to_string();
            (t, label)
        })
        .collect();
    let table_types: Vec<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        table_types, enum_values,
        "the RoleType table lists the enum"
    );
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::STANDARD_ROLES;

    #[test]
    fn the_emulators_role_labels_are_the_spec_table() {
        let Some(spec) =
            spec_text_or_skip("spec::tests::the_emulators_role_labels_are_the_spec_table")
        else {
            return;
        };
        let mut from_spec = standard_roles(&spec);
        let mut served: Vec<(String, String)> = STANDARD_ROLES
            .iter()
            .map(|(t, l)| (t.to_string(), l.to_string()))
            .collect();
        from_spec.sort();
        served.sort();
        assert_eq!(served, from_spec);
    }
}
