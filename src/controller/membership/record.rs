//! Where ownership records live: one ConfigMap per (Okta org domain, group id) in the
//! operator's namespace, read fresh and written with `resourceVersion` preconditions, as the
//! crash-safety protocol in [`decide`](super::decide) requires.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, PostParams, Preconditions};

use super::decide::{self, GroupRecord};

/// Label on every record ConfigMap.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "okta-ciam-operator";
/// Data key holding [`GroupRecord::encode`].
pub const RECORD_KEY: &str = "record";
const DOMAIN_KEY: &str = "domain";
const GROUP_KEY: &str = "groupId";

/// Errors reading or writing a record.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Someone else wrote the record since it was read: read it again.
    #[error("ownership record {name} changed since it was read")]
    Conflict {
        /// ConfigMap name.
        name: String,
    },
    /// The ConfigMap holds a record that cannot be decoded; never overwritten blindly.
    #[error("ownership record {name} is unreadable: {source}")]
    Corrupt {
        /// ConfigMap name.
        name: String,
        /// Why.
        source: decide::Error,
    },
    /// The ConfigMap under this name belongs to another (domain, group): a hash collision.
    #[error("ConfigMap {name} holds the record of {found}, not of {wanted}")]
    Collision {
        /// ConfigMap name.
        name: String,
        /// `domain/group` found in it.
        found: String,
        /// `domain/group` asked for.
        wanted: String,
    },
    /// The Kubernetes API failed.
    #[error("ownership record {name}: {source}")]
    Kube {
        /// ConfigMap name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// 64-bit FNV-1a: stable across builds and platforms, unlike `std`'s hashers.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The record's ConfigMap name for `domain` (case-insensitive) and `group_id`. A collision
/// is detected on read (the data names its domain and group), never silently merged.
pub fn record_name(domain: &str, group_id: &str) -> String {
    let key = format!("{}\n{group_id}", domain.to_ascii_lowercase());
    format!("okta-ciam-membership-{:016x}", fnv1a(key.as_bytes()))
}

/// A record as read, with the `resourceVersion` to write it back against (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The record (empty when absent).
    pub record: GroupRecord,
    /// The ConfigMap's `resourceVersion`, when it exists.
    pub resource_version: Option<String>,
}

/// Record storage in one namespace. This replica's rounds on one group do not conflict on
/// it: they run in batches, one at a time per group ([`batch`](super::batch)).
#[derive(Clone)]
pub struct RecordStore {
    api: Api<ConfigMap>,
}

impl std::fmt::Debug for RecordStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordStore").finish_non_exhaustive()
    }
}

impl RecordStore {
    /// Records kept in `namespace`.
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        RecordStore {
            api: Api::namespaced(client, namespace),
        }
    }

    fn kube_err(name: &str, source: kube::Error) -> Error {
        match &source {
            kube::Error::Api(s) if s.code == 409 => Error::Conflict {
                name: name.to_owned(),
            },
            _ => Error::Kube {
                name: name.to_owned(),
                source,
            },
        }
    }

    /// Reads the record fresh from the API server (never from a cache).
    pub async fn read(&self, domain: &str, group_id: &str) -> Result<Versioned> {
        let name = record_name(domain, group_id);
        let Some(cm) = self
            .api
            .get_opt(&name)
            .await
            .map_err(|e| Self::kube_err(&name, e))?
        else {
            return Ok(Versioned {
                record: GroupRecord::default(),
                resource_version: None,
            });
        };
        let data = cm.data.unwrap_or_default();
        let wanted = format!("{}/{group_id}", domain.to_ascii_lowercase());
        let found = format!(
            "{}/{}",
            data.get(DOMAIN_KEY).map_or("", String::as_str),
            data.get(GROUP_KEY).map_or("", String::as_str)
        );
        if found != wanted {
            return Err(Error::Collision {
                name,
                found,
                wanted,
            });
        }
        let text = data.get(RECORD_KEY).map_or("", String::as_str);
        let record = GroupRecord::decode(text).map_err(|source| Error::Corrupt {
            name: name.clone(),
            source,
        })?;
        Ok(Versioned {
            record,
            resource_version: cm.metadata.resource_version,
        })
    }

    /// Writes `record` if the stored one is still at `read.resource_version` (absent: creates
    /// it; an empty record deletes it). Returns the new state. A precondition failure is
    /// [`Error::Conflict`].
    pub async fn write(
        &self,
        domain: &str,
        group_id: &str,
        read: &Versioned,
        record: &GroupRecord,
    ) -> Result<Versioned> {
        let name = record_name(domain, group_id);
        let err = |e| Self::kube_err(&name, e);
        let written = |resource_version| Versioned {
            record: record.clone(),
            resource_version,
        };
        match (&read.resource_version, record.members.is_empty()) {
            (None, true) => Ok(written(None)),
            (Some(rv), true) => {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        resource_version: Some(rv.clone()),
                        uid: None,
                    }),
                    ..DeleteParams::default()
                };
                match self.api.delete(&name, &params).await {
                    Ok(_) => Ok(written(None)),
                    // Gone already: someone else emptied and removed it; re-read and retry.
                    Err(kube::Error::Api(s)) if s.code == 404 => {
                        Err(Error::Conflict { name: name.clone() })
                    }
                    Err(e) => Err(err(e)),
                }
            }
            (rv, false) => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        resource_version: rv.clone(),
                        labels: Some(BTreeMap::from([(
                            MANAGED_BY_LABEL.to_owned(),
                            MANAGED_BY.to_owned(),
                        )])),
                        ..ObjectMeta::default()
                    },
                    data: Some(BTreeMap::from([
                        (DOMAIN_KEY.to_owned(), domain.to_ascii_lowercase()),
                        (GROUP_KEY.to_owned(), group_id.to_owned()),
                        (RECORD_KEY.to_owned(), record.encode()),
                    ])),
                    ..ConfigMap::default()
                };
                let pp = PostParams::default();
                let stored = match rv {
                    None => self.api.create(&pp, &cm).await,
                    Some(_) => self.api.replace(&name, &pp, &cm).await,
                };
                match stored {
                    Ok(cm) => Ok(written(cm.metadata.resource_version)),
                    // Replacing a ConfigMap deleted meanwhile is a conflict too.
                    Err(kube::Error::Api(s)) if s.code == 404 => {
                        Err(Error::Conflict { name: name.clone() })
                    }
                    Err(e) => Err(err(e)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_valid_and_distinct() {
        let a = record_name("Acme.okta.com", "00g1");
        assert_eq!(a, record_name("acme.okta.com", "00g1"));
        assert_ne!(a, record_name("acme.okta.com", "00g2"));
        assert_ne!(a, record_name("other.okta.com", "00g1"));
        // The separator keeps ("a.b", "c") and ("a.bc", "") apart.
        assert_ne!(record_name("a.b", "c"), record_name("a.bc", ""));
        assert!(
            a.len() <= 63
                && a.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        // Pinned: a changed hash would orphan every stored record.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
