//! Guard rails: the checks before any Okta write, and the re-read of index answers.

use std::collections::{BTreeMap, BTreeSet};

use super::report::name_a_few;
use super::{
    ConnectorFacts, DeclaredUser, GroupLookup, OktaGroup, OktaUser, Plan, Reason, Refusal,
    UserLookup,
};
use crate::sync::scope::{EmailDomains, GroupNameFilter};

/// Whether a user is inside the email domains: the sync's rule
/// ([`EmailDomains::user_in_scope`]: the exact, case-insensitive domain after the last `@` of
/// `profile.email`, or of `profile.login` when it contains `@`; `secondEmail` never counts).
/// One implementation for the sync and the guard rail, so a user the snapshot lists is a
/// user provisioning admits. A list with no valid domain admits nobody.
pub fn user_in_scope(user: &OktaUser, email_domains: &[String]) -> bool {
    EmailDomains::new(email_domains)
        .is_ok_and(|domains| domains.user_in_scope(&user.login, user.email.as_deref()))
}

/// Whether a group name passes the connector's filter: the sync's rule
/// ([`GroupNameFilter::matches`]: case-insensitive, anywhere). No filter or an empty one
/// admits every group; a filter the sync would refuse admits none.
pub fn group_in_scope(name: &str, filter: Option<&str>) -> bool {
    match GroupNameFilter::new(filter.unwrap_or_default()) {
        Ok(None) => true,
        Ok(Some(f)) => f.matches(name),
        Err(_) => false,
    }
}

/// The operator-wide switch (`run --provisioning`, `OKTA_CIAM_PROVISIONING`,
/// `BATON_PROVISIONING`): when off, every write is refused before any connector check.
pub fn check_operator(provisioning: bool) -> Result<(), Refusal> {
    if provisioning {
        Ok(())
    } else {
        Err(Refusal::new(
            Reason::ProvisioningDisabled,
            "provisioning is disabled operator-wide (run --provisioning=false, \
             OKTA_CIAM_PROVISIONING or BATON_PROVISIONING)"
                .into(),
        ))
    }
}

/// Connector guard rails: it must exist, be Ready, allow provisioning and not be suspended.
pub fn check_connector(connector: Option<&ConnectorFacts>) -> Result<&ConnectorFacts, Refusal> {
    let Some(c) = connector else {
        return Err(Refusal::new(
            Reason::ConnectorNotFound,
            "the referenced OktaCiamConnector does not exist".into(),
        ));
    };
    let name = &c.name;
    if !c.ready {
        Err(Refusal::new(
            Reason::ConnectorNotReady,
            format!("connector {name} is not Ready"),
        ))
    } else if !c.provisioning {
        Err(Refusal::new(
            Reason::ProvisioningDisabled,
            format!("connector {name} has provisioning: false"),
        ))
    } else if c.suspended {
        Err(Refusal::new(
            Reason::ConnectorSuspended,
            format!("connector {name} is suspended"),
        ))
    } else {
        Ok(c)
    }
}

/// The only rails on letting go of the operator's own grants (an expiry, a deletion, an entry
/// removed from the spec): the connector must exist, must not be suspended (a pause the admin
/// asked for), and this process must hold its Okta client (credentials read and a client
/// built; without one nothing can be written at all). Deliberately not required: `Ready` (a
/// failed last sync says nothing about the client: a revocation reads the group's live
/// membership from Okta itself), `provisioning` on the connector or the operator, and the
/// group-name filter or email domains (narrowing the scope must never strand a grant).
pub fn check_revocation(connector: Option<&ConnectorFacts>) -> Result<&ConnectorFacts, Refusal> {
    let Some(c) = connector else {
        return Err(Refusal::new(
            Reason::ConnectorNotFound,
            "the referenced OktaCiamConnector does not exist".into(),
        ));
    };
    let name = &c.name;
    if c.suspended {
        Err(Refusal::new(
            Reason::ConnectorSuspended,
            format!("connector {name} is suspended"),
        ))
    } else if !c.has_client {
        Err(Refusal::new(
            Reason::ConnectorNotReady,
            format!("connector {name} has no working Okta client (credentials missing or invalid)"),
        ))
    } else {
        Ok(c)
    }
}

