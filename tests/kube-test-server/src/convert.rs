//! Version conversion between a served form and the stored form. Only Events need it: the real
//! server keeps one `events` store and serves `events.k8s.io/v1` as a renamed view of core v1 Events.

use crate::resources::ResourceType;
use serde_json::Value;

/// How a served type maps onto its storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// Stored as served.
    None,
    /// `events.k8s.io/v1` Event stored as a core v1 Event.
    EventsV1,
}

/// `(events.k8s.io/v1 field, core v1 field)`.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(obj: &mut Value, pairs: impl Iterator<Item = (&'static str, &'static str)>) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let moved: Vec<(&str, Option<Value>)> =
        pairs.map(|(from, to)| (to, map.remove(from))).collect();
    for (to, value) in moved {
        if let Some(v) = value {
            map.insert(to.to_string(), v);
        }
    }
}

/// Served form to stored form.
pub fn to_storage(rt: &ResourceType, mut obj: Value) -> Value {
    if rt.conversion == Conversion::EventsV1 {
        rename(&mut obj, EVENT_FIELDS.iter().copied());
    }
    obj
}

/// Stored form to served form.
pub fn from_storage(rt: &ResourceType, mut obj: Value) -> Value {
    if rt.conversion == Conversion::EventsV1 {
        rename(&mut obj, EVENT_FIELDS.iter().map(|(a, b)| (*b, *a)));
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_round_trip_between_groups() {
        let rt = crate::resources::builtins()
            .into_iter()
            .find(|t| t.group == "events.k8s.io")
            .unwrap();
        let v1 = json!({"regarding": {"name": "w"}, "note": "hi", "reportingController": "c", "reason": "R"});
        let core = to_storage(&rt, v1.clone());
        assert_eq!(
            core,
            json!({"involvedObject": {"name": "w"}, "message": "hi", "reportingComponent": "c", "reason": "R"})
        );
        assert_eq!(from_storage(&rt, core), v1);
    }
}
