//! Conformance: the emulator's real HTTP answers, success and error, for every emulated
//! operation, validate against the response schemas of Okta's published Management API spec.
//! Schemas come from the spec file itself; only OpenAPI 3.0's dialect is translated to JSON
//! Schema (`nullable`, `discriminator`).

use std::sync::LazyLock;

use okta_emulator as emulator;
use okta_emulator::{EmulatorConfig, EmulatorHandle, Faults, Fixture, RateLimits};
use serde_json::{Map, Value, json};

/// The spec (located by `okta_emulator::spec`), or `None` on a machine without it.
static SPEC_JSON: LazyLock<Option<Value>> = LazyLock::new(|| {
    let path = okta_emulator::spec::spec_path()?;
    let text = std::fs::read_to_string(path).expect("the spec is readable");
    Some(serde_yaml::from_str(&text).expect("the spec is YAML"))
});

/// Whether the spec is here; without it `test` is reported as skipped.
fn spec_present(test: &str) -> bool {
    let present = SPEC_JSON.is_some();
    if !present {
        okta_emulator::spec::report_skip(test);
    }
    present
}

/// The spec, for tests that checked [`spec_present`] first.
fn spec_json() -> &'static Value {
    SPEC_JSON.as_ref().expect("checked by spec_present")
}

/// The spec's component schemas, translated once.
static COMPONENTS: LazyLock<Value> =
    LazyLock::new(|| json!({"schemas": translate(&spec_json()["components"]["schemas"])}));

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
    let spec = spec_json();
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

/// The `errorCode`s of the examples the spec gives for `method path status` (empty when it
/// gives none, or the status is not declared).
fn spec_example_codes(method: &str, path: &str, status: u16) -> Vec<String> {
    let spec = spec_json();
    let declared = &spec["paths"][path][method]["responses"][status.to_string()];
    if declared.is_null() {
        return Vec::new();
    }
    let examples = &resolve(spec, declared)["content"]["application/json"]["examples"];
    examples
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .filter_map(|e| resolve(spec, e)["value"]["errorCode"].as_str())
        .map(str::to_owned)
        .collect()
}

fn validate(method: &str, path: &str, status: u16, body: &Value) -> bool {
    let (schema, declared) = response_schema(method, path, status);
    validate_schema(&schema, &format!("{method} {path} -> {status}"), body);
    declared
}

/// Validates `body` against the spec's shared `Error` schema (for answers no operation
/// declares, such as a 405 for a method the path does not have).
fn validate_error(what: &str, body: &Value) {
    validate_schema(&json!({"$ref": "#/components/schemas/Error"}), what, body);
}

fn validate_schema(schema: &Value, what: &str, body: &Value) {
    let mut root = match translate(schema) {
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
        "{what}: body does not match the spec: {errors:?}\n{body:#}"
    );
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
    /// The `errorCode` an error answer must carry (every error case names one).
    code: Option<&'static str>,
}

fn case(method: &'static str, spec_path: &'static str, url: String, status: u16) -> Case {
    Case {
        method,
        spec_path,
        url,
        status,
        code: None,
    }
}

impl Case {
    /// Expects an error answer with `code` (NOTES.md's table of codes).
    fn code(self, code: &'static str) -> Case {
        Case {
            code: Some(code),
            ..self
        }
    }
}

/// Starts the emulator on `config`; returns it with its base URL (no trailing slash).
async fn start(config: EmulatorConfig) -> (EmulatorHandle, String) {
    let emu = emulator::start(config).await.unwrap();
    let base = emu.url().as_str().trim_end_matches('/').to_string();
    (emu, base)
}

/// The emulator configuration on [`FIXTURE`] with default rate limits.
fn fixture_config() -> EmulatorConfig {
    EmulatorConfig::new(Fixture::from_yaml(FIXTURE).unwrap())
}

/// Sends `c` with the API token `token`, an empty body and no other headers.
async fn request(client: &reqwest::Client, base: &str, token: &str, c: &Case) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(c.method.to_uppercase().as_bytes()).unwrap();
    client
        .request(method, format!("{base}{}", c.url))
        .header("Authorization", format!("SSWS {token}"))
        .header("Content-Length", "0")
        .send()
        .await
        .unwrap()
}

async fn check(client: &reqwest::Client, base: &str, token: &str, c: &Case) -> Value {
    let resp = request(client, base, token, c).await;
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
    if c.status >= 400 {
        assert_error_code(c, &body);
    }
    body
}

