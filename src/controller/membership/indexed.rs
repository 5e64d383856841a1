//! Answers from the connector's [`ConnectorIndex`] (its last successful sync), so a round
//! asks Okta only about what the index cannot settle. Pure: no I/O.
//!
//! The index holds in-scope users and groups only. Its answer is used when it is exact:
//! - a user entry that is an in-scope user's id, or an address in the connector's email
//!   domains (every user holding such an address as login or email is in scope, so the index
//!   sees every match, and therefore every ambiguity);
//! - a group by id, or by exact name when one of them is an `OKTA_GROUP`.
//!
//! Anything else (`None`) is asked of Okta: a user or group created since the sync, a user
//! outside the email domains (to be refused with the right reason), a group outside the
//! filter. What the index cannot see is staleness of what it holds: a user suspended or
//! moved out of the email domains since the sync is seen as of the sync. So before any PUT
//! the round reads every user it would grant from an index answer again by id, and decides
//! again if the guard rails now answer differently ([`decide::reconfirm`](super::decide::reconfirm)).
//! Which user an address names is still taken from the index (an address that moved to
//! another user since the sync is corrected by the next sync, which re-reconciles every
//! membership naming the connector); memberships that exist are not re-read.

use super::decide::{GroupLookup, OktaGroup, OktaUser, UserLookup};
use crate::controller::connector::index::ConnectorIndex;
use crate::crd::GroupRef;
use crate::sync::snapshot::{SnapshotGroup, SnapshotUser};

fn user(u: &SnapshotUser) -> OktaUser {
    OktaUser {
        id: u.id.clone(),
        login: u.login.clone(),
        email: u.email.clone(),
        status: u.status.clone(),
    }
}

fn group(g: &SnapshotGroup) -> OktaGroup {
    OktaGroup {
        id: g.id.clone(),
        name: g.name.clone(),
        group_type: g.group_type.clone(),
    }
}

/// The index's exact answer for one `spec.users` entry, or `None` to ask Okta.
pub fn user_lookup(index: &ConnectorIndex, entry: &str) -> Option<UserLookup> {
    if let Some(u) = index.user(entry) {
        return Some(UserLookup::Found(user(u)));
    }
    if !index.facts.email_domains.matches_address(entry) {
        return None;
    }
    match index.users_holding(entry).as_slice() {
        // Perhaps created since the sync.
        [] => None,
        [u] => Some(UserLookup::Found(user(u))),
        many => Some(UserLookup::Ambiguous {
            matches: many.len(),
        }),
    }
}

/// The index's exact answer for the declared group, or `None` to ask Okta. Names match
/// exactly (the index keys them ignoring case).
pub fn group_lookup(index: &ConnectorIndex, declared: &GroupRef) -> Option<GroupLookup> {
    if let Some(id) = &declared.id {
        return index.group(id).map(|g| GroupLookup::Found(group(g)));
    }
    let name = declared.name.as_deref()?;
    index
        .groups_named(name)
        .into_iter()
        .find(|g| g.name == name && g.group_type == "OKTA_GROUP")
        .map(|g| GroupLookup::Found(group(g)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::connector::index::ConnectorFacts;
    use crate::sync::scope::EmailDomains;
    use crate::sync::snapshot::{Snapshot, SnapshotGroup};
    use k8s_openapi::jiff::Timestamp;

    fn snap_user(id: &str, login: &str, email: Option<&str>, status: &str) -> SnapshotUser {
        SnapshotUser {
            id: id.into(),
            login: login.into(),
            email: email.map(Into::into),
            status: status.into(),
            disabled: status != "ACTIVE",
            display_name: login.into(),
        }
    }

    fn snap_group(id: &str, name: &str, group_type: &str) -> SnapshotGroup {
        SnapshotGroup {
            id: id.into(),
            name: name.into(),
            group_type: group_type.into(),
            member_count: 0,
        }
    }

    fn index() -> ConnectorIndex {
        let mut s = Snapshot::empty_for_tests("corp.okta.com", &["example.com"]);
        s.users = vec![
            snap_user("00ua", "alice@example.com", None, "ACTIVE"),
            snap_user("00ut1", "twin@example.com", None, "ACTIVE"),
            snap_user(
                "00ut2",
                "twin2@example.com",
                Some("twin@example.com"),
                "ACTIVE",
            ),
            snap_user(
                "00uc",
                "carol@other.org",
                Some("carol@example.com"),
                "SUSPENDED",
            ),
        ];
        s.groups = vec![
            snap_group("00gE", "Eng", "OKTA_GROUP"),
            snap_group("00gI", "Imported", "APP_GROUP"),
        ];
        let facts = ConnectorFacts {
            ready: true,
            provisioning: true,
            suspended: false,
            email_domains: EmailDomains::new(["example.com"]).unwrap(),
            group_name_filter: None,
            generation: Some(1),
        };
        ConnectorIndex::build(s, facts, Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn users_by_id_or_in_scope_address_with_ambiguity() {
        let ix = index();
        let found = |e: &str| match user_lookup(&ix, e) {
            Some(UserLookup::Found(u)) => Some((u.id, u.status)),
            other => panic!("{e}: {other:?}"),
        };
        assert_eq!(found("00ua"), Some(("00ua".into(), "ACTIVE".into())));
        assert_eq!(found("ALICE@example.com").unwrap().0, "00ua");
        assert_eq!(
            found("carol@example.com"),
            Some(("00uc".into(), "SUSPENDED".into()))
        );
        assert_eq!(
            user_lookup(&ix, "twin@example.com"),
            Some(UserLookup::Ambiguous { matches: 2 })
        );
        // Not in the index although in scope: maybe new, ask Okta.
        assert_eq!(user_lookup(&ix, "new@example.com"), None);
        // Outside the email domains: only Okta can say who matches (and the refusal).
        assert_eq!(user_lookup(&ix, "carol@other.org"), None);
        assert_eq!(user_lookup(&ix, "mallory@evil.org"), None);
        assert_eq!(user_lookup(&ix, "plain-login"), None);
    }

    #[test]
    fn groups_by_id_or_exact_okta_group_name() {
        let ix = index();
        let by = |name: Option<&str>, id: Option<&str>| {
            group_lookup(
                &ix,
                &GroupRef {
                    name: name.map(Into::into),
                    id: id.map(Into::into),
                },
            )
        };
        let eng = Some(GroupLookup::Found(OktaGroup {
            id: "00gE".into(),
            name: "Eng".into(),
            group_type: "OKTA_GROUP".into(),
        }));
        assert_eq!(by(Some("Eng"), None), eng);
        assert_eq!(by(None, Some("00gE")), eng);
        assert_eq!(by(Some("eng"), None), None, "names match exactly");
        assert_eq!(
            by(Some("Imported"), None),
            None,
            "an OKTA_GROUP of that name may be newer than the sync"
        );
        assert!(
            matches!(by(None, Some("00gI")), Some(GroupLookup::Found(g)) if g.group_type == "APP_GROUP")
        );
        assert_eq!(by(None, Some("00gNEW")), None);
    }
}