/// The group a round lets go in: the one the grants were made in, found by name or by its
/// recorded id. Only the type matters (the membership of a group that is not an
/// `OKTA_GROUP` was never the operator's to write); the name filter does not.
pub fn check_group_to_let_go(group: &GroupLookup) -> Result<&OktaGroup, Refusal> {
    match group {
        GroupLookup::Found(g) | GroupLookup::Renamed { group: g, .. } => {
            check_group_type(g).map(|()| g)
        }
        GroupLookup::NotLookedUp => Err(Refusal::new(
            Reason::Pending,
            "the group has not been looked up yet".into(),
        )),
        GroupLookup::NotFound => Err(Refusal::new(
            Reason::GroupNotFound,
            "the group does not exist in Okta".into(),
        )),
    }
}

/// Group guard rails: it must exist, be an `OKTA_GROUP` and pass the group-name filter.
/// A renamed group is refused ([`Reason::GroupRenamed`]); see [`check_group_for`].
pub fn check_group<'a>(
    group: &'a GroupLookup,
    connector: &ConnectorFacts,
) -> Result<&'a OktaGroup, Refusal> {
    check_group_for(group, connector, false)
}

/// [`check_group`] for a round that may be letting go (`letting_go`: expired or being
/// deleted): a renamed group is then the group the grants were made in, so the operator may
/// still revoke them there; a live declaration is refused until its spec names the group.
pub fn check_group_for<'a>(
    group: &'a GroupLookup,
    connector: &ConnectorFacts,
    letting_go: bool,
) -> Result<&'a OktaGroup, Refusal> {
    match group {
        GroupLookup::Renamed { group: g, .. } if letting_go => {
            check_okta_group(g, connector).map(|()| g)
        }
        GroupLookup::Renamed { group: g, declared } => Err(Refusal::new(
            Reason::GroupRenamed,
            format!(
                "group {} is now named {:?}, not the declared {declared:?}; update spec.group",
                g.id, g.name
            ),
        )),
        GroupLookup::NotLookedUp => Err(Refusal::new(
            Reason::Pending,
            "the group has not been looked up yet".into(),
        )),
        GroupLookup::NotFound => Err(Refusal::new(
            Reason::GroupNotFound,
            "the group does not exist in Okta".into(),
        )),
        GroupLookup::Found(g) => check_okta_group(g, connector).map(|()| g),
    }
}

/// The type rail: only `OKTA_GROUP` membership is the operator's to write.
fn check_group_type(g: &OktaGroup) -> Result<(), Refusal> {
    if g.group_type == "OKTA_GROUP" {
        Ok(())
    } else {
        Err(Refusal::new(
            Reason::GroupNotOktaManaged,
            format!(
                "group {} ({}) is of type {}: only OKTA_GROUP membership is managed in Okta",
                g.name, g.id, g.group_type
            ),
        ))
    }
}

/// The type and name-filter rails of a group that exists.
fn check_okta_group(g: &OktaGroup, connector: &ConnectorFacts) -> Result<(), Refusal> {
    check_group_type(g)?;
    if !group_in_scope(&g.name, connector.group_name_filter.as_deref()) {
        Err(Refusal::new(
            Reason::GroupOutOfScope,
            format!(
                "group {} ({}) is outside connector {}'s group-name filter {:?}",
                g.name,
                g.id,
                connector.name,
                connector.group_name_filter.as_deref().unwrap_or_default()
            ),
        ))
    } else {
        Ok(())
    }
}

