use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::agent::runner::{Canned, Counting};

const TOKEN: &str = "s3cret-agent-token";

/// Strings that must be refused before any command runs.
const HOSTILE: &[&str] = &[
    "node1;rm -rf /",
    "$(reboot)",
    "`x`",
    "node 1",
    "../etc",
    "nöde1",
    "-rf",
    "a|b",
];

fn config() -> Config {
    Config {
        preemptable_qos: vec!["spot".into()],
        tz: TimeZone::UTC,
        ..Config::new(TOKEN)
    }
}

/// A partition `batch` of `n` nodes (also in the preempting `scavenger`), plus `other1`
/// in partition `other`. node2 is drained by us, node3 by someone else; node5 was taken
/// down by Slurm carrying an old reason of ours, node6 is back in service with one (both
/// as Slurm 24.11 leaves them).
fn cluster(n: usize) -> Canned {
    let mut nodes = String::new();
    for i in 1..=n {
        let (state, reason) = match i {
            2 => (
                "IDLE+DRAIN",
                "slurm-maint: nm-node2 attempt 1/3 [root@2026-11-22T06:10:00]",
            ),
            3 => (
                "IDLE+DRAIN",
                "disk failure on sda [admin@2026-11-22T06:10:00]",
            ),
            4 => ("ALLOCATED", "(null)"),
            5 => (
                "DOWN+NOT_RESPONDING",
                "slurm-maint: nm-node5 attempt 1/3 : reboot issued [root@2026-12-03T07:19:19] ReservationName=slurm-maint-node5-c1",
            ),
            6 => (
                "IDLE",
                "slurm-maint: nm-node6 attempt 1/3 : reboot issued [root@2026-12-03T07:19:19]",
            ),
            _ => ("IDLE", "(null)"),
        };
        nodes.push_str(&format!(
            "NodeName=node{i} Arch=x86_64 CoresPerSocket=1 State={state} Partitions=batch,scavenger BootTime=2026-11-22T06:00:00 Reason={reason}\n"
        ));
    }
    nodes.push_str(
        "NodeName=other1 State=IDLE Partitions=other BootTime=2026-11-22T06:00:00 Reason=(null)\n",
    );
    let partitions = format!(
        "PartitionName=batch AllowGroups=ALL Nodes=node[1-{n}] PriorityTier=10 PreemptMode=OFF State=UP\n\
         PartitionName=scavenger Nodes=node[1-{n}] PriorityTier=1 PreemptMode=CANCEL State=UP\n\
         PartitionName=other Nodes=other1 PriorityTier=10 PreemptMode=OFF State=UP\n"
    );
    let job = |id: u64, partition: &str, state: &str, nodes: &str, qos: &str| {
        let fields = [
            &id.to_string(),
            partition,
            state,
            nodes,
            "2026-11-22T06:00:00",
            "2026-11-22T07:00:00",
            "1:00:00",
            qos,
            "alice",
            &format!("j{id}"),
        ];
        format!("{}\u{1e}\n", fields.join("\u{1f}"))
    };
    let squeue = [
        job(7, "batch", "RUNNING", "node1", "normal"),
        job(8, "scavenger", "RUNNING", "node4", "normal"),
        job(9, "batch", "RUNNING", "node[1,4]", "spot"),
        job(10, "batch", "COMPLETED", "node1", "normal"),
        job(11, "other", "RUNNING", "other1", "normal"),
        job(12, "batch", "PENDING", "", "normal"),
    ]
    .concat();
    let reservations = "ReservationName=ops-maint StartTime=2026-12-01T00:00:00 EndTime=2026-12-01T06:00:00 Duration=06:00:00 Nodes=node1 NodeCnt=1 Flags=MAINT,SPEC_NODES Users=root Accounts=(null) PartitionName=(null) State=INACTIVE\n\
ReservationName=slurm-maint-node4-c1 StartTime=2026-12-01T00:00:00 EndTime=2026-12-01T06:00:00 Nodes=node4 Flags=MAINT,IGNORE_JOBS Users=root State=INACTIVE\n";
    Canned::new()
        .ok(&["scontrol", "show", "node", "-o"], nodes)
        .ok(&["squeue"], squeue)
        .ok(&["scontrol", "show", "reservation", "-o"], reservations)
        .ok(&["scontrol", "show", "partition", "-o"], partitions)
        .ok(&["scontrol", "show", "topology"], "")
        .ok(
            &["scontrol", "show", "job", "-o", "7"],
            "JobId=7 JobName=j7 UserId=alice(1000) JobState=RUNNING TimeLimit=01:00:00 StartTime=2026-11-22T06:00:00 EndTime=2026-11-22T07:00:00 Partition=batch NodeList=node1 QOS=normal\n",
        )
        .ok(
            &["scontrol", "show", "job", "-o", "8"],
            "JobId=8 JobName=j8 UserId=bob(1001) JobState=RUNNING TimeLimit=01:00:00 StartTime=2026-11-22T06:00:00 EndTime=2026-11-22T07:00:00 PreemptEligibleTime=2026-11-22T06:00:00 Partition=scavenger NodeList=node4 QOS=normal\n",
        )
        .ok(
            &["scontrol", "show", "job", "-o", "9"],
            "JobId=9 JobName=j9 UserId=bob(1001) JobState=RUNNING TimeLimit=01:00:00 StartTime=2026-11-22T06:00:00 EndTime=2026-11-22T07:00:00 Partition=batch NodeList=node[1,4] QOS=spot\n",
        )
        .ok(
            &["scontrol", "show", "job", "-o", "10"],
            "JobId=10 JobName=j10 UserId=bob(1001) JobState=COMPLETED TimeLimit=01:00:00 Partition=scavenger NodeList=node1\n",
        )
        .fail(
            &["scontrol", "show", "job", "-o"],
            1,
            "slurm_load_jobs error: Invalid job id specified",
        )
        .ok(&["scontrol", "ping"], "Slurmctld(primary) at localhost is UP\n")
        .ok(&["scontrol", "update"], "")
        .ok(&["scontrol", "create", "reservation"], "Reservation created: x\n")
        .ok(&["scontrol", "delete"], "")
        .ok(&["scontrol", "reboot"], "")
        .ok(&["scancel"], "")
}

