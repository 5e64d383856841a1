//! Runs the Argo CD health scripts shipped in `manifests/argocd/argocd-cm.yaml` with an
//! embedded Lua 5.1 (the dialect of Argo CD's gopher-lua) on status samples built from the
//! Rust status types, each sample first checked against the committed CRD schema.

use crate::common;

use common::{CrdValidator, load_yaml_docs};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mlua::serde::SerializeOptions;
use mlua::{Lua, LuaSerdeExt};
use okta_ciam_operator::controller::membership::decide::Reason as MembershipReason;
use okta_ciam_operator::crd::condition::new_condition;
use okta_ciam_operator::crd::{
    ConditionStatus, ConditionType, ConnectorReason, ConnectorStatus, MembershipStatus, SyncCounts,
};
use serde_json::{Value, json};

const CONNECTOR_KEY: &str = "resource.customizations.health.oktaciam.io_OktaCiamConnector";
const MEMBERSHIP_KEY: &str = "resource.customizations.health.oktaciam.io_GroupMembership";

fn script(key: &str) -> String {
    let cm = load_yaml_docs("manifests/argocd/argocd-cm.yaml").remove(0);
    assert_eq!(
        (cm["kind"].as_str(), cm["metadata"]["name"].as_str()),
        (Some("ConfigMap"), Some("argocd-cm"))
    );
    cm["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("argocd-cm has no {key}"))
        .to_owned()
}

/// What Argo CD reads back from a health script.
#[derive(Debug, serde::Deserialize)]
struct Health {
    status: String,
    message: Option<String>,
}

/// Runs a health script with `obj` bound as Argo CD binds it (JSON nulls are absent fields).
fn health(script: &str, obj: &Value) -> Health {
    let lua = Lua::new();
    let options = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
        .set_array_metatable(false);
    let value = lua.to_value_with(obj, options).unwrap();
    lua.globals().set("obj", value).unwrap();
    let result: mlua::Value = lua.load(script).eval().unwrap();
    let health: Health = lua.from_value(result).unwrap();
    assert!(
        [
            "Healthy",
            "Progressing",
            "Degraded",
            "Suspended",
            "Missing",
            "Unknown"
        ]
        .contains(&health.status.as_str()),
        "not an Argo CD health status: {health:?}"
    );
    health
}

fn at(seconds: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
}

fn ready(
    status: ConditionStatus,
    reason: &str,
    message: &str,
    generation: i64,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    new_condition(
        ConditionType::Ready,
        status,
        reason,
        message,
        Some(generation),
        at(1_780_000_000),
    )
}

/// An example object from manifests/examples with the given generation and status,
/// validated against its CRD so the samples stay realistic.
fn object(example: &str, kind: &str, crd: &str, generation: i64, status: Option<Value>) -> Value {
    let mut obj = load_yaml_docs(&format!("manifests/examples/{example}"))
        .into_iter()
        .find(|d| d["kind"] == kind)
        .unwrap();
    obj["metadata"]["generation"] = json!(generation);
    if let Some(status) = status {
        obj["status"] = status;
    }
    let errors = CrdValidator::for_crd_file(crd).errors(&obj);
    assert!(
        errors.is_empty(),
        "sample does not match the CRD: {errors:#?}"
    );
    obj
}

fn connector(generation: i64, status: Option<ConnectorStatus>) -> Value {
    let status = status.map(|s| serde_json::to_value(s).unwrap());
    object(
        "connector.yaml",
        "OktaCiamConnector",
        "oktaciamconnectors.yaml",
        generation,
        status,
    )
}

fn membership(generation: i64, status: Option<MembershipStatus>) -> Value {
    let status = status.map(|s| serde_json::to_value(s).unwrap());
    object(
        "groupmembership-plain.yaml",
        "GroupMembership",
        "groupmemberships.yaml",
        generation,
        status,
    )
}

fn synced_connector_status(generation: i64) -> ConnectorStatus {
    ConnectorStatus {
        observed_generation: Some(generation),
        conditions: vec![
            ready(
                ConditionStatus::True,
                ConnectorReason::Synced.as_str(),
                "Synced 120 users",
                generation,
            ),
            new_condition(
                ConditionType::CredentialsValid,
                ConditionStatus::True,
                "Valid",
                "",
                Some(generation),
                at(1),
            ),
        ],
        last_successful_sync_time: Some(at(1_780_000_000)),
        counts: Some(SyncCounts {
            users: 120,
            groups: 8,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn connector_is_progressing_until_the_operator_observes_it() {
    let s = script(CONNECTOR_KEY);
    assert_eq!(health(&s, &connector(1, None)).status, "Progressing");
    let lagging = health(&s, &connector(3, Some(synced_connector_status(2))));
    assert_eq!(lagging.status, "Progressing");
    assert!(lagging.message.unwrap().contains("generation 3"));
    // Status observed, but no Ready verdict yet (first sync running).
    let first = ConnectorStatus {
        observed_generation: Some(1),
        ..Default::default()
    };
    assert_eq!(health(&s, &connector(1, Some(first))).status, "Progressing");
    let unknown = ConnectorStatus {
        observed_generation: Some(1),
        conditions: vec![ready(ConditionStatus::Unknown, "Syncing", "first sync", 1)],
        ..Default::default()
    };
    assert_eq!(
        health(&s, &connector(1, Some(unknown))).status,
        "Progressing"
    );
}

#[test]
fn connector_ready_for_the_current_generation_is_healthy() {
    let s = script(CONNECTOR_KEY);
    let h = health(&s, &connector(2, Some(synced_connector_status(2))));
    assert_eq!(h.status, "Healthy");
    assert_eq!(h.message.as_deref(), Some("Synced: Synced 120 users"));
    // A Ready condition left from an older generation does not count.
    let mut stale = synced_connector_status(2);
    stale.conditions[0].observed_generation = Some(1);
    assert_eq!(health(&s, &connector(2, Some(stale))).status, "Progressing");
}

#[test]
fn connector_not_ready_maps_each_reason_like_the_rust_types() {
    let s = script(CONNECTOR_KEY);
    for reason in ConnectorReason::ALL {
        if reason == ConnectorReason::Synced {
            continue; // only ever written with Ready=True
        }
        let status = ConnectorStatus {
            observed_generation: Some(4),
            conditions: vec![ready(ConditionStatus::False, reason.as_str(), "details", 4)],
            ..Default::default()
        };
        let h = health(&s, &connector(4, Some(status)));
        let expected = match reason {
            ConnectorReason::Suspended => "Suspended",
            r if r.needs_attention() => "Degraded",
            _ => "Progressing",
        };
        assert_eq!(h.status, expected, "{reason}");
        assert_eq!(
            h.message.as_deref(),
            Some(format!("{reason}: details").as_str())
        );
    }
}

#[test]
fn suspended_connector_is_suspended_whatever_its_status() {
    let s = script(CONNECTOR_KEY);
    let mut obj = connector(2, Some(synced_connector_status(2)));
    obj["spec"]["suspend"] = json!(true);
    assert_eq!(health(&s, &obj).status, "Suspended");
}

fn membership_status(
    generation: i64,
    conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
) -> MembershipStatus {
    MembershipStatus {
        observed_generation: Some(generation),
        conditions,
        group_id: Some("00g1".into()),
        ready_users: Some("2/2".into()),
        ..Default::default()
    }
}

#[test]
fn membership_health_follows_ready_and_generation() {
    let s = script(MEMBERSHIP_KEY);
    assert_eq!(health(&s, &membership(1, None)).status, "Progressing");
    let granted = membership_status(
        1,
        vec![ready(
            ConditionStatus::True,
            "Granted",
            "all 2 users are members of Engineering",
            1,
        )],
    );
    let h = health(&s, &membership(1, Some(granted.clone())));
    assert_eq!(h.status, "Healthy");
    assert_eq!(
        h.message.as_deref(),
        Some("Granted: all 2 users are members of Engineering")
    );
    assert_eq!(
        health(&s, &membership(2, Some(granted))).status,
        "Progressing",
        "spec changed since"
    );
}

#[test]
fn membership_not_ready_maps_each_reason_like_the_rust_types() {
    let s = script(MEMBERSHIP_KEY);
    for reason in MembershipReason::ALL {
        assert_eq!(format!("{reason:?}"), reason.as_str());
        if matches!(
            reason,
            MembershipReason::Granted
                | MembershipReason::NoExpiry
                | MembershipReason::NotExpired
                | MembershipReason::Preexisting
        ) {
            continue; // Ready=True, the Expired condition's, and a per-user origin
        }
        let message = "bob@other.org is outside the connector's email domains";
        let status = membership_status(
            3,
            vec![ready(ConditionStatus::False, reason.as_str(), message, 3)],
        );
        let h = health(&s, &membership(3, Some(status)));
        let expected = match reason {
            MembershipReason::ConnectorSuspended => "Suspended",
            r if r.needs_attention() => "Degraded",
            _ => "Progressing",
        };
        assert_eq!(h.status, expected, "{reason}");
        assert_eq!(h.message, Some(format!("{reason}: {message}")));
    }
}

#[test]
fn expired_membership_is_healthy_with_its_message() {
    let s = script(MEMBERSHIP_KEY);
    let expired = new_condition(
        ConditionType::Expired,
        ConditionStatus::True,
        MembershipReason::Expired.as_str(),
        "Access expired at 2026-12-01T08:00:00Z and was revoked",
        Some(5),
        at(1_780_000_000),
    );
    let mut status = membership_status(
        5,
        vec![
            ready(
                ConditionStatus::False,
                MembershipReason::Expired.as_str(),
                "grant expired",
                5,
            ),
            expired,
        ],
    );
    status.expires_at = Some(at(1_780_000_000));
    let h = health(&s, &membership(5, Some(status.clone())));
    assert_eq!(h.status, "Healthy");
    assert_eq!(
        h.message.as_deref(),
        Some("Expired: Access expired at 2026-12-01T08:00:00Z and was revoked")
    );
    // Extending expiresAt bumps the generation: Progressing until the operator re-grants.
    assert_eq!(
        health(&s, &membership(6, Some(status))).status,
        "Progressing"
    );
}
