//! Semantic tests of the emulator over real HTTP (plain reqwest, no Okta client): pagination,
//! search and filter rules, auth, membership rules, rate limits, faults and the controls.

use std::collections::HashSet;
use std::time::Duration;

use okta_emulator as emulator;
use okta_emulator::{EmulatorConfig, EmulatorHandle, Faults, Fixture, GenerateSpec, RateLimits};
use reqwest::header::LINK;
use serde_json::{Value, json};

async fn start_generated(spec: &str, seed: u64, limits: RateLimits) -> EmulatorHandle {
    let spec: GenerateSpec = spec.parse().unwrap();
    let config = EmulatorConfig {
        fixture: Fixture::generate(&spec, seed),
        rate_limits: limits,
    };
    emulator::start(config).await.unwrap()
}

struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn new(emu: &EmulatorHandle) -> Api {
        Api {
            client: reqwest::Client::new(),
            base: emu.url().as_str().trim_end_matches('/').to_string(),
            token: emu.token(),
        }
    }

    async fn get(&self, path_or_url: &str) -> reqwest::Response {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        self.client
            .get(url)
            .header("Authorization", format!("SSWS {}", self.token))
            .send()
            .await
            .unwrap()
    }

    async fn json(&self, path: &str) -> (u16, Value) {
        let r = self.get(path).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    async fn send(&self, method: reqwest::Method, path: &str) -> (u16, Option<Value>) {
        let r = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("SSWS {}", self.token))
            .header("Content-Length", "0")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let bytes = r.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).ok())
    }

    /// `GET /__emulator/<what>` of the emulator's controls, which take no token.
    async fn control(&self, what: &str) -> Value {
        self.client
            .get(format!("{}/__emulator/{what}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Follows `Link: rel="next"` to the end; returns the items and the number of pages.
    async fn collect(&self, first: &str) -> (Vec<Value>, usize) {
        let mut url = first.to_string();
        let mut items = Vec::new();
        for pages in 1..=10_000 {
            let resp = self.get(&url).await;
            assert_eq!(resp.status(), 200, "{url}");
            let links: Vec<String> = resp
                .headers()
                .get_all(LINK)
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect();
            // One header line per relation, and always a self link.
            assert!(links.iter().all(|l| l.matches("rel=").count() == 1));
            assert!(links.iter().any(|l| l.ends_with("rel=\"self\"")));
            let next = links
                .iter()
                .find(|l| l.ends_with("rel=\"next\""))
                .map(|l| l[1..l.find('>').unwrap()].to_string());
            let page: Vec<Value> = resp.json().await.unwrap();
            items.extend(page);
            match next {
                Some(n) => {
                    assert!(n.starts_with(&self.base), "absolute link on our host: {n}");
                    url = n;
                }
                None => return (items, pages),
            }
        }
        panic!("pagination did not end");
    }
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect()
}

fn assert_sorted_unique(ids: &[String]) {
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "stable id order");
}

#[tokio::test]
async fn lists_paginate_by_cursor_with_link_headers() {
    let emu = start_generated(
        "users=450,groups=12,memberships-per-user=6",
        3,
        RateLimits::default(),
    )
    .await;
    let api = Api::new(&emu);
    let state = emu.state_json();
    let users = state["users"].as_array().unwrap();
    let not_deprovisioned = users
        .iter()
        .filter(|u| u["status"] != "DEPROVISIONED")
        .count();

    let (all, pages) = api.collect("/api/v1/users").await;
    assert_eq!(all.len(), not_deprovisioned);
    assert_eq!(pages, not_deprovisioned.div_ceil(200));
    assert_sorted_unique(&ids(&all));

    // A limit above the maximum is capped at 200.
    let (status, page) = api.json("/api/v1/users?limit=5000").await;
    assert_eq!((status, page.as_array().unwrap().len()), (200, 200));
    let (status, err) = api.json("/api/v1/users?limit=abc").await;
    assert_eq!((status, err["errorCode"].as_str()), (400, Some("E0000001")));

    let (groups, pages) = api.collect("/api/v1/groups?limit=5").await;
    assert_eq!(groups.len(), 12);
    assert_eq!(pages, 3);
    assert_sorted_unique(&ids(&groups));

    let everyone = emu.group_id("Everyone").unwrap();
    let (members, pages) = api
        .collect(&format!("/api/v1/groups/{everyone}/users?limit=100"))
        .await;
    assert_eq!(members.len(), 450, "members include every status");
    assert_eq!(pages, 5);
    assert_eq!(ids(&members), emu.members_of(&everyone));

    let (_, assignees_first) = api.json("/api/v1/iam/assignees/users?limit=1").await;
    let next = assignees_first["_links"]["next"]["href"].as_str().unwrap();
    assert!(next.starts_with(&api.base) && next.contains("after="));
    emu.shutdown().await;
}

#[tokio::test]
async fn body_cursor_pages_cover_every_role_assignee() {
    let emu = start_generated("users=200,groups=8,admins=30", 4, RateLimits::default()).await;
    let api = Api::new(&emu);
    let mut url = "/api/v1/iam/assignees/users?limit=7".to_string();
    let mut seen = Vec::new();
    for _ in 0..100 {
        let (status, body) = api.json(&url).await;
        assert_eq!(status, 200);
        seen.extend(ids(body["value"].as_array().unwrap()));
        match body["_links"]["next"]["href"].as_str() {
            Some(n) => url = n.to_string(),
            None => break,
        }
    }
    assert_sorted_unique(&seen);
    let state = emu.state_json();
    let mut expected = HashSet::new();
    for a in state["roleAssignments"].as_array().unwrap() {
        if let Some(u) = a["user"].as_str() {
            expected.insert(u.to_string());
        } else {
            expected.extend(emu.members_of(a["group"].as_str().unwrap()));
        }
    }
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), expected);
    emu.shutdown().await;
}