fn app_with(config: Config, canned: Canned) -> (Router, Arc<Counting<Canned>>) {
    let runner = Arc::new(Counting::new(canned));
    (router(config, runner.clone()), runner)
}

fn app(canned: Canned) -> (Router, Arc<Counting<Canned>>) {
    app_with(config(), canned)
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, body)
}

fn request(method: &str, uri: &str, token: Option<&str>, body: Option<Value>) -> Request<Body> {
    let mut r = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        r = r.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    match body {
        Some(b) => r
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string())),
        None => r.body(Body::empty()),
    }
    .unwrap()
}

async fn call(app: &Router, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    send(app, request(method, uri, Some(TOKEN), body)).await
}

/// Percent-encode everything but letters and digits, so any string fits in one segment.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn ran(runner: &Counting<Canned>, program: &str) -> Vec<Vec<String>> {
    runner
        .commands()
        .into_iter()
        .filter(|c| c[0] == program || c.get(1).is_some_and(|s| s == program))
        .collect()
}

#[tokio::test]
async fn tokens_are_required_except_for_healthz() {
    let (app, runner) = app(cluster(4));
    let uri = "/v1/partitions/batch/snapshot";
    for request in [
        request("GET", uri, None, None),
        request("GET", uri, Some("wrong"), None),
        request("GET", uri, Some(&format!("{TOKEN}x")), None),
        request("GET", uri, Some(""), None),
        Request::builder()
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Basic {TOKEN}"))
            .body(Body::empty())
            .unwrap(),
        request("GET", "/metrics", None, None),
        request("POST", "/v1/jobs/8/cancel", Some("wrong"), None),
    ] {
        let (status, body) = send(&app, request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["code"], "Unauthorized");
        assert_eq!(body["error"], "missing or wrong bearer token");
    }
    assert_eq!(
        runner.count(),
        0,
        "nothing ran for unauthenticated requests"
    );

    let (status, body) = send(&app, request("GET", "/healthz", None, None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(runner.commands(), [commands::ping()]);
    assert_eq!(call(&app, "GET", uri, None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn healthz_reports_slurmctld_down() {
    let down = Canned::new().fail(
        &["scontrol", "ping"],
        1,
        "Slurmctld(primary) at localhost is DOWN",
    );
    let (app, _) = app(down);
    let (status, body) = send(&app, request("GET", "/healthz", None, None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["code"], "SlurmctldDown");
    assert!(
        body["error"].as_str().unwrap().contains("is DOWN"),
        "{body}"
    );
}

#[tokio::test]
async fn hostile_names_in_paths_are_400_before_any_command() {
    let (app, runner) = app(cluster(4));
    let reason = Some(json!({"reason": "kernel update"}));
    for bad in HOSTILE.iter().copied().chain([&*"n".repeat(65)]) {
        let e = enc(bad);
        for (method, uri, body) in [
            ("GET", format!("/v1/partitions/{e}/snapshot"), None),
            ("POST", format!("/v1/nodes/{e}/drain"), reason.clone()),
            ("POST", format!("/v1/nodes/{e}/resume"), None),
            ("POST", format!("/v1/nodes/{e}/clear-reason"), None),
            ("POST", format!("/v1/nodes/{e}/reboot"), reason.clone()),
            ("POST", format!("/v1/nodes/{e}/health"), None),
            ("DELETE", format!("/v1/reservations/{e}"), None),
            (
                "PATCH",
                format!("/v1/reservations/{e}"),
                Some(json!({"start": "now"})),
            ),
            ("POST", format!("/v1/jobs/{e}/cancel"), None),
        ] {
            let (status, body) = call(&app, method, &uri, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {uri}: {body}");
            assert_eq!(body["code"], "InvalidName", "{method} {uri}: {body}");
            let msg = body["error"].as_str().unwrap();
            assert!(
                msg.contains("not allowed")
                    || msg.contains("must not start")
                    || msg.contains("too long"),
                "{method} {uri}: {msg}"
            );
        }
    }
    // Hostile values in bodies too.
    for (uri, body) in [
        ("/v1/nodes/node1/drain", json!({"reason": "x; reboot"})),
        ("/v1/nodes/node1/drain", json!({"reason": ""})),
        ("/v1/nodes/node1/reboot", json!({"reason": "$(reboot)"})),
        (
            "/v1/reservations",
            json!({"name": "slurm-maint-x", "nodes": ["node1;reboot"], "durationMinutes": 60, "users": ["root"]}),
        ),
        (
            "/v1/reservations",
            json!({"name": "slurm-maint-x", "nodes": ["node1"], "durationMinutes": 60, "users": ["$(id)"]}),
        ),
        (
            "/v1/reservations",
            json!({"name": "slurm-maint-x", "nodes": ["node1"], "durationMinutes": 60, "users": ["root"], "flags": ["MAINT,OVERLAP"]}),
        ),
    ] {
        let (status, body) = call(&app, "POST", uri, Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri} {body}");
    }
    assert_eq!(runner.count(), 0, "{:?}", runner.commands());
}

#[tokio::test]
async fn malformed_bodies_are_400_json() {
    let (app, runner) = app(cluster(4));
    for (uri, body) in [
        ("/v1/nodes/node1/drain", json!({})),
        (
            "/v1/reservations",
            json!({"name": "slurm-maint-x", "nodes": ["node1"], "durationMinutes": 60, "start": "soon", "users": ["root"]}),
        ),
        (
            "/v1/reservations",
            json!({"name": "slurm-maint-x", "nodes": ["node1"], "durationMinutes": 0, "users": ["root"]}),
        ),
        (
            "/v1/reservations",
            json!({"name": "slurm-maint-x", "nodes": ["node1"], "durationMinutes": 60}),
        ),
        (
            "/v1/reservations",
            json!({"name": "slurm-maint-x", "nodes": [], "durationMinutes": 60, "users": ["root"]}),
        ),
    ] {
        let (status, resp) = call(&app, "POST", uri, Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {resp}");
        assert!(
            resp["error"].is_string() && resp["code"].is_string(),
            "{resp}"
        );
    }
    let (status, resp) = call(
        &app,
        "PATCH",
        "/v1/reservations/slurm-maint-x",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    assert_eq!(runner.count(), 0);
}

#[tokio::test]
async fn snapshot_commands_do_not_grow_with_nodes_and_partitions_are_cached() {
    for n in [4, 100] {
        let (app, runner) = app(cluster(n));
        let (status, body) = call(&app, "GET", "/v1/partitions/batch/snapshot", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(runner.count(), 5, "{:?}", runner.commands());
        let mut seen = runner.commands();
        seen.sort();
        let mut want = vec![
            commands::show_nodes(),
            commands::squeue_jobs(),
            commands::show_reservations(),
            commands::show_partitions(),
            commands::show_topology(),
        ];
        want.sort();
        assert_eq!(seen, want);

        let snap: PartitionSnapshot = serde_json::from_value(body).unwrap();
        assert_eq!(snap.nodes.len(), n, "other1 is not in batch");
        assert!(snap.nodes.iter().all(|n| n.name.starts_with("node")));
        let jobs: Vec<(u64, bool)> = snap.jobs.iter().map(|j| (j.id, j.preemptable)).collect();
        assert_eq!(
            jobs,
            [(7, false), (8, true), (9, true)],
            "active jobs on batch nodes; 8 by partition, 9 by QOS"
        );
        assert_eq!(snap.reservations.len(), 2);
        assert_eq!(snap.partitions.len(), 3);

        // Job 8 is preemptable by its partition's PreemptMode: the cache may not vouch
        // for that, so partitions are read again. Partition `other` needs no vouching.
        runner.reset();
        call(&app, "GET", "/v1/partitions/batch/snapshot", None).await;
        assert_eq!(runner.count(), 4, "{:?}", runner.commands());
        runner.reset();
        let (status, body) = call(&app, "GET", "/v1/partitions/other/snapshot", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(runner.count(), 3, "{:?}", runner.commands());
        assert!(!runner.commands().contains(&commands::show_partitions()));
    }
}

#[tokio::test]
async fn snapshot_of_an_unknown_partition_is_404() {
    let (app, _) = app(cluster(4));
    let (status, body) = call(&app, "GET", "/v1/partitions/nosuch/snapshot", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "partition nosuch not found");
}

#[tokio::test]
async fn reservations_not_ours_are_left_alone() {
    let (app, runner) = app(cluster(4));
    for name in ["ops-maint", "slurm-maintenance", "slurm-maint"] {
        let (status, body) = call(&app, "DELETE", &format!("/v1/reservations/{name}"), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}: {body}");
        assert_eq!(body["code"], "NotOwned");
        assert_eq!(
            body["error"],
            format!(
                "reservation {name} is not owned by slurm-maint (its names start with slurm-maint-); left alone"
            )
        );
        let (status, _) = call(
            &app,
            "PATCH",
            &format!("/v1/reservations/{name}"),
            Some(json!({"start": "now"})),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, _) = call(
        &app,
        "POST",
        "/v1/reservations",
        Some(json!({"name": "ops-maint2", "nodes": ["node1"], "durationMinutes": 60, "users": ["root"]})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(runner.count(), 0);

    let (status, body) = call(
        &app,
        "DELETE",
        "/v1/reservations/slurm-maint-node4-c1",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        runner.commands(),
        [commands::delete_reservation("slurm-maint-node4-c1")]
    );
}

#[tokio::test]
async fn reservation_writes_build_the_expected_commands() {
    let (app, runner) = app(cluster(4));
    let (status, body) = call(
        &app,
        "POST",
        "/v1/reservations",
        Some(json!({
            "name": "slurm-maint-node1-c1", "nodes": ["node[1-2]", "node4"],
            "start": "2099-01-01T06:00:00Z", "durationMinutes": 360,
            "users": ["root"], "flags": ["maint", "IGNORE_JOBS"]
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["message"], "Reservation created: x");
    let (status, _) = call(
        &app,
        "PATCH",
        "/v1/reservations/slurm-maint-node1-c1",
        Some(json!({"start": "2000-01-01T00:00:00Z", "nodes": ["node1"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        runner.commands(),
        [
            s(&[
                "scontrol",
                "create",
                "reservation",
                "ReservationName=slurm-maint-node1-c1",
                "StartTime=2099-01-01T06:00:00",
                "Duration=360",
                "Nodes=node[1-2,4]",
                "Users=root",
                "Flags=MAINT,IGNORE_JOBS",
            ]),
            s(&[
                "scontrol",
                "update",
                "ReservationName=slurm-maint-node1-c1",
                "StartTime=now",
                "Nodes=node1",
            ]),
        ],
        "a start in the past becomes now"
    );
}

#[tokio::test]
async fn cancel_only_preemptable_jobs_checked_now() {
    let (app, runner) = app(cluster(4));
    let (status, body) = call(&app, "POST", "/v1/jobs/7/cancel", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "job 7 is not preemptable");
    assert_eq!(body["code"], "NotPreemptable");
    assert_eq!(runner.count(), 2, "one show job, one show partition");
    assert!(ran(&runner, "scancel").is_empty(), "job 7 untouched");

    for id in [8, 9] {
        runner.reset();
        let (status, body) = call(&app, "POST", &format!("/v1/jobs/{id}/cancel"), None).await;
        assert_eq!(status, StatusCode::OK, "{id}: {body}");
        assert_eq!(body["changed"], true);
        assert_eq!(ran(&runner, "scancel"), [commands::cancel_job(id)]);
    }

    runner.reset();
    let (status, body) = call(&app, "POST", "/v1/jobs/10/cancel", None).await;
    assert_eq!((status, &body["changed"]), (StatusCode::OK, &json!(false)));
    let (status, body) = call(&app, "POST", "/v1/jobs/404/cancel", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Invalid job id specified")
    );
    assert!(ran(&runner, "scancel").is_empty());
}

#[tokio::test]
async fn drains_get_our_prefix_and_foreign_drains_are_left_alone() {
    let (app, runner) = app(cluster(4));
    let (status, body) = call(
        &app,
        "POST",
        "/v1/nodes/node1/drain",
        Some(json!({"reason": "firmware update"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        ran(&runner, "update"),
        [commands::drain_node(
            "node1",
            "slurm-maint: firmware update"
        )]
    );

    runner.reset();
    let (status, body) = call(
        &app,
        "POST",
        "/v1/nodes/node3/drain",
        Some(json!({"reason": "slurm-maint: x"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "ForeignDrain");
    let (status, _) = call(&app, "POST", "/v1/nodes/node3/resume", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = call(
        &app,
        "POST",
        "/v1/nodes/node3/reboot",
        Some(json!({"reason": "r"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(ran(&runner, "update").is_empty() && ran(&runner, "reboot").is_empty());

    let (status, body) = call(&app, "POST", "/v1/nodes/node2/resume", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call(&app, "POST", "/v1/nodes/node1/resume", None).await;
    assert_eq!((status, &body["changed"]), (StatusCode::OK, &json!(false)));
    assert_eq!(ran(&runner, "update"), [commands::resume_node("node2")]);
}

/// A reason of ours can outlive our work (Slurm 24.11 keeps it): a node Slurm took down is
/// never resumed on its strength, and clearing it is the only thing done with it.
#[tokio::test]
async fn a_node_slurm_took_down_is_never_resumed_and_stale_reasons_are_cleared() {
    let (app, runner) = app(cluster(6));
    let (status, body) = call(&app, "POST", "/v1/nodes/node5/resume", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "DownBySlurm");
    assert!(body["error"].as_str().unwrap().contains("DOWN"), "{body}");
    let (status, body) = call(&app, "POST", "/v1/nodes/node5/clear-reason", None).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::CONFLICT, &json!("NotInService")),
        "{body}"
    );
    assert!(ran(&runner, "update").is_empty());

    let (status, body) = call(&app, "POST", "/v1/nodes/node6/clear-reason", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ran(&runner, "update"), [commands::clear_reason("node6")]);
    runner.reset();
    for (node, code) in [("node3", "ForeignReason"), ("node2", "NotInService")] {
        let (status, body) = call(
            &app,
            "POST",
            &format!("/v1/nodes/{node}/clear-reason"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{node}: {body}");
        assert_eq!(body["code"], code, "{node}: {body}");
    }
    let (status, body) = call(&app, "POST", "/v1/nodes/node1/clear-reason", None).await;
    assert_eq!((status, &body["changed"]), (StatusCode::OK, &json!(false)));
    assert!(ran(&runner, "update").is_empty());
}

#[tokio::test]
async fn reboots_use_scontrol_or_the_site_command() {
    let (app, runner) = app(cluster(4));
    let (status, body) = call(
        &app,
        "POST",
        "/v1/nodes/node1/reboot",
        Some(json!({"reason": "kernel", "nextState": "DOWN"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        ran(&runner, "reboot"),
        [commands::reboot_node(
            "node1",
            "slurm-maint: kernel",
            crate::agent::api::NextState::Down
        )]
    );

    let site = Config {
        reboot_command: commands::parse_template("/usr/sbin/ipmi-reset --host {node}-bmc"),
        ..config()
    };
    let (app, runner) = app_with(site, cluster(4).ok(&["/usr/sbin/ipmi-reset"], "ok"));
    let (status, _) = call(
        &app,
        "POST",
        "/v1/nodes/node4/reboot",
        Some(json!({"reason": "r"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        runner.commands().last().unwrap(),
        &["/usr/sbin/ipmi-reset", "--host", "node4-bmc"]
    );
}

#[tokio::test]
async fn health_checks() {
    let (app, _) = app(cluster(4));
    let (status, body) = call(&app, "POST", "/v1/nodes/node1/health", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["healthy"], true);
    assert_eq!(
        body["message"],
        "no health command configured; node node1 is IDLE per Slurm (in service)"
    );
    let (_, body) = call(&app, "POST", "/v1/nodes/node3/health", None).await;
    assert_eq!(body["healthy"], false, "{body}");

    let checked = Config {
        health_command: commands::parse_template("/usr/local/bin/check {node}"),
        ..config()
    };
    let canned = Canned::new()
        .fail(
            &["/usr/local/bin/check", "node1"],
            1,
            "GPU0: 3 'ECC' errors;\n",
        )
        .ok(&["/usr/local/bin/check", "node2"], "");
    let (app, runner) = app_with(checked, canned);
    let (status, body) = call(&app, "POST", "/v1/nodes/node1/health", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"healthy": false, "message": "GPU0: 3 ECC errors"})
    );
    let (_, body) = call(&app, "POST", "/v1/nodes/node2/health", None).await;
    assert_eq!(
        body,
        json!({"healthy": true, "message": "health check passed"})
    );
    assert_eq!(runner.commands()[0], ["/usr/local/bin/check", "node1"]);
}

#[tokio::test]
async fn slurm_failures_are_502_with_slurms_message() {
    let canned = Canned::new()
        .fail(
            &["scontrol", "update"],
            1,
            "slurm_update error: Invalid node state specified",
        )
        .ok(
            &["scontrol", "show", "node"],
            "NodeName=node1 State=IDLE Partitions=batch Reason=(null)\n",
        )
        .fail(
            &["scontrol", "delete"],
            1,
            "delete_reservation slurm-maint-x: Requested reservation is invalid",
        );
    let (app, _) = app(canned);
    let (status, body) = call(
        &app,
        "POST",
        "/v1/nodes/node1/drain",
        Some(json!({"reason": "r"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["code"], "SlurmFailed");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .ends_with("slurm_update error: Invalid node state specified"),
        "{body}"
    );
    let (status, _) = call(&app, "DELETE", "/v1/reservations/slurm-maint-x", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&app, "POST", "/v1/nodes/node9/health", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn metrics_count_commands_by_verb_and_outcome() {
    let (app, _) = app(cluster(4));
    call(&app, "GET", "/v1/partitions/batch/snapshot", None).await;
    call(&app, "POST", "/v1/jobs/404/cancel", None).await;
    let response = app
        .clone()
        .oneshot(request("GET", "/metrics", Some(TOKEN), None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    for line in [
        r#"slurm_maint_agent_commands_total{verb="squeue",outcome="ok"} 1"#,
        r#"slurm_maint_agent_commands_total{verb="scontrol show partition",outcome="ok"} "#,
        r#"slurm_maint_agent_commands_total{verb="scontrol show job",outcome="failed"} 1"#,
        r#"slurm_maint_agent_command_duration_seconds_count{verb="scontrol show node"} 1"#,
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_before_any_command() {
    let (app, runner) = app(cluster(4));
    let reason = "x".repeat(MAX_BODY_BYTES);
    let big = json!({ "reason": reason });
    let (status, body) = call(&app, "POST", "/v1/nodes/node1/drain", Some(big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["code"], "PayloadTooLarge");

    // Without a Content-Length (chunked), counted as it arrives.
    let chunks = (0..=MAX_BODY_BYTES / 1024)
        .map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b' '; 1024])));
    let streamed = Request::builder()
        .method("POST")
        .uri("/v1/reservations")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    let (status, body) = send(&app, streamed).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(runner.count(), 0, "{:?}", runner.commands());

    // At the limit the body is read and judged as usual.
    let start = r#"{"reason": "kernel""#;
    let padded = format!("{start}{}}}", " ".repeat(MAX_BODY_BYTES - start.len() - 1));
    assert_eq!(padded.len(), MAX_BODY_BYTES);
    let at_limit = Request::builder()
        .method("POST")
        .uri("/v1/nodes/node1/drain")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(padded))
        .unwrap();
    let (status, body) = send(&app, at_limit).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_body_that_stalls_is_408_and_runs_nothing() {
    let config = Config {
        request_timeout: Duration::from_millis(300),
        ..config()
    };
    let (app, runner) = app_with(config, cluster(4));
    // Half a body, then nothing: the client went quiet.
    let half = futures::stream::iter([Ok::<_, std::io::Error>(axum::body::Bytes::from(
        "{\"reason\": \"ker",
    ))])
    .chain(futures::stream::pending());
    let stalled = Request::builder()
        .method("POST")
        .uri("/v1/nodes/node1/drain")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(half))
        .unwrap();
    let (status, body) = send(&app, stalled).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    assert_eq!(body["code"], "RequestTimeout");
    assert_eq!(runner.count(), 0, "{:?}", runner.commands());
}

/// Median time of `rounds` batches of `calls` comparisons of each of two presented
/// tokens, the two interleaved so that load on the machine hits both alike.
fn median_times(
    compare: impl Fn(&str, &str) -> bool,
    token: &str,
    early: &str,
    late: &str,
) -> (f64, f64) {
    const ROUNDS: usize = 101;
    const CALLS: usize = 20;
    let batch = |presented: &str| {
        let t = std::time::Instant::now();
        for _ in 0..CALLS {
            assert!(!compare(
                std::hint::black_box(presented),
                std::hint::black_box(token)
            ));
        }
        t.elapsed().as_secs_f64()
    };
    let (mut a, mut b) = (vec![], vec![]);
    for i in 0..ROUNDS {
        if i % 2 == 0 {
            a.push(batch(early));
            b.push(batch(late));
        } else {
            b.push(batch(late));
            a.push(batch(early));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(&mut a), median(&mut b))
}

/// A wrong token that differs from the real one in its first byte takes as long to
/// refuse as one that differs only in its last; a plain `==` (the control) does not.
#[test]
fn tokens_are_compared_in_constant_time() {
    let token = "k".repeat(16 * 1024);
    let early = format!("x{}", &token[1..]);
    let late = format!("{}x", &token[..token.len() - 1]);
    let naive = |presented: &str, token: &str| presented.trim() == token;
    let (e, l) = median_times(naive, &token, &early, &late);
    assert!(
        l > 3.0 * e,
        "the control cannot tell the difference: early {e:e}s, late {l:e}s; the test would prove nothing"
    );
    eprintln!("plain ==: first-byte difference {e:e}s, last-byte {l:e}s per batch");
    let (e, l) = median_times(token_matches, &token, &early, &late);
    let ratio = l / e;
    eprintln!("token_matches: first-byte difference {e:e}s, last-byte {l:e}s per batch");
    assert!(
        (0.67..1.5).contains(&ratio),
        "refusing took {e:e}s for a first-byte difference, {l:e}s for a last-byte one (ratio {ratio:.2})"
    );
    assert!(token_matches(&format!(" {token}\n"), &token));
    assert!(!token_matches(&token[1..], &token));
}

fn checks_config(file: &str) -> Config {
    Config {
        checks: Arc::new(Checks::parse(file, Duration::from_secs(5)).unwrap()),
        ..config()
    }
}

const CHECKS: &str = r#"
checks:
  - name: gpu
    argv: [/opt/check-gpu, --node, "{node}", "--fault={fault}"]
    passPattern: 'all GPUs healthy'
"#;

#[tokio::test]
async fn named_checks_run_only_what_is_configured() {
    let canned = Canned::new().ok(&["/opt/check-gpu"], "all GPUs healthy\n");
    let (app, runner) = app_with(checks_config(CHECKS), canned);
    let (status, body) = call(
        &app,
        "POST",
        "/v1/nodes/node1/checks/gpu",
        Some(json!({"fault": "HPCGPU-0001-01"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["passed"], true);
    assert_eq!(body["attempts"], 1);
    assert_eq!(body["output"], "all GPUs healthy");
    assert_eq!(
        runner.commands(),
        [[
            "/opt/check-gpu",
            "--node",
            "node1",
            "--fault=HPCGPU-0001-01"
        ]]
    );
    // No body: {fault} is `none`.
    let (status, _) = call(&app, "POST", "/v1/nodes/node2/checks/gpu", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(runner.commands()[1][3], "--fault=none");

    runner.reset();
    let (status, body) = call(&app, "POST", "/v1/nodes/node1/checks/rm-rf", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "UnknownCheck");
    assert_eq!(
        body["error"],
        "no check named rm-rf is configured on this agent (configured: gpu)"
    );
    for e in HOSTILE {
        let (status, body) = call(
            &app,
            "POST",
            &format!("/v1/nodes/node1/checks/{}", enc(e)),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{e}: {body}");
        let (status, body) = call(
            &app,
            "POST",
            &format!("/v1/nodes/{}/checks/gpu", enc(e)),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{e}: {body}");
        let (status, body) = call(
            &app,
            "POST",
            "/v1/nodes/node1/checks/gpu",
            Some(json!({ "fault": e })),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{e}: {body}");
    }
    let (status, _) = call(
        &app,
        "POST",
        "/v1/nodes/node1/checks/gpu",
        Some(json!({"argv": ["sh", "-c", "reboot"]})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no argv from the request");
    assert_eq!(runner.count(), 0, "{:?}", runner.commands());

    // Unauthenticated: refused before anything runs.
    let (status, _) = send(
        &app,
        request("POST", "/v1/nodes/node1/checks/gpu", None, None),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(runner.count(), 0);
    let (_, text) = call(&app, "GET", "/metrics", None).await;
    let text = text.as_str().unwrap().to_string();
    assert!(
        text.contains(r#"slurm_maint_agent_checks_total{check="gpu",outcome="passed"} 2"#),
        "{text}"
    );
}

#[tokio::test]
async fn the_health_command_is_the_check_named_default() {
    let args = [
        "agent",
        "--health-command",
        "/usr/local/bin/check {node}",
        "--command-timeout",
        "7s",
    ];
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        agent: crate::agent::AgentArgs,
    }
    let cli = <Cli as clap::Parser>::try_parse_from(args).unwrap();
    let config = cli.agent.config(Some(TOKEN.into())).unwrap();
    let check = config.checks.get("default").unwrap();
    assert_eq!(check.argv, ["/usr/local/bin/check", "{node}"]);
    assert_eq!(check.timeout, Duration::from_secs(7));
    let canned = Canned::new().fail(&["/usr/local/bin/check", "node1"], 1, "bad DIMM");
    let (app, _) = app_with(config, canned);
    let (status, body) = call(&app, "POST", "/v1/nodes/node1/checks/default", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["passed"], false);
    assert_eq!(body["message"], "exit code 1");
    assert_eq!(body["output"], "bad DIMM");
}

/// Real processes: checks that pass, fail, hang past their timeout, and flap then pass
/// within their retries (a counter file).
#[tokio::test]
async fn named_checks_as_real_processes() {
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("count");
    let file = format!(
        r#"
checks:
  - name: pass
    argv: [sh, -c, 'echo "node $0 ok"', "{{node}}"]
    passPattern: '^node node1 ok$'
  - name: fail
    argv: [sh, -c, 'echo "GPU 2: 4 uncorrected ECC errors" >&2; exit 3']
  - name: hang
    argv: [sh, -c, 'echo started; sleep 60']
    timeout: 1s
    retries: 1
    backoff: 10ms
  - name: flap
    argv: [sh, -c, 'n=$(cat "$0" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$0"; echo "try $n"; [ $n -ge 3 ]', "{}"]
    retries: 3
    backoff: 10ms
  - name: flap-too-long
    argv: [sh, -c, 'exit 1']
    retries: 2
    backoff: 10ms
"#,
        counter.display()
    );
    let config = Config {
        checks: Arc::new(Checks::parse(&file, Duration::from_secs(20)).unwrap()),
        ..config()
    };
    let app = router(
        config,
        Arc::new(crate::agent::ProcessRunner::new(Duration::from_secs(20))),
    );
    let check = |name: &'static str| {
        let app = app.clone();
        async move {
            let (status, body) = call(
                &app,
                "POST",
                &format!("/v1/nodes/node1/checks/{name}"),
                None,
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{name}: {body}");
            body
        }
    };
    let b = check("pass").await;
    assert_eq!(
        (b["passed"].as_bool(), b["attempts"].as_u64()),
        (Some(true), Some(1)),
        "{b}"
    );
    assert_eq!(b["output"], "node node1 ok");

    let b = check("fail").await;
    assert_eq!(b["passed"], false, "{b}");
    assert_eq!(b["message"], "exit code 3");
    assert_eq!(b["output"], "GPU 2: 4 uncorrected ECC errors");

    let started = Instant::now();
    let b = check("hang").await;
    assert_eq!(b["passed"], false, "{b}");
    assert_eq!(b["attempts"], 2);
    assert_eq!(
        b["message"],
        "did not finish within 1s and was killed (attempt 2 of 2)"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "killed at its timeout, not after sleep 60"
    );

    let b = check("flap").await;
    assert_eq!(b["passed"], true, "{b}");
    assert_eq!(b["attempts"], 3);
    assert_eq!(b["output"], "try 3");
    assert_eq!(std::fs::read_to_string(&counter).unwrap().trim(), "3");

    let b = check("flap-too-long").await;
    assert_eq!(
        (b["passed"].as_bool(), b["attempts"].as_u64()),
        (Some(false), Some(3)),
        "{b}"
    );
}
