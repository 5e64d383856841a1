//! The System Log: an event in Okta's documented `LogEvent` shape for every change the
//! emulator sees (API writes and `/__emulator/` changes), and `GET /api/v1/logs`.
//!
//! Emulated: `since` (inclusive) / `until` (exclusive) on `published`, `limit` (default 100,
//! at most 1000), `after` cursors in `Link: rel="next"`, `sortOrder=ASCENDING`. A request
//! without `until` is a *polling* request and, as Okta documents, always carries a `next`
//! link. Not emulated: `filter`, `q` and `DESCENDING` (answered 400), and the few seconds
//! by which Okta's log trails the change (events appear at once here). Real events carry
//! `null` in fields such as `detailEntry`, `legacyEventType` and `outcome.reason`; the spec
//! does not allow `null` there, so the emulator leaves them out.

use serde_json::{Value as Json, json};

use super::state::format_time;

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Okta id.
    pub id: String,
    /// `User`, `SystemPrincipal`, ...
    pub actor_type: &'static str,
    /// A login or a system address.
    pub alternate_id: String,
    /// Display name.
    pub display_name: String,
}

impl Actor {
    /// The admin behind the emulator's API tokens (Okta attributes an SSWS token's changes to
    /// the admin user who created it).
    pub fn api_admin() -> Actor {
        Actor {
            id: "00uemulatorapiadmin0".into(),
            actor_type: "User",
            alternate_id: "api-admin@emulator.invalid".into(),
            display_name: "Emulator API Admin".into(),
        }
    }

    /// Changes made through `/__emulator/`, standing for changes outside the API under test
    /// (another admin, the console, a directory import).
    pub fn control() -> Actor {
        Actor {
            id: "00uemulatorcontrol00".into(),
            actor_type: "User",
            alternate_id: "console-admin@emulator.invalid".into(),
            display_name: "Emulator Console Admin".into(),
        }
    }
}

/// A changed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Okta id.
    pub id: String,
    /// `User`, `UserGroup`, ...
    pub target_type: &'static str,
    /// A login, or a group name.
    pub alternate_id: String,
    /// Display name.
    pub display_name: String,
}

/// One System Log event.
#[derive(Debug, Clone)]
pub struct LogEvent {
    seq: u64,
    uuid: String,
    published_ms: i64,
    event_type: &'static str,
    display_message: &'static str,
    actor: Actor,
    targets: Vec<Target>,
}

impl LogEvent {
    fn json(&self) -> Json {
        let target = |t: &Target| {
            json!({"id": t.id, "type": t.target_type, "alternateId": t.alternate_id,
                   "displayName": t.display_name})
        };
        json!({
            "uuid": self.uuid,
            "published": format_time(self.published_ms),
            "eventType": self.event_type,
            "version": "0",
            "severity": "INFO",
            "displayMessage": self.display_message,
            "actor": {"id": self.actor.id, "type": self.actor.actor_type,
                      "alternateId": self.actor.alternate_id,
                      "displayName": self.actor.display_name},
            "client": {"userAgent": {"rawUserAgent": "okta-emulator", "os": "Unknown", "browser": "UNKNOWN"},
                       "zone": "null", "device": "Unknown", "ipAddress": "127.0.0.1"},
            "outcome": {"result": "SUCCESS"},
            "target": self.targets.iter().map(target).collect::<Vec<_>>(),
            "transaction": {"type": "WEB", "id": format!("emu{}", self.seq), "detail": {}},
            "debugContext": {"debugData": {}},
            "authenticationContext": {"authenticationStep": 0, "externalSessionId": "unknown"},
            "securityContext": {},
        })
    }

    /// The opaque `after` cursor of this event: its sequence number, zero-padded so that
    /// cursor order is log order.
    fn cursor(&self) -> String {
        format!("{:020}", self.seq)
    }
}

/// The org's System Log, in the order events were written.
#[derive(Debug, Default)]
pub struct SystemLog {
    events: Vec<LogEvent>,
    cursors: Vec<String>,
}

/// One event to append.
pub struct Entry {
    /// Okta's event type, e.g. `group.user_membership.add`.
    pub event_type: &'static str,
    /// Okta's `displayMessage` for it.
    pub display_message: &'static str,
    /// Who.
    pub actor: Actor,
    /// What.
    pub targets: Vec<Target>,
}

impl SystemLog {
    /// Appends an event published at `now_ms`.
    pub fn write(&mut self, entry: Entry, now_ms: i64) {
        let seq = self.events.len() as u64 + 1;
        // A v1-looking UUID from the sequence and time: unique per emulator run.
        let uuid = format!(
            "{:08x}-{:04x}-11f0-8000-{:012x}",
            (now_ms as u64) & 0xffff_ffff,
            (seq >> 48) & 0xffff,
            seq & 0xffff_ffff_ffff
        );
        let event = LogEvent {
            seq,
            uuid,
            published_ms: now_ms,
            event_type: entry.event_type,
            display_message: entry.display_message,
            actor: entry.actor,
            targets: entry.targets,
        };
        self.cursors.push(event.cursor());
        self.events.push(event);
    }

    /// Events written so far.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Up to `limit` events published in `[since, until)` after the cursor `after`, and the
    /// cursor of the last one when more remain (always for a polling request, `until` unset).
    pub fn page(
        &self,
        since_ms: i64,
        until_ms: Option<i64>,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<Json>, Option<String>) {
        let upper = until_ms.unwrap_or(i64::MAX);
        let start = after.map_or(0, |a| self.cursors.partition_point(|c| c.as_str() <= a));
        let mut out = Vec::new();
        let mut last = after.map(str::to_owned);
        let mut more = false;
        for e in &self.events[start..] {
            if e.published_ms < since_ms || e.published_ms >= upper {
                continue;
            }
            if out.len() == limit {
                more = true;
                break;
            }
            out.push(e.json());
            last = Some(e.cursor());
        }
        let polling = until_ms.is_none();
        let next = if more || polling {
            Some(last.unwrap_or_else(|| format!("{:020}", 0)))
        } else {
            None
        };
        (out, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> Entry {
        Entry {
            event_type: "group.user_membership.add",
            display_message: "Add user to group membership",
            actor: Actor::api_admin(),
            targets: vec![Target {
                id: format!("00u{n}"),
                target_type: "User",
                alternate_id: format!("u{n}@example.com"),
                display_name: format!("U {n}"),
            }],
        }
    }

    #[test]
    fn bounded_pages_follow_cursors_and_end_polling_ones_never_do() {
        let mut log = SystemLog::default();
        for (n, t) in [1000, 2000, 3000, 4000, 5000].into_iter().enumerate() {
            log.write(entry(n), t);
        }
        let (page, next) = log.page(2000, Some(5000), None, 2);
        assert_eq!(page.len(), 2);
        assert_eq!(page[0]["target"][0]["id"], "00u1");
        let (page, next) = log.page(2000, Some(5000), next.as_deref(), 2);
        assert_eq!(page.len(), 1, "until is exclusive");
        assert_eq!(page[0]["target"][0]["id"], "00u3");
        assert_eq!(next, None);
        let (page, next) = log.page(6000, None, None, 100);
        assert!(page.is_empty());
        assert!(next.is_some(), "polling requests always have a next link");
        assert_ne!(
            log.page(0, None, None, 1).0[0]["uuid"],
            log.page(1500, None, None, 1).0[0]["uuid"]
        );
    }
}
