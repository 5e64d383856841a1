//! Sync benchmark against a separately running emulator with a generated org.
//!
//! `cargo bench --bench sync` runs two sizes: `small` (10k users / 500 groups / ~100k
//! memberships) and `large` (100k users / 5k groups / ~1M memberships), 20% of users in the
//! synced email domain, Okta's default per-window limits on shortened windows. Select one size
//! with `SYNC_BENCH_SIZE=small|large`; change the window with `SYNC_BENCH_WINDOW_SECONDS`.
//!
//! Both the emulator and the sync run as child processes of the release binary, so the sync's
//! peak RSS is its own (`wait4` rusage `ru_maxrss`).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use okta_ciam_operator::sync::plan::{self, FloorByBucket};
use okta_ciam_operator::sync::snapshot::Snapshot;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_okta-ciam-operator");
/// Five domains assigned round-robin: one of them in scope gives 20% of users.
const DOMAINS: &str = "example.com:example.org:example.net:example.io:example.dev";
const IN_SCOPE: &str = "example.com";
/// Okta's default Workforce limits per window for the buckets a sync uses.
const LIMIT_USERS: u32 = 600;
const LIMIT_GROUPS: u32 = 500;
const LIMIT_DEFAULT: u32 = 1200;
const DEFAULT_SHARE: u8 = 50;

struct Size {
    name: &'static str,
    users: usize,
    groups: usize,
    /// Besides "Everyone", which every user is in.
    memberships_per_user: usize,
    admins: usize,
    custom_roles: usize,
}

const SIZES: [Size; 2] = [
    Size {
        name: "small",
        users: 10_000,
        groups: 500,
        memberships_per_user: 9,
        admins: 20,
        custom_roles: 3,
    },
    Size {
        name: "large",
        users: 100_000,
        groups: 5_000,
        memberships_per_user: 9,
        admins: 50,
        custom_roles: 5,
    },
];

fn main() {
    let only = std::env::var("SYNC_BENCH_SIZE").ok();
    let window: u64 = std::env::var("SYNC_BENCH_WINDOW_SECONDS")
        .ok()
        .and_then(|w| w.parse().ok())
        // 15 s, not less: the client's one-second pacing margin per window (Okta's SDKs' own)
        // would otherwise weigh far more than on Okta's real 60 s windows.
        .unwrap_or(15);
    let dir = tempfile::tempdir().expect("temporary directory");
    for size in SIZES
        .iter()
        .filter(|s| only.as_deref().is_none_or(|o| o == s.name))
    {
        run(size, window, dir.path());
    }
}

/// The emulator child; stopped (stdin closed, then killed if needed) when dropped.
struct Emulator {
    child: Child,
    url: String,
}