/// The error answer carries the case's `errorCode`, and it is one the spec's examples for that
/// response give when the spec gives any.
fn assert_error_code(c: &Case, body: &Value) {
    let expected = c
        .code
        .unwrap_or_else(|| panic!("{} {} -> {}: no errorCode", c.method, c.url, c.status));
    assert_eq!(body["errorCode"], expected, "{} {}", c.method, c.url);
    let examples = spec_example_codes(c.method, c.spec_path, c.status);
    assert!(
        examples.is_empty() || examples.iter().any(|e| e == expected),
        "{} {} -> {}: the spec's examples say {examples:?}",
        c.method,
        c.spec_path,
        c.status
    );
}

/// One or more cases per emulated operation, success and error, against `emu` (fixture
/// [`FIXTURE`]). Index 12 is Alice's role list.
fn cases(emu: &EmulatorHandle) -> Vec<Case> {
    let alice = emu.user_id("alice@example.com").unwrap();
    let eng = emu.group_id("Engineering").unwrap();
    let ad = emu.group_id("AD Admins").unwrap();
    let role = emu.state_json()["customRoles"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    vec![
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
        )
        .code("E0000031"),
        case(
            "get",
            "/api/v1/users",
            "/api/v1/users?search=id%20pr&filter=id%20pr".into(),
            400,
        )
        .code("E0000033"),
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
        )
        .code("E0000007"),
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
        )
        .code("E0000007"),
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
        )
        .code("E0000007"),
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
        )
        .code("E0000031"),
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
        )
        .code("E0000007"),
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
        )
        .code("E0000007"),
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
        )
        .code("E0000007"),
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
        )
        .code("E0000006"),
        case(
            "put",
            "/api/v1/groups/{groupId}/users/{userId}",
            format!("/api/v1/groups/{eng}/users/00unknown"),
            404,
        )
        .code("E0000007"),
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
        )
        .code("E0000006"),
        case(
            "delete",
            "/api/v1/groups/{groupId}/users/{userId}",
            "/api/v1/groups/00gnope/users/00unknown".into(),
            404,
        )
        .code("E0000007"),
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
        )
        .code("E0000007"),
        // A limit that is not a positive integer, on every operation that takes one.
        case("get", "/api/v1/users", "/api/v1/users?limit=0".into(), 400).code("E0000001"),
        case(
            "get",
            "/api/v1/groups",
            "/api/v1/groups?limit=abc".into(),
            400,
        )
        .code("E0000001"),
        case(
            "get",
            "/api/v1/groups/{groupId}/users",
            format!("/api/v1/groups/{eng}/users?limit=-1"),
            400,
        )
        .code("E0000001"),
        case(
            "get",
            "/api/v1/iam/assignees/users",
            "/api/v1/iam/assignees/users?limit=1.5".into(),
            400,
        )
        .code("E0000001"),
        // After the membership writes above, so the log has events to validate.
        case(
            "get",
            "/api/v1/logs",
            "/api/v1/logs?since=2000-01-01T00:00:00Z&until=2100-01-01T00:00:00Z&limit=1000".into(),
            200,
        ),
        case("get", "/api/v1/logs", "/api/v1/logs?limit=abc".into(), 400).code("E0000001"),
        case(
            "get",
            "/api/v1/logs",
            "/api/v1/logs?filter=eventType%20eq%20%22x%22".into(),
            400,
        )
        .code("E0000001"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_as_the_spec_says() {
    if !spec_present("emulator_conformance::every_operation_answers_as_the_spec_says") {
        return;
    }
    let (emu, base) = start(fixture_config()).await;
    let alice = emu.user_id("alice@example.com").unwrap();
    let eng = emu.group_id("Engineering").unwrap();
    let client = reqwest::Client::new();
    let cases = cases(&emu);
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
    // The System Log holds the API writes and the control change, in Okta's shape (the list
    // was validated above; here its content).
    let logs = cases
        .iter()
        .find(|c| c.spec_path == "/api/v1/logs")
        .unwrap();
    let events = check(&client, &base, &emu.token(), logs).await;
    let events = events.as_array().unwrap();
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["eventType"].as_str().unwrap(),
                e["actor"]["alternateId"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        // The PUT found Alice already a member: no change, no event.
        [
            ("group.user_membership.remove", "api-admin@emulator.invalid"),
            (
                "group.user_membership.add",
                "console-admin@emulator.invalid"
            ),
        ]
    );
    let last = events.last().unwrap();
    assert_eq!(last["target"][0]["id"], alice.as_str());
    assert_eq!(last["target"][0]["type"], "User");
    assert_eq!(last["target"][1]["id"], eng.as_str());
    assert_eq!(last["target"][1]["type"], "UserGroup");

    // 401 on every operation, answered with the spec's Error shape.
    for c in &cases {
        let resp = request(&client, &base, "wrong", c).await;
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["errorCode"], "E0000011");
        validate(c.method, c.spec_path, 401, &body);
    }
    emu.shutdown().await;
}