const SMALL: &str = r#"
tokens: [test-token, second-token]
users:
  - {login: alice@example.com, firstName: Alice, lastName: Liddell, lastUpdated: "2026-03-01T00:00:00.000Z"}
  - {login: bob@example.com.evil.io, firstName: Bob, lastName: Builder, status: SUSPENDED, lastUpdated: "2025-03-01T00:00:00.000Z"}
  - {login: carol@example.community, firstName: Carol, lastName: Alison, status: DEPROVISIONED}
  - {login: dave@example.org, firstName: Dave, lastName: Jones}
groups:
  - {name: Everyone, type: BUILT_IN, members: [alice@example.com, dave@example.org]}
  - {name: Engineering, description: Platform builders, members: [alice@example.com]}
  - {name: Engineering Managers, members: []}
  - {name: AD Admins, type: APP_GROUP, members: [dave@example.org]}
customRoles:
  - {label: Helpdesk Lite, permissions: [okta.users.read]}
roleAssignments:
  - {user: dave@example.org, role: ORG_ADMIN}
  - {group: Engineering, customRole: Helpdesk Lite, resourceSet: Support}
"#;

async fn start_small(limits: Option<RateLimits>) -> EmulatorHandle {
    let fixture = Fixture::from_yaml(SMALL).unwrap();
    let mut config = EmulatorConfig::new(fixture);
    if let Some(l) = limits {
        config.rate_limits = l;
    }
    emulator::start(config).await.unwrap()
}

async fn logins(api: &Api, query: &str) -> Vec<String> {
    let (status, body) = api.json(&format!("/api/v1/users?{query}")).await;
    assert_eq!(status, 200, "{query}: {body}");
    let mut l: Vec<String> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["profile"]["login"].as_str().unwrap().to_string())
        .collect();
    l.sort();
    l
}