/// User guard rails: exactly one user, inside the email domains, not suspended or
/// deprovisioned.
pub fn check_user<'a>(
    entry: &str,
    lookup: &'a UserLookup,
    connector: &ConnectorFacts,
) -> Result<&'a OktaUser, Refusal> {
    match lookup {
        UserLookup::NotLookedUp => Err(Refusal::new(
            Reason::Pending,
            format!("{entry} has not been looked up yet"),
        )),
        UserLookup::NotFound => Err(Refusal::new(
            Reason::UserNotFound,
            format!("no Okta user matches {entry}"),
        )),
        UserLookup::Ambiguous { matches } => Err(Refusal::new(
            Reason::UserAmbiguous,
            format!("{matches} Okta users match {entry}; use the user id"),
        )),
        UserLookup::Found(u) if !user_in_scope(u, &connector.email_domains) => Err(Refusal::new(
            Reason::UserOutOfScope,
            format!(
                "{entry} ({}) is outside connector {}'s email domains {}",
                u.id,
                connector.name,
                name_a_few(connector.email_domains.iter().map(String::as_str))
            ),
        )),
        UserLookup::Found(u) if !grantable_status(&u.status) => Err(Refusal::new(
            Reason::UserInactive,
            format!(
                "{entry} ({}) is {}; only ACTIVE, PASSWORD_EXPIRED and RECOVERY users are granted",
                u.id, u.status
            ),
        )),
        UserLookup::Found(u) => Ok(u),
    }
}

/// Whether a user in this Okta status may be granted a membership. `ACTIVE` users, and two
/// states of active accounts in the middle of a credential change: `PASSWORD_EXPIRED` (signs in
/// and must set a new password) and `RECOVERY` (an admin or the user started a reset). Both
/// belong to a person who already holds access; refusing them would only make a password reset
/// revoke nothing and grant nothing. Refused: `STAGED` and `PROVISIONED` (never activated: no
/// person has taken the account yet), `LOCKED_OUT` (failed sign-ins, possibly an attack on it),
/// `SUSPENDED`, `DEPROVISIONED`, and any status Okta may add later.
pub fn grantable_status(status: &str) -> bool {
    ["ACTIVE", "PASSWORD_EXPIRED", "RECOVERY"]
        .iter()
        .any(|s| status.eq_ignore_ascii_case(s))
}

/// The users `plan` would PUT whose lookup did not come from Okta this round (`fresh`: ids
/// read from Okta by this round's searches or re-reads): they answered from the connector's
/// index, i.e. as of its last sync, and must be read again before any write.
pub fn unconfirmed_grants<'a>(plan: &'a Plan, fresh: &BTreeSet<String>) -> Vec<&'a str> {
    plan.grants
        .iter()
        .map(String::as_str)
        .filter(|id| !fresh.contains(*id))
        .collect()
}

/// The declared users with Okta's current answer (`reread`, by user id: what a read by id
/// returned, [`UserLookup::NotLookedUp`] when it failed) in place of the index's, for every
/// entry on which the user guard rails ([`check_user`]) now answer differently; `None` when
/// no answer changed (the plan stands).
pub fn reconfirm(
    users: &[DeclaredUser],
    reread: &BTreeMap<String, UserLookup>,
    connector: &ConnectorFacts,
) -> Option<Vec<DeclaredUser>> {
    let verdict = |d: &DeclaredUser, lookup: &UserLookup| {
        check_user(&d.user, lookup, connector)
            .map(|_| ())
            .map_err(|r| r.reason)
    };
    let mut changed = false;
    let users = users
        .iter()
        .map(|d| {
            let UserLookup::Found(u) = &d.lookup else {
                return d.clone();
            };
            match reread.get(&u.id) {
                Some(now) if verdict(d, now) != verdict(d, &d.lookup) => {
                    changed = true;
                    DeclaredUser {
                        user: d.user.clone(),
                        lookup: now.clone(),
                    }
                }
                _ => d.clone(),
            }
        })
        .collect();
    changed.then_some(users)
}
