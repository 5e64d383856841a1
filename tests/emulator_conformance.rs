//! Conformance: the emulator's real HTTP answers, success and error, for every emulated
//! operation, validate against the response schemas of Okta's published Management API spec.
//! Schemas come from the spec file itself; only OpenAPI 3.0's dialect is translated to JSON
//! Schema (`nullable`, `discriminator`).

use std::sync::LazyLock;

use okta_ciam_operator::emulator::{self, EmulatorConfig, Fixture, RateLimits};
use serde_json::{Map, Value, json};

const SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/okta/management-openapi-2026.06.3.yaml"
);

static SPEC_JSON: LazyLock<Value> = LazyLock::new(|| {
    let text = std::fs::read_to_string(SPEC).expect("the spec is next to the repository");
    serde_yaml::from_str(&text).expect("the spec is YAML")
});

/// The spec's component schemas, translated once.
static COMPONENTS: LazyLock<Value> =
    LazyLock::new(|| json!({"schemas": translate(&SPEC_JSON["components"]["schemas"])}));

/// OpenAPI 3.0 schema -> JSON Schema 2020-12: `nullable` becomes a null alternative, and a
/// `oneOf` with a `discriminator` becomes `anyOf` plus if/then on the discriminator value
/// (plain `oneOf` would reject objects matching several open schemas, which the discriminator
/// disambiguates in OpenAPI).
fn translate(schema: &Value) -> Value {
    match schema {
        Value::Array(items) => Value::Array(items.iter().map(translate).collect()),
        Value::Object(map) => {
            let mut out: Map<String, Value> = map
                .iter()
                .filter(|(k, _)| *k != "nullable" && *k != "discriminator")
                .map(|(k, v)| (k.clone(), translate(v)))
                .collect();
            if let (Some(disc), Some(one_of)) = (map.get("discriminator"), out.remove("oneOf")) {
                out.insert("anyOf".into(), one_of);
                let prop = disc["propertyName"]
                    .as_str()
                    .expect("discriminator property");
                let rules: Vec<Value> = disc["mapping"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(value, target)| {
                                json!({
                                    "if": {"properties": {prop: {"const": value}}, "required": [prop]},
                                    "then": {"$ref": target},
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.insert("allOf".into(), Value::Array(rules));
            }
            if map.get("nullable") == Some(&Value::Bool(true)) {
                if let Some(Value::String(t)) = out.get("type").cloned() {
                    out.insert("type".into(), json!([t, "null"]));
                    if let Some(Value::Array(e)) = out.get_mut("enum") {
                        e.push(Value::Null);
                    }
                } else {
                    return json!({"anyOf": [Value::Object(out), {"type": "null"}]});
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn resolve<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => spec
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {r}")),
        None => v,
    }
}

/// The response schema the spec declares for `method path status`; for an error status the
/// operation does not list (401 everywhere, 400 on list operations), the spec's shared `Error`
/// schema, which every declared error response of the spec uses.
fn response_schema(method: &str, path: &str, status: u16) -> (Value, bool) {
    let spec = &*SPEC_JSON;
    let op = &spec["paths"][path][method];
    assert!(op.is_object(), "{method} {path} is not in the spec");
    let declared = &op["responses"][status.to_string()];
    if declared.is_null() {
        assert!(status >= 400, "{method} {path} has no {status} response");
        return (json!({"$ref": "#/components/schemas/Error"}), false);
    }
    let response = resolve(spec, declared);
    let schema = &response["content"]["application/json"]["schema"];
    (schema.clone(), true)
}

fn validate(method: &str, path: &str, status: u16, body: &Value) -> bool {
    let (schema, declared) = response_schema(method, path, status);
    let mut root = match translate(&schema) {
        Value::Object(m) => m,
        other => panic!("schema is not an object: {other}"),
    };
    root.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    root.insert("components".into(), COMPONENTS.clone());
    let validator = jsonschema::validator_for(&Value::Object(root)).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} -> {status}: body does not match the spec: {errors:?}\n{body:#}"
    );
    declared
}

const FIXTURE: &str = r#"
tokens: [test-token]
users:
  - {login: alice@example.com, firstName: Alice, lastName: Liddell, secondEmail: alice@home.example}
  - {login: bob@example.com, firstName: Bob, lastName: Builder, status: SUSPENDED}
  - {login: carol@example.org, firstName: Carol, lastName: Danvers, status: DEPROVISIONED}
  - {login: dave@example.com, status: STAGED}
groups:
  - {name: Everyone, type: BUILT_IN, members: [alice@example.com, bob@example.com, carol@example.org, dave@example.com]}
  - {name: Engineering, description: Builders, members: [alice@example.com, bob@example.com]}
  - {name: AD Admins, type: APP_GROUP, members: [bob@example.com]}
customRoles:
  - {label: Helpdesk Lite, description: Reset passwords, permissions: [okta.users.read, okta.users.credentials.resetPassword]}
roleAssignments:
  - {user: alice@example.com, role: ORG_ADMIN}
  - {group: Engineering, role: HELP_DESK_ADMIN}
  - {group: Engineering, customRole: Helpdesk Lite, resourceSet: Support}
"#;

struct Case {
    method: &'static str,
    spec_path: &'static str,
    url: String,
    status: u16,
}

fn case(method: &'static str, spec_path: &'static str, url: String, status: u16) -> Case {
    Case {
        method,
        spec_path,
        url,
        status,
    }
}

async fn check(client: &reqwest::Client, base: &str, token: &str, c: &Case) -> Value {
    let method = reqwest::Method::from_bytes(c.method.to_uppercase().as_bytes()).unwrap();
    let resp = client
        .request(method, format!("{base}{}", c.url))
        .header("Authorization", format!("SSWS {token}"))
        .header("Content-Length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), c.status, "{} {}", c.method, c.url);
    for h in [
        "date",
        "x-okta-request-id",
        "x-rate-limit-limit",
        "x-rate-limit-remaining",
        "x-rate-limit-reset",
    ] {
        assert!(resp.headers().contains_key(h), "{} lacks {h}", c.url);
    }
    let bytes = resp.bytes().await.unwrap();
    if c.status == 204 {
        assert!(bytes.is_empty());
        assert!(response_schema(c.method, c.spec_path, 204).1);
        return Value::Null;
    }
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    validate(c.method, c.spec_path, c.status, &body);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_as_the_spec_says() {
    let emu = emulator::start(EmulatorConfig::new(Fixture::from_yaml(FIXTURE).unwrap()))
        .await
        .unwrap();
    let base = emu.url().as_str().trim_end_matches('/').to_string();
    let alice = emu.user_id("alice@example.com").unwrap();
    let eng = emu.group_id("Engineering").unwrap();
    let ad = emu.group_id("AD Admins").unwrap();
    let role = emu.state_json()["customRoles"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let client = reqwest::Client::new();
    let cases = vec![
        case("get", "/api/v1/org", "/api/v1/org".into(), 200),
        case("get", "/api/v1/users", "/api/v1/users".into(), 200),
        case(
            "get",
            "/api/v1/users",
            "/api/v1/users?search=profile.email%20co%20%22example%22&limit=2".into(),
            200,
        ),
        case(
            "get",
            "/api/v1/users",
            "/api/v1/users?filter=status%20eq%20%22ACTIVE%22".into(),
            200,
        ),
        case("get", "/api/v1/users", "/api/v1/users?q=al".into(), 200),
        case(
            "get",
            "/api/v1/users",
            "/api/v1/users?search=profile.email%20ew%20%22x%22".into(),
            400,
        ),
        case(
            "get",
            "/api/v1/users",
            "/api/v1/users?search=id%20pr&filter=id%20pr".into(),
            400,
        ),
        case(
            "get",
            "/api/v1/users/{id}",
            format!("/api/v1/users/{alice}"),
            200,
        ),
        case(
            "get",
            "/api/v1/users/{id}",
            "/api/v1/users/dave%40example.com".into(),
            200,
        ),
        case(
            "get",
            "/api/v1/users/{id}",
            "/api/v1/users/00unknown".into(),
            404,
        ),
        case(
            "get",
            "/api/v1/users/{id}/groups",
            format!("/api/v1/users/{alice}/groups"),
            200,
        ),
        case(
            "get",
            "/api/v1/users/{id}/groups",
            "/api/v1/users/00unknown/groups".into(),
            404,
        ),
        case(
            "get",
            "/api/v1/users/{userId}/roles",
            format!("/api/v1/users/{alice}/roles"),
            200,
        ),
        case(
            "get",
            "/api/v1/users/{userId}/roles",
            "/api/v1/users/00unknown/roles".into(),
            404,
        ),
        case(
            "get",
            "/api/v1/groups",
            "/api/v1/groups?expand=stats".into(),
            200,
        ),
        case(
            "get",
            "/api/v1/groups",
            "/api/v1/groups?search=profile.name%20co%20%22eng%22&limit=1".into(),
            200,
        ),
        case("get", "/api/v1/groups", "/api/v1/groups?q=En".into(), 200),
        case(
            "get",
            "/api/v1/groups",
            "/api/v1/groups?filter=profile.name%20eq%20%22x%22".into(),
            400,
        ),
        case(
            "get",
            "/api/v1/groups/{groupId}",
            format!("/api/v1/groups/{eng}"),
            200,
        ),
        case(
            "get",
            "/api/v1/groups/{groupId}",
            "/api/v1/groups/00gnope".into(),
            404,
        ),
        case(
            "get",
            "/api/v1/groups/{groupId}/users",
            format!("/api/v1/groups/{eng}/users?limit=1"),
            200,
        ),
        case(
            "get",
            "/api/v1/groups/{groupId}/users",
            "/api/v1/groups/00gnope/users".into(),
            404,
        ),
        case(
            "get",
            "/api/v1/groups/{groupId}/roles",
            format!("/api/v1/groups/{eng}/roles"),
            200,
        ),
        case(
            "get",
            "/api/v1/groups/{groupId}/roles",
            "/api/v1/groups/00gnope/roles".into(),
            404,
        ),
        case(
            "put",
            "/api/v1/groups/{groupId}/users/{userId}",
            format!("/api/v1/groups/{eng}/users/{alice}"),
            204,
        ),
        case(
            "put",
            "/api/v1/groups/{groupId}/users/{userId}",
            format!("/api/v1/groups/{ad}/users/{alice}"),
            403,
        ),
        case(
            "put",
            "/api/v1/groups/{groupId}/users/{userId}",
            format!("/api/v1/groups/{eng}/users/00unknown"),
            404,
        ),
        case(
            "delete",
            "/api/v1/groups/{groupId}/users/{userId}",
            format!("/api/v1/groups/{eng}/users/{alice}"),
            204,
        ),
        case(
            "delete",
            "/api/v1/groups/{groupId}/users/{userId}",
            format!("/api/v1/groups/{ad}/users/{alice}"),
            403,
        ),
        case(
            "delete",
            "/api/v1/groups/{groupId}/users/{userId}",
            "/api/v1/groups/00gnope/users/00unknown".into(),
            404,
        ),
        case(
            "get",
            "/api/v1/iam/assignees/users",
            "/api/v1/iam/assignees/users?limit=1".into(),
            200,
        ),
        case("get", "/api/v1/iam/roles", "/api/v1/iam/roles".into(), 200),
        case(
            "get",
            "/api/v1/iam/roles/{roleIdOrLabel}/permissions",
            format!("/api/v1/iam/roles/{role}/permissions"),
            200,
        ),
        case(
            "get",
            "/api/v1/iam/roles/{roleIdOrLabel}/permissions",
            "/api/v1/iam/roles/cr0nope/permissions".into(),
            404,
        ),
    ];
    // Put Alice back in Engineering so the role listing below sees group-held roles.
    for c in &cases {
        check(&client, &base, &emu.token(), c).await;
    }
    emu.add_membership(&eng, &alice).unwrap();
    let roles = check(&client, &base, &emu.token(), &cases[12]).await;
    let types: Vec<&str> = roles
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["ORG_ADMIN", "HELP_DESK_ADMIN", "CUSTOM"]);

    // 401 on every operation, answered with the spec's Error shape.
    for c in &cases {
        let resp = client
            .request(
                reqwest::Method::from_bytes(c.method.to_uppercase().as_bytes()).unwrap(),
                format!("{base}{}", c.url),
            )
            .header("Authorization", "SSWS wrong")
            .header("Content-Length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["errorCode"], "E0000011");
        validate(c.method, c.spec_path, 401, &body);
    }
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_answers_match_the_spec_429() {
    let mut config = EmulatorConfig::new(Fixture::from_yaml(FIXTURE).unwrap());
    config.rate_limits = RateLimits {
        default: 1,
        users: 1,
        ..RateLimits::default()
    };
    let emu = emulator::start(config).await.unwrap();
    let base = emu.url().as_str().trim_end_matches('/').to_string();
    let client = reqwest::Client::new();
    for (spec_path, url) in [
        ("/api/v1/org", "/api/v1/org"),
        ("/api/v1/users", "/api/v1/users"),
    ] {
        check(
            &client,
            &base,
            &emu.token(),
            &case("get", spec_path, url.into(), 200),
        )
        .await;
        let body = check(
            &client,
            &base,
            &emu.token(),
            &case("get", spec_path, url.into(), 429),
        )
        .await;
        assert_eq!(body["errorCode"], "E0000047");
        assert!(response_schema("get", spec_path, 429).1, "429 is declared");
    }
    emu.shutdown().await;
}

#[test]
fn the_translated_schemas_do_reject_wrong_bodies() {
    // Guards the validator set-up itself: wrong types, enum values and nulls must fail.
    let cases = [
        ("/api/v1/users/{id}", json!({"id": "x", "status": "HAPPY"})),
        ("/api/v1/users/{id}", json!({"id": 5})),
        ("/api/v1/users/{id}", json!({"profile": {"login": null}})),
        ("/api/v1/groups/{groupId}", json!({"type": "SOMETHING"})),
    ];
    for (path, body) in cases {
        let (schema, _) = response_schema("get", path, 200);
        let mut root = translate(&schema).as_object().unwrap().clone();
        root.insert("components".into(), COMPONENTS.clone());
        let validator = jsonschema::validator_for(&Value::Object(root)).unwrap();
        assert!(!validator.is_valid(&body), "{path} accepted {body}");
    }
    // And nullable fields accept null.
    let (schema, _) = response_schema("get", "/api/v1/users/{id}", 200);
    let mut root = translate(&schema).as_object().unwrap().clone();
    root.insert("components".into(), COMPONENTS.clone());
    let validator = jsonschema::validator_for(&Value::Object(root)).unwrap();
    assert!(validator.is_valid(&json!({"lastLogin": null, "profile": {"secondEmail": null}})));
}