/// Logins of the users a `search` or `filter` expression selects.
async fn logins_where(api: &Api, param: &str, expression: &str) -> Vec<String> {
    logins(api, &format!("{param}={}", enc(expression))).await
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn user_search_and_filter_follow_okta_rules() {
    let emu = start_small(None).await;
    let api = Api::new(&emu);
    // Plain lists omit DEPROVISIONED; search and filter include it.
    assert_eq!(
        logins(&api, "").await,
        [
            "alice@example.com",
            "bob@example.com.evil.io",
            "dave@example.org"
        ]
    );
    let cases: [(&str, &str, &[&str]); 7] = [
        (
            "search",
            "status eq \"deprovisioned\"",
            &["carol@example.community"],
        ),
        (
            "filter",
            "status eq \"DEPROVISIONED\"",
            &["carol@example.community"],
        ),
        // co matches look-alike domains too (the client must re-check exactly).
        (
            "search",
            "profile.email co \"@EXAMPLE.com\"",
            &[
                "alice@example.com",
                "bob@example.com.evil.io",
                "carol@example.community",
            ],
        ),
        (
            "search",
            "profile.lastName sw \"ali\"",
            &["carol@example.community"],
        ),
        (
            "search",
            "(profile.firstName eq \"alice\" or profile.firstName eq \"bob\") and status eq \"SUSPENDED\"",
            &["bob@example.com.evil.io"],
        ),
        (
            "filter",
            "lastUpdated gt \"2026-01-01T00:00:00.000Z\"",
            &["alice@example.com"],
        ),
        ("search", "profile.secondEmail pr", &[]),
    ];
    for (param, expr, want) in cases {
        assert_eq!(
            logins_where(&api, param, expr).await,
            want,
            "{param}={expr}"
        );
    }
    assert_eq!(logins_where(&api, "search", "profile.firstName eq \"alice\" or profile.firstName eq \"bob\" and status eq \"SUSPENDED\"").await.len(), 2);
    // q: prefix on names and email, not DEPROVISIONED.
    assert_eq!(logins(&api, "q=ali").await, ["alice@example.com"]);

    for (param, expr, code) in [
        ("search", "profile.email ew \"example.com\"", "E0000031"),
        ("search", "status co \"ACT\"", "E0000031"),
        ("search", "Profile.email eq \"x\"", "E0000031"),
        ("search", "profile.login gt \"a\"", "E0000031"),
        ("search", "(status eq \"ACTIVE\"", "E0000031"),
        ("filter", "profile.email co \"x\"", "E0000031"),
        ("filter", "created gt \"2026-01-01T00:00:00Z\"", "E0000031"),
    ] {
        let (status, body) = api
            .json(&format!("/api/v1/users?{param}={}", enc(expr)))
            .await;
        assert_eq!(
            (status, body["errorCode"].as_str()),
            (400, Some(code)),
            "{expr}"
        );
        assert!(!body["errorCauses"].as_array().unwrap().is_empty());
    }
    let (status, body) = api
        .json(&format!(
            "/api/v1/users?search=id%20pr&filter={}",
            enc("status eq \"ACTIVE\"")
        ))
        .await;
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (400, Some("E0000033"))
    );

    // By id, login, and case-insensitive login.
    let alice = emu.user_id("alice@example.com").unwrap();
    for key in [alice.as_str(), "alice@example.com", "ALICE%40example.com"] {
        let (status, u) = api.json(&format!("/api/v1/users/{key}")).await;
        assert_eq!((status, u["id"].as_str()), (200, Some(alice.as_str())));
    }
    let (status, body) = api.json("/api/v1/users/00unope").await;
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (404, Some("E0000007"))
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn group_search_q_and_stats() {
    let emu = start_small(None).await;
    let api = Api::new(&emu);
    let names = |body: &Value| -> Vec<String> {
        let mut n: Vec<String> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["profile"]["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    let (_, body) = api
        .json(&format!(
            "/api/v1/groups?search={}",
            enc("profile.name co \"ENGINEER\"")
        ))
        .await;
    assert_eq!(names(&body), ["Engineering", "Engineering Managers"]);
    let (_, body) = api
        .json(&format!(
            "/api/v1/groups?search={}",
            enc("profile.description co \"builders\"")
        ))
        .await;
    assert_eq!(names(&body), ["Engineering"]);
    let (_, body) = api
        .json(&format!(
            "/api/v1/groups?filter={}",
            enc("type eq \"APP_GROUP\"")
        ))
        .await;
    assert_eq!(names(&body), ["AD Admins"]);
    // q is a prefix match: "gineer" finds nothing, "engineering m" finds the managers.
    let (_, body) = api.json("/api/v1/groups?q=gineer").await;
    assert!(body.as_array().unwrap().is_empty());
    let resp = api.get("/api/v1/groups?q=engineering%20m").await;
    assert_eq!(
        resp.headers().get_all(LINK).iter().count(),
        1,
        "q never pages"
    );
    assert_eq!(names(&resp.json().await.unwrap()), ["Engineering Managers"]);

    let (_, body) = api.json("/api/v1/groups?expand=stats").await;
    for g in body.as_array().unwrap() {
        let id = g["id"].as_str().unwrap();
        assert_eq!(
            g["_embedded"]["stats"]["usersCount"],
            json!(emu.members_of(id).len())
        );
    }
    let (_, plain) = api.json("/api/v1/groups").await;
    assert!(plain[0].get("_embedded").is_none());
    emu.shutdown().await;
}

#[tokio::test]
async fn roles_name_their_assignee_and_custom_role() {
    let emu = start_small(None).await;
    let api = Api::new(&emu);
    let alice = emu.user_id("alice@example.com").unwrap();
    let eng = emu.group_id("Engineering").unwrap();
    let (_, roles) = api.json(&format!("/api/v1/users/{alice}/roles")).await;
    let r = &roles[0];
    assert_eq!(
        (r["type"].as_str(), r["assignmentType"].as_str()),
        (Some("CUSTOM"), Some("GROUP"))
    );
    let role_id = r["role"].as_str().unwrap();
    assert!(role_id.starts_with("cr0"));
    assert!(r["resource-set"].as_str().unwrap().starts_with("iam"));
    assert!(
        r["_links"]["assignee"]["href"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/api/v1/groups/{eng}"))
    );
    let (_, group_roles) = api.json(&format!("/api/v1/groups/{eng}/roles")).await;
    assert_eq!(group_roles[0]["id"], r["id"]);
    let (_, custom) = api.json("/api/v1/iam/roles").await;
    assert_eq!(custom["roles"][0]["id"].as_str(), Some(role_id));
    let (_, perms) = api
        .json("/api/v1/iam/roles/Helpdesk%20Lite/permissions")
        .await;
    assert_eq!(perms["permissions"][0]["label"], "okta.users.read");
    let dave = emu.user_id("dave@example.org").unwrap();
    let (_, roles) = api.json(&format!("/api/v1/users/{dave}/roles")).await;
    assert_eq!(roles[0]["assignmentType"], "USER");
    assert!(
        roles[0]["_links"]["assignee"]["href"]
            .as_str()
            .unwrap()
            .ends_with(&dave)
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn membership_changes_follow_okta_rules() {
    let emu = start_small(None).await;
    let api = Api::new(&emu);
    let alice = emu.user_id("alice@example.com").unwrap();
    let dave = emu.user_id("dave@example.org").unwrap();
    let eng = emu.group_id("Engineering").unwrap();
    let ad = emu.group_id("AD Admins").unwrap();
    let everyone = emu.group_id("Everyone").unwrap();
    use reqwest::Method;
    assert_eq!(
        api.send(Method::PUT, &format!("/api/v1/groups/{eng}/users/{dave}"))
            .await
            .0,
        204
    );
    assert_eq!(
        api.send(Method::PUT, &format!("/api/v1/groups/{eng}/users/{dave}"))
            .await
            .0,
        204,
        "idempotent"
    );
    let mut expected = vec![alice.clone(), dave.clone()];
    expected.sort();
    assert_eq!(emu.members_of(&eng), expected);
    assert_eq!(
        api.send(
            Method::DELETE,
            &format!("/api/v1/groups/{eng}/users/{alice}")
        )
        .await
        .0,
        204
    );
    assert_eq!(emu.members_of(&eng), vec![dave.clone()]);
    for g in [&ad, &everyone] {
        let (status, body) = api
            .send(Method::PUT, &format!("/api/v1/groups/{g}/users/{alice}"))
            .await;
        assert_eq!(
            (status, body.unwrap()["errorCode"].clone()),
            (403, json!("E0000006"))
        );
        let (status, _) = api
            .send(Method::DELETE, &format!("/api/v1/groups/{g}/users/{dave}"))
            .await;
        assert_eq!(status, 403);
    }
    for path in [
        format!("/api/v1/groups/00gnope/users/{alice}"),
        format!("/api/v1/groups/{eng}/users/00unope"),
    ] {
        let (status, body) = api.send(Method::PUT, &path).await;
        assert_eq!(
            (status, body.unwrap()["errorCode"].clone()),
            (404, json!("E0000007"))
        );
    }
    // A PUT without Content-Length is refused (Okta answers 411).
    let addr = emu.addr();
    let raw = format!(
        "PUT /api/v1/groups/{eng}/users/{alice} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: SSWS test-token\r\nConnection: close\r\n\r\n"
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 411"), "{answer}");
    assert!(!emu.members_of(&eng).contains(&alice));
    emu.shutdown().await;
}

#[tokio::test]
async fn auth_requires_a_live_ssws_token() {
    let emu = start_small(None).await;
    let api = Api::new(&emu);
    let client = reqwest::Client::new();
    for auth in [
        None,
        Some("SSWS nope"),
        Some("Bearer test-token"),
        Some("SSWS"),
    ] {
        let mut req = client.get(format!("{}/api/v1/org", api.base));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        assert!(resp.headers().contains_key("x-rate-limit-remaining"));
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["errorCode"], "E0000011");
        assert_eq!(body["errorLink"], "E0000011");
        assert!(body["errorId"].as_str().unwrap().starts_with("oae"));
    }
    assert_eq!(api.json("/api/v1/org").await.0, 200);
    // Revoke over HTTP, as an out-of-process test would.
    let resp = client
        .post(format!("{}/__emulator/tokens/revoke", api.base))
        .json(&json!({"token": "test-token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(api.json("/api/v1/org").await.0, 401);
    assert!(emu.add_token("test-token"));
    assert_eq!(api.json("/api/v1/org").await.0, 200);
    assert!(emu.revoke_token("second-token"));
    emu.shutdown().await;
}

#[tokio::test]
async fn rate_limits_answer_429_like_okta_per_bucket() {
    let limits = RateLimits {
        users: 3,
        groups: 2,
        ..RateLimits::default()
    };
    let emu = start_small(Some(limits)).await;
    let api = Api::new(&emu);
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let r = api.get("/api/v1/users").await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-rate-limit-limit"], "3");
        remaining.push(
            r.headers()["x-rate-limit-remaining"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let r = api.get("/api/v1/users").await;
    assert_eq!(r.status(), 429);
    let h = r.headers().clone();
    assert_eq!(
        (
            h["x-rate-limit-limit"].to_str().unwrap(),
            h["x-rate-limit-remaining"].to_str().unwrap()
        ),
        ("3", "0")
    );
    let reset: i64 = h["x-rate-limit-reset"].to_str().unwrap().parse().unwrap();
    let date = jiff::fmt::rfc2822::parse(h["date"].to_str().unwrap())
        .unwrap()
        .timestamp()
        .as_second();
    assert!(
        reset > date && reset <= date + 61,
        "reset {reset} date {date}"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errorCode"], "E0000047");
    assert_eq!(
        body["errorSummary"],
        "API call exceeded rate limit due to too many requests."
    );
    assert_eq!(body["errorCauses"], json!([]));
    for key in ["errorLink", "errorId"] {
        assert!(body[key].is_string());
    }
    // Other buckets are untouched; user-by-id has its own.
    assert_eq!(api.get("/api/v1/org").await.status(), 200);
    let alice = emu.user_id("alice@example.com").unwrap();
    assert_eq!(
        api.get(&format!("/api/v1/users/{alice}")).await.status(),
        200
    );
    // Group list and membership calls share a bucket.
    let eng = emu.group_id("Engineering").unwrap();
    assert_eq!(api.get("/api/v1/groups").await.status(), 200);
    assert_eq!(
        api.get(&format!("/api/v1/groups/{eng}/users"))
            .await
            .status(),
        200
    );
    assert_eq!(api.get("/api/v1/groups").await.status(), 429);
    assert_eq!(
        api.get(&format!("/api/v1/groups/{eng}")).await.status(),
        200
    );
    let stats = emu.stats();
    assert_eq!(stats.rate_limited, 2);
    assert_eq!(stats.requests.total, 10);
    assert_eq!(stats.requests.by_status["429"], 2);
    assert_eq!(stats.requests.by_route["GET /api/v1/users"], 4);
    emu.shutdown().await;
}

#[tokio::test]
async fn windows_reset_and_concurrency_limit_answers_limit_zero() {
    let limits = RateLimits {
        users: 1,
        window: Duration::from_secs(1),
        concurrency: 1,
        ..RateLimits::default()
    };
    let emu = start_small(Some(limits)).await;
    let api = Api::new(&emu);
    assert_eq!(api.get("/api/v1/users").await.status(), 200);
    // Wait (bounded) for the 1 s window to roll over.
    let mut ok = false;
    for _ in 0..400 {
        let r = api.get("/api/v1/users").await;
        if r.status() == 200 {
            ok = true;
            break;
        }
        let reset: i64 = r.headers()["x-rate-limit-reset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(reset >= jiff::Timestamp::now().as_second() - 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "window never reset");

    // One request stalls and holds the only concurrency slot.
    emu.set_faults(Faults {
        stall_next: 1,
        ..Faults::default()
    });
    let stalled = {
        let client = api.client.clone();
        let url = format!("{}/api/v1/org", api.base);
        tokio::spawn(async move {
            client
                .get(url)
                .header("Authorization", "SSWS test-token")
                .send()
                .await
        })
    };
    // Wait (bounded) until the stall was taken, i.e. the slot is held.
    for _ in 0..500 {
        if emu.faults().stall_next == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        emu.faults().stall_next,
        0,
        "the stalled request never arrived"
    );
    let r = api.get("/api/v1/org").await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-rate-limit-limit"], "0");
    assert_eq!(r.headers()["x-rate-limit-remaining"], "0");
    assert_eq!(r.json::<Value>().await.unwrap()["errorCode"], "E0000047");
    emu.shutdown().await;
    // Shutdown releases the stalled request.
    let _ = tokio::time::timeout(Duration::from_secs(30), stalled)
        .await
        .expect("stall released");
}

#[tokio::test]
async fn injected_faults_fail_drop_and_count() {
    let emu = start_small(None).await;
    let api = Api::new(&emu);
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{}/__emulator/faults", api.base))
        .json(&json!({"failNext": 2, "errorStatus": 503}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(api.get("/api/v1/org").await.status(), 503);
    assert_eq!(api.get("/api/v1/org").await.status(), 503);
    assert_eq!(api.get("/api/v1/org").await.status(), 200);
    emu.set_faults(Faults {
        drop_next: 1,
        ..Faults::default()
    });
    let dropped = async {
        let r = client
            .get(format!("{}/api/v1/org", api.base))
            .header("Authorization", "SSWS test-token")
            .send()
            .await?;
        r.bytes().await
    }
    .await;
    assert!(dropped.is_err(), "the connection should be cut");
    assert_eq!(api.get("/api/v1/org").await.status(), 200);
    let stats: Value = api.control("stats").await;
    assert_eq!(stats["requests"]["total"], 5);
    assert_eq!(stats["requests"]["byStatus"]["503"], 2);
    assert_eq!(stats["requests"]["byStatus"]["dropped"], 1);
    assert_eq!(stats["requests"]["byRoute"]["GET /api/v1/org"], 5);
    assert_eq!(stats["rateLimited"], 0);
    emu.shutdown().await;
}

#[tokio::test]
async fn http_controls_mutate_the_org() {
    let emu = start_small(None).await;
    let api = Api::new(&emu);
    let client = reqwest::Client::new();
    let alice = emu.user_id("alice@example.com").unwrap();
    let eng = emu.group_id("Engineering").unwrap();
    let post = |path: &str, body: Value| {
        client
            .post(format!("{}/__emulator/{path}", api.base))
            .json(&body)
            .send()
    };
    assert_eq!(
        post(
            "users/status",
            json!({"userId": alice, "status": "SUSPENDED"})
        )
        .await
        .unwrap()
        .status(),
        200
    );
    assert_eq!(
        api.json(&format!("/api/v1/users/{alice}")).await.1["status"],
        "SUSPENDED"
    );
    assert_eq!(
        post("groups/rename", json!({"groupId": eng, "name": "Platform"}))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        api.json(&format!("/api/v1/groups/{eng}")).await.1["profile"]["name"],
        "Platform"
    );
    let r: Value = post(
        "memberships/remove",
        json!({"groupId": eng, "userId": alice}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(r["changed"], true);
    assert!(emu.members_of(&eng).is_empty());
    assert_eq!(
        post(
            "memberships/remove",
            json!({"groupId": "00gnope", "userId": alice})
        )
        .await
        .unwrap()
        .status(),
        404
    );
    let state: Value = api.control("state").await;
    assert_eq!(state, emu.state_json());
    assert!(
        state.to_string().find("test-token").is_none(),
        "state never shows tokens"
    );
    assert!(emu.set_user_status(&alice, "NAPPING").is_err());
    emu.shutdown().await;
}

#[tokio::test]
async fn generation_is_deterministic_across_emulators() {
    let a = start_generated(
        "users=120,groups=9,admins=4,custom-roles=2,domains=a.com:b.org",
        11,
        RateLimits::default(),
    )
    .await;
    let b = start_generated(
        "users=120,groups=9,admins=4,custom-roles=2,domains=a.com:b.org",
        11,
        RateLimits::default(),
    )
    .await;
    let c = start_generated(
        "users=120,groups=9,admins=4,custom-roles=2,domains=a.com:b.org",
        12,
        RateLimits::default(),
    )
    .await;
    assert_eq!(a.state_json(), b.state_json());
    assert_ne!(a.state_json(), c.state_json());
    let (pa, _) = Api::new(&a).collect("/api/v1/users").await;
    let (pb, _) = Api::new(&b).collect("/api/v1/users").await;
    assert_eq!(
        pa,
        pb.iter()
            .map(|u| {
                // Links differ only by port.
                let mut u = u.clone();
                u["_links"] = pa.iter().find(|x| x["id"] == u["id"]).unwrap()["_links"].clone();
                u
            })
            .collect::<Vec<_>>()
    );
    let demo = Fixture::demo();
    assert_eq!(demo, Fixture::demo());
    assert!(
        demo.users
            .iter()
            .any(|u| u.login.ends_with("@example.com.evil.io"))
    );
    for kind in ["OKTA_GROUP", "APP_GROUP", "BUILT_IN"] {
        assert!(demo.groups.iter().any(|g| g.group_type == kind), "{kind}");
    }
    for h in [a, b, c] {
        h.shutdown().await;
    }
}

#[tokio::test]
async fn a_large_generated_org_serves_within_modest_memory() {
    // 100k users, 5k groups, 10 memberships each (1M) plus "Everyone".
    let spec: GenerateSpec =
        "users=100000,groups=5000,memberships-per-user=10,admins=50,custom-roles=5"
            .parse()
            .unwrap();
    let fixture = Fixture::generate(&spec, 1);
    let memberships: usize = fixture.groups.iter().map(|g| g.members.len()).sum();
    assert_eq!(memberships, 1_000_000 + 100_000);
    let emu = emulator::start(EmulatorConfig::new(fixture)).await.unwrap();
    let api = Api::new(&emu);
    let (groups, pages) = api.collect("/api/v1/groups?expand=stats&limit=10000").await;
    assert_eq!((groups.len(), pages), (5000, 1));
    let counted: u64 = groups
        .iter()
        .map(|g| g["_embedded"]["stats"]["usersCount"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 1_100_000);
    let (status, page) = api.json("/api/v1/users?limit=200").await;
    assert_eq!((status, page.as_array().unwrap().len()), (200, 200));
    emu.shutdown().await;
}
