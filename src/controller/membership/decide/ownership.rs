//! The ownership record of one Okta group: who granted each membership and who holds it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Error, Origin, Result};

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