/// OAuth refusals on `/api/v1`: a token without the operation's scope gets 403, an unknown
/// token 401, both with the spec's error shape (the token endpoint itself is not in the spec).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_refusals_on_every_operation_match_the_spec() {
    use okta_ciam_operator::okta::PrivateKey;
    use okta_ciam_operator::okta::oauth::{ASSERTION_TYPE, assertion_claims};
    if !spec_present("emulator_conformance::oauth_refusals_on_every_operation_match_the_spec") {
        return;
    }
    let key = PrivateKey::generate_es256().0;
    let mut fixture = Fixture::from_yaml(FIXTURE).unwrap();
    // A Bearer app (no DPoP) keeps the requests plain; it may only read the org.
    fixture.service_apps = vec![okta_emulator::FixtureServiceApp {
        dpop: false,
        ..okta_emulator::FixtureServiceApp::new(
            "0oaConformance",
            vec![key.public_jwk()],
            &["okta.orgs.read"],
        )
    }];
    let (emu, base) = start(EmulatorConfig::new(fixture)).await;
    let token_url = emu.url().join("oauth2/v1/token").unwrap();
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = assertion_claims("0oaConformance", &token_url, iat, "conformance-1");
    let assertion = key.sign_jwt(Map::new(), &claims).unwrap();
    let client = reqwest::Client::new();
    let answer: Value = client
        .post(token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "okta.orgs.read"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["token_type"], "Bearer", "{answer}");
    let token = answer["access_token"].as_str().unwrap();
    for c in cases(&emu).iter().filter(|c| c.spec_path != "/api/v1/org") {
        for (bearer, status) in [(token, 403u16), ("unknown-token", 401)] {
            let method = reqwest::Method::from_bytes(c.method.to_uppercase().as_bytes()).unwrap();
            let resp = client
                .request(method, format!("{base}{}", c.url))
                .header("Authorization", format!("Bearer {bearer}"))
                .header("Content-Length", "0")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), status, "{} {}", c.method, c.url);
            let challenge = resp.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .to_owned();
            let want = if status == 403 {
                "insufficient_scope"
            } else {
                "invalid_token"
            };
            assert!(
                challenge.starts_with("Bearer ") && challenge.contains(want),
                "{challenge}"
            );
            let body: Value = resp.json().await.unwrap();
            validate(c.method, c.spec_path, status, &body);
        }
    }
    emu.shutdown().await;
}

/// Sends `c` and returns status, headers and the JSON body (null when empty).
async fn send(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    c: &Case,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = request(client, base, token, c).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, headers, body)
}

