//! The ownership record of one Okta group: who granted each membership and who holds it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Error, GroupLookup, Input, Origin, Result, UserState};

/// Current encoding version of [`GroupRecord`].
pub const RECORD_VERSION: u32 = 1;

/// Who holds one membership of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ownership {
    /// Granted by the operator or preexisting.
    pub origin: Origin,
    /// Owner keys of the `GroupMembership`s holding it.
    pub claimants: BTreeSet<String>,
}

/// The ownership record of one Okta group: user id -> ownership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// Memberships the operator granted or adopted as preexisting.
    pub members: BTreeMap<String, Ownership>,
}

#[derive(Serialize)]
struct EncodedRef<'a> {
    v: u32,
    members: &'a BTreeMap<String, Ownership>,
}

#[derive(Deserialize)]
struct Encoded {
    v: u32,
    #[serde(default)]
    members: BTreeMap<String, Ownership>,
}

impl GroupRecord {
    /// Compact, deterministic JSON (sorted keys) for an annotation or ConfigMap value.
    pub fn encode(&self) -> String {
        let encoded = EncodedRef {
            v: RECORD_VERSION,
            members: &self.members,
        };
        serde_json::to_string(&encoded).expect("a map of strings always serialises")
    }

    /// Parses [`GroupRecord::encode`] output; an empty string is an empty record.
    pub fn decode(text: &str) -> Result<Self> {
        if text.trim().is_empty() {
            return Ok(GroupRecord::default());
        }
        let encoded: Encoded = serde_json::from_str(text)?;
        if encoded.v > RECORD_VERSION {
            return Err(Error::UnsupportedVersion {
                found: encoded.v,
                supported: RECORD_VERSION,
            });
        }
        Ok(GroupRecord {
            members: encoded.members,
        })
    }

    /// Whether `owner` holds any membership of this group.
    pub fn claimed_by(&self, owner: &str) -> bool {
        self.members.values().any(|o| o.claimants.contains(owner))
    }

    /// Drops `owner`'s claim on `user_id` and any other live declarers join; an entry left
    /// without claimants is removed.
    pub(super) fn release(&mut self, user_id: &str, owner: &str, declarers: &BTreeSet<&str>) {
        if let Some(entry) = self.members.get_mut(user_id) {
            entry.claimants.remove(owner);
            entry
                .claimants
                .extend(declarers.iter().map(|d| d.to_string()));
            if entry.claimants.is_empty() {
                self.members.remove(user_id);
            }
        }
    }

    pub(super) fn claim(&mut self, user_id: &str, owner: &str, origin: Origin) {
        let entry = self
            .members
            .entry(user_id.to_string())
            .or_insert_with(|| Ownership {
                origin,
                claimants: BTreeSet::new(),
            });
        entry.origin = origin;
        entry.claimants.insert(owner.to_string());
    }
}

/// The grants this object's own status (the last round's rows) shows as made by the
/// operator and held, that the group's record no longer gives to this object as `Granted`:
/// the record was lost (its ConfigMap deleted, the operator reinstalled in another namespace,
/// a backup restored from before the grant). Returns the user ids, in status order.
///
/// Without this a lost record would read every such membership as preexisting: never
/// revoked at expiry or deletion, access left behind silently.
///
/// Judged only on a record that was read ([`Input::record_located`]), for rows whose entry is
/// still declared, and, when the group's members are known this round, only for users who
/// are members. A normal round never leaves such a mismatch, but a crash between the settled
/// record write and the status write can (a revoke or release recorded, the status not yet
/// rewritten): the membership is then gone from Okta (not restored, or released again without
/// a write), or the entry no longer declared. The rest is the ambiguity the write-ahead record
/// already accepts: a membership added by hand in that window is taken for the operator's.
pub fn lost_grants(input: &Input) -> Vec<&str> {
    if !input.record_located {
        return Vec::new();
    }
    let members_known = matches!(
        input.group,
        GroupLookup::Found(_) | GroupLookup::Renamed { .. }
    );
    let held = |id: &str| {
        input
            .record
            .members
            .get(id)
            .is_some_and(|o| o.origin == Origin::Granted && o.claimants.contains(&input.owner))
    };
    input
        .previous
        .iter()
        .filter(|p| p.state == UserState::Granted && p.origin == Some(Origin::Granted))
        .filter(|p| input.users.iter().any(|d| d.user == p.user))
        .filter_map(|p| p.user_id.as_deref())
        .filter(|id| !held(id))
        .filter(|id| !members_known || input.members.contains(*id))
        .collect()
}

impl GroupRecord {
    /// Records again, as granted by the operator and claimed by `owner`, the grants
    /// [`lost_grants`] found (other claimants of an entry stay).
    pub(super) fn restore<'a>(&mut self, lost: impl IntoIterator<Item = &'a str>, owner: &str) {
        for id in lost {
            self.claim(id, owner, Origin::Granted);
        }
    }
}