impl Emulator {
    fn start(size: &Size, window: u64) -> Emulator {
        let spec = format!(
            "users={},groups={},memberships-per-user={},admins={},custom-roles={},domains={DOMAINS}",
            size.users, size.groups, size.memberships_per_user, size.admins, size.custom_roles
        );
        let mut child = Command::new(BIN)
            .args(["emulator", "--listen", "127.0.0.1:0", "--generate", &spec])
            .args([
                "--seed",
                "1",
                "--rate-limit-window-seconds",
                &window.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the emulator");
        let stdout: ChildStdout = child.stdout.take().expect("emulator stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the emulator's URL line");
        let url = line
            .trim()
            .strip_prefix("OKTA_EMULATOR_URL=")
            .unwrap_or_else(|| panic!("unexpected emulator output {line:?}"))
            .trim_end_matches('/')
            .to_string();
        Emulator { child, url }
    }

    /// `GET /__emulator/{what}` over a plain socket (the bench needs no HTTP client).
    fn control(&self, what: &str) -> serde_json::Value {
        self.control_request("GET", what, None)
    }

    /// `POST /__emulator/{what}` with a JSON body: a change outside the API, which the
    /// emulator writes to its System Log.
    fn change(&self, what: &str, body: serde_json::Value) -> serde_json::Value {
        self.control_request("POST", what, Some(body))
    }

    fn control_request(
        &self,
        method: &str,
        what: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let authority = self.url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(authority).expect("connect to emulator");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("set timeout");
        use std::io::Write;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        write!(
            stream,
            "{method} /__emulator/{what} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("send control request");
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).expect("read control reply");
        let at = reply
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("HTTP head");
        serde_json::from_slice(&reply[at + 4..]).expect("control JSON")
    }
}

/// The floor's inputs worked out from the emulator's whole org, independently of the sync
/// under test: in-scope users by the exact domain rule, every group (no name filter), member
/// pages of the non-empty groups or one call per in-scope user if fewer, the users holding a
/// role directly or through a group, the cheaper role plan, and the custom roles.
fn floor_inputs_from_org(org: &serde_json::Value) -> plan::FloorInputs {
    let in_scope = |address: &str| {
        address
            .rsplit_once('@')
            .is_some_and(|(_, domain)| domain.eq_ignore_ascii_case(IN_SCOPE))
    };
    let users = org["users"].as_array().expect("users");
    let in_scope_ids: std::collections::BTreeSet<&str> = users
        .iter()
        .filter(|u| {
            let login = u["login"].as_str().unwrap_or_default();
            u["email"].as_str().is_some_and(in_scope) || (login.contains('@') && in_scope(login))
        })
        .filter_map(|u| u["id"].as_str())
        .collect();
    let in_scope_users = in_scope_ids.len() as u64;
    let groups = org["groups"].as_array().expect("groups");
    let members = |g: &serde_json::Value| -> Vec<String> {
        g["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str().map(str::to_owned))
            .collect()
    };
    let member_counts = groups.iter().map(|g| members(g).len() as u64);
    let choice = plan::choose_membership_plan(member_counts, in_scope_users);
    let mut admins = std::collections::BTreeSet::new();
    for a in org["roleAssignments"].as_array().expect("roleAssignments") {
        if let Some(user) = a["user"].as_str() {
            admins.insert(user.to_owned());
        } else if let Some(group) = a["group"].as_str() {
            let held = groups
                .iter()
                .find(|g| g["id"] == group)
                .expect("assigned group");
            admins.extend(members(held));
        }
    }
    let role_plan = plan::choose_role_plan(&plan::RoleCounts {
        admins: admins.len() as u64,
        admins_in_scope: admins
            .iter()
            .filter(|a| in_scope_ids.contains(a.as_str()))
            .count() as u64,
        groups_without_in_scope_members: groups
            .iter()
            .filter(|g| !members(g).iter().any(|m| in_scope_ids.contains(m.as_str())))
            .count() as u64,
        groups_without_members: groups.iter().filter(|g| members(g).is_empty()).count() as u64,
    });
    plan::FloorInputs {
        users: in_scope_users,
        groups: groups.len() as u64,
        membership_requests: choice.requests(),
        membership_strategy: choice.strategy,
        admins: admins.len() as u64,
        role_requests: role_plan.requests(),
        custom_roles: org["customRoles"].as_array().map_or(0, Vec::len) as u64,
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Closing stdin asks the emulator to stop; kill it if it has not after a bounded wait.
        drop(self.child.stdin.take());
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `child` and returns (exit code, peak RSS in KiB) from `wait4`.
fn wait_with_rusage(child: &Child) -> (i32, u64) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    let mut status = 0;
    // SAFETY: plain syscall on our own child; `rusage` is a C struct that may be zeroed.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to locals; the child has not been reaped by anyone else.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4 failed: {}", std::io::Error::last_os_error());
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, u64::try_from(usage.ru_maxrss).unwrap_or(0))
}

fn time_floor(by: &FloorByBucket, share: u8, window: Duration) -> Duration {
    [
        (by.users, LIMIT_USERS),
        (by.groups, LIMIT_GROUPS),
        (by.default, LIMIT_DEFAULT),
    ]
    .into_iter()
    .map(|(requests, limit)| plan::rate_limit_time_floor(requests, limit, share, window))
    .max()
    .unwrap_or_default()
}

fn run(size: &Size, window_secs: u64, dir: &Path) {
    let window = Duration::from_secs(window_secs);
    println!(
        "== {}: {} users / {} groups / ~{} memberships, {}% in scope, {}s windows",
        size.name,
        size.users,
        size.groups,
        size.users * (size.memberships_per_user + 1),
        20,
        window_secs
    );
    let emulator = Emulator::start(size, window_secs);
    let output = dir.join(format!("snapshot-{}.json", size.name));
    let log = dir.join(format!("sync-{}.log", size.name));
    let (wall, peak_kib) = run_sync(&emulator, &output, &log, &[]);
    let snapshot = Snapshot::read(&output).expect("read snapshot");
    let st = &snapshot.stats;
    let inputs = floor_inputs_from_org(&emulator.control("state"));
    if inputs != st.floor_inputs {
        println!(
            "   NOTE: the sync's own floor inputs {:?} differ from the org's {:?}",
            st.floor_inputs, inputs
        );
    }
    let floor = plan::request_floor(&inputs);
    let by = plan::floor_by_bucket(&inputs);
    let floor_default = time_floor(&by, DEFAULT_SHARE, window);
    let floor_full = time_floor(&by, 100, window);
    let emulator_429 = emulator.control("stats")["rateLimited"]
        .as_u64()
        .unwrap_or(0);
    let memberships = snapshot
        .grants
        .iter()
        .filter(|g| g.principal_type == okta_ciam_operator::sync::snapshot::PrincipalType::User)
        .count();
    let ratio = st.requests as f64 / floor.max(1) as f64;
    let wall_ratio =
        (!floor_default.is_zero()).then(|| wall.as_secs_f64() / floor_default.as_secs_f64());
    let peak_mib = peak_kib as f64 / 1024.0;
    println!(
        "   snapshot:     {} users, {} groups, {} user grants, membership reads {:?}",
        snapshot.users.len(),
        snapshot.groups.len(),
        memberships,
        st.membership_plan.map(|p| p.strategy)
    );
    if let Some(p) = st.role_plan {
        println!(
            "   role reads:   {:?}, {} requests ({} via in-scope admins + group lists, {} via every admin)",
            p.strategy,
            p.requests(),
            p.group_lists_requests,
            p.assignee_lists_requests
        );
    }
    println!(
        "   requests:     {} (floor {floor}, {ratio:.3}x; by bucket users/groups/default {}/{}/{})",
        st.requests, by.users, by.groups, by.default
    );
    println!(
        "   429s:         {} (client), {} (emulator)",
        st.rate_limited, emulator_429
    );
    println!(
        "   wall time:    {:.1}s (sync {:.1}s, rate-limit wait {:.1}s summed over waiting requests)",
        wall.as_secs_f64(),
        st.duration_seconds,
        st.rate_limit_wait_seconds
    );
    println!(
        "   time floor:   {:.1}s at {}% share ({}), {:.1}s at 100%",
        floor_default.as_secs_f64(),
        DEFAULT_SHARE,
        wall_ratio.map_or("n/a (floor 0)".to_string(), |r| format!("{r:.2}x")),
        floor_full.as_secs_f64()
    );
    println!("   peak RSS:     {peak_mib:.1} MiB (sync process)");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "   targets:      requests <= 1.2x floor {}; wall <= 1.25x time floor {}; at most one 429 {}; peak RSS <= 150 MiB {}",
        verdict(ratio <= 1.2),
        verdict(wall_ratio.is_none_or(|r| r <= 1.25)),
        verdict(emulator_429 <= 1),
        verdict(peak_mib <= 150.0)
    );
    run_incremental(&emulator, &output, dir, size.name);
}

/// Runs `okta-ciam-operator sync` (plus `extra` flags) against the emulator into `output` and
/// returns its wall time and peak RSS in KiB.
fn run_sync(emulator: &Emulator, output: &Path, log: &Path, extra: &[&str]) -> (Duration, u64) {
    let domain = emulator.url.trim_start_matches("http://").to_string();
    let started = Instant::now();
    // Reaped by `wait_with_rusage` (wait4), which std's `Child::wait` cannot replace because
    // it does not return the child's resource usage.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(BIN)
        .args(["sync", "--domain", &domain, "--insecure-loopback-http"])
        .args(["--email-domains", IN_SCOPE, "--output"])
        .arg(output)
        .args(["--budget-percent", &DEFAULT_SHARE.to_string()])
        .args(extra)
        .env("BATON_API_TOKEN", "test-token")
        .env_remove("BATON_GROUP_NAME_FILTER")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("spawn sync");
    let (code, peak_kib) = wait_with_rusage(&child);
    let wall = started.elapsed();
    if code != 0 {
        let log = std::fs::read_to_string(log).unwrap_or_default();
        panic!("sync exited with {code}:\n{log}");
    }
    (wall, peak_kib)
}

/// Changes made between the full and the incremental sync.
const CHANGES: usize = 100;

/// Makes [`CHANGES`] changes outside the API (memberships added and removed, users suspended,
/// groups renamed), runs `sync --incremental` from `base` and a full sync, and prints both
/// side by side; the two snapshots must agree.
fn run_incremental(emulator: &Emulator, base: &Path, dir: &Path, name: &str) {
    let state = emulator.control("state");
    let users = state["users"].as_array().expect("users");
    let groups = state["groups"].as_array().expect("groups");
    let in_scope: Vec<&str> = users
        .iter()
        .filter(|u| {
            u["email"]
                .as_str()
                .is_some_and(|e| e.ends_with("@example.com"))
        })
        .filter_map(|u| u["id"].as_str())
        .collect();
    let okta_groups: Vec<(&str, Vec<&str>)> = groups
        .iter()
        .filter(|g| g["type"] == "OKTA_GROUP")
        .map(|g| {
            let members = g["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m.as_str())
                .collect();
            (g["id"].as_str().unwrap_or_default(), members)
        })
        .collect();
    for i in 0..CHANGES {
        let (group, members) = &okta_groups[(i * 7) % okta_groups.len()];
        let user = in_scope[(i * 7919) % in_scope.len()];
        let reply = match i % 10 {
            // 4 in 10: a membership removed; 4: added; 1: a user suspended; 1: a rename.
            0..=3 => emulator.change(
                "memberships/remove",
                json!({"groupId": group, "userId": members.first().copied().unwrap_or(user)}),
            ),
            4..=7 => emulator.change("memberships/add", json!({"groupId": group, "userId": user})),
            8 => emulator.change(
                "users/status",
                json!({"userId": user, "status": "SUSPENDED"}),
            ),
            _ => emulator.change(
                "groups/rename",
                json!({"groupId": group, "name": format!("Renamed {i}")}),
            ),
        };
        assert!(reply.get("error").is_none(), "{reply}");
    }
    let incremental = dir.join(format!("incremental-{name}.json"));
    std::fs::copy(base, &incremental).expect("copy the base snapshot");
    let (inc_wall, _) = run_sync(
        emulator,
        &incremental,
        &dir.join(format!("incremental-{name}.log")),
        &["--incremental"],
    );
    let full = dir.join(format!("full-again-{name}.json"));
    let (full_wall, _) = run_sync(emulator, &full, &dir.join(format!("full-{name}.log")), &[]);
    let (inc, full) = (
        Snapshot::read(&incremental).expect("incremental snapshot"),
        Snapshot::read(&full).expect("full snapshot"),
    );
    let same = inc.users == full.users
        && inc.groups == full.groups
        && inc.grants == full.grants
        && inc.custom_roles == full.custom_roles;
    println!(
        "   after {CHANGES} changes: full {} requests in {:.1}s; incremental {} requests in {:.1}s \
         ({} log events, mode {:?}{}); same snapshot {}; target <= 30 requests {}",
        full.stats.requests,
        full_wall.as_secs_f64(),
        inc.stats.requests,
        inc_wall.as_secs_f64(),
        inc.stats.log_events,
        inc.stats.mode,
        inc.stats
            .full_sync_reason
            .as_ref()
            .map_or(String::new(), |r| format!(": {r}")),
        same,
        inc.stats.requests <= 30
    );
    println!(
        "   incremental requests by endpoint: {:?}",
        inc.stats.requests_by_endpoint
    );
    assert!(same, "the incremental snapshot differs from the full one");
}