fn header_u64(headers: &reqwest::header::HeaderMap, name: &str) -> u64 {
    headers[name].to_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_answers_match_the_spec_429_on_every_operation() {
    if !spec_present(
        "emulator_conformance::rate_limited_answers_match_the_spec_429_on_every_operation",
    ) {
        return;
    }
    let mut config = fixture_config();
    // One request per bucket and window: the first call of a bucket passes, every later one
    // is refused until the (long) window ends.
    config.rate_limits = RateLimits {
        window: std::time::Duration::from_secs(3600),
        users: 1,
        user_by_id: 1,
        groups: 1,
        group_by_id: 1,
        logs: 1,
        default: 1,
        ..RateLimits::default()
    };
    let (emu, base) = start(config).await;
    let client = reqwest::Client::new();
    let mut operations = std::collections::BTreeSet::new();
    for c in cases(&emu).into_iter().filter(|c| c.status < 400) {
        if !operations.insert((c.method, c.spec_path)) {
            continue;
        }
        let limited = Case { status: 429, ..c }.code("E0000047");
        // At most two tries: the bucket's one allowed call, then the refusal.
        let (mut status, mut headers, mut body) =
            send(&client, &base, &emu.token(), &limited).await;
        if status != 429 {
            (status, headers, body) = send(&client, &base, &emu.token(), &limited).await;
        }
        assert_eq!(status, 429, "{} {}", limited.method, limited.url);
        assert!(
            validate(limited.method, limited.spec_path, 429, &body),
            "{} {}: 429 is declared",
            limited.method,
            limited.spec_path
        );
        assert_error_code(&limited, &body);
        assert_eq!(header_u64(&headers, "x-rate-limit-limit"), 1);
        assert_eq!(header_u64(&headers, "x-rate-limit-remaining"), 0);
        assert!(headers.contains_key("x-rate-limit-reset"));
    }
    // Every emulated operation (docs/emulator.md's table) was covered.
    assert_eq!(operations.len(), 15, "{operations:?}");
    emu.shutdown().await;
}

/// Over the concurrency limit Okta answers 429 with `X-Rate-Limit-Limit: 0` and
/// `Remaining: 0` (NOTES.md), a body the spec's 429 describes, without spending the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_429_matches_the_spec() {
    if !spec_present("emulator_conformance::the_concurrency_429_matches_the_spec") {
        return;
    }
    let mut config = fixture_config();
    config.rate_limits = RateLimits {
        concurrency: 1,
        ..RateLimits::default()
    };
    let (emu, base) = start(config).await;
    let client = reqwest::Client::new();
    // The first request stalls (until shutdown), holding the one concurrency slot.
    emu.set_faults(Faults {
        stall_next: 1,
        ..Faults::default()
    });
    let stalled = {
        let (client, base, token) = (client.clone(), base.clone(), emu.token());
        tokio::spawn(async move {
            let c = case("get", "/api/v1/org", "/api/v1/org".into(), 200);
            send(&client, &base, &token, &c).await
        })
    };
    // Bounded wait until the emulator has picked up (and so is holding) the stalled request.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while emu.faults().stall_next != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stall never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let c = case("get", "/api/v1/users", "/api/v1/users".into(), 429).code("E0000047");
    let (status, headers, body) = send(&client, &base, &emu.token(), &c).await;
    assert_eq!(status, 429);
    assert!(validate(c.method, c.spec_path, 429, &body));
    assert_error_code(&c, &body);
    assert_eq!(header_u64(&headers, "x-rate-limit-limit"), 0);
    assert_eq!(header_u64(&headers, "x-rate-limit-remaining"), 0);
    assert_eq!(emu.stats().rate_limited, 1);
    emu.shutdown().await;
    // Shutdown releases the stalled request; it was never refused.
    let (status, _, _) = stalled.await.unwrap();
    assert_eq!(status, 200);
}

/// A method a known path does not serve: 405 `E0000022` with the spec's `Error` body. Okta's
/// spec declares no 405 responses, so the shared `Error` schema is the reference.
#[tokio::test]
async fn an_unsupported_method_gets_405_with_the_spec_error_shape() {
    if !spec_present(
        "emulator_conformance::an_unsupported_method_gets_405_with_the_spec_error_shape",
    ) {
        return;
    }
    let (emu, base) = start(fixture_config()).await;
    let eng = emu.group_id("Engineering").unwrap();
    let alice = emu.user_id("alice@example.com").unwrap();
    let client = reqwest::Client::new();
    for (method, url) in [
        ("post", "/api/v1/org".to_owned()),
        ("delete", "/api/v1/users".to_owned()),
        ("post", format!("/api/v1/groups/{eng}/users/{alice}")),
    ] {
        let c = Case {
            method,
            spec_path: "",
            url,
            status: 405,
            code: Some("E0000022"),
        };
        let (status, headers, body) = send(&client, &base, &emu.token(), &c).await;
        assert_eq!(status, 405, "{method} {}", c.url);
        assert!(headers.contains_key("x-okta-request-id"));
        validate_error(&format!("{method} {} -> 405", c.url), &body);
        assert_eq!(body["errorCode"], "E0000022");
    }
    emu.shutdown().await;
}

#[test]
fn the_translated_schemas_do_reject_wrong_bodies() {
    if !spec_present("emulator_conformance::the_translated_schemas_do_reject_wrong_bodies") {
        return;
    }
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
