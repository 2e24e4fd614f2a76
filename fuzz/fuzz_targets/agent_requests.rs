//! Every route of the agent, in process, with hostile path parameters and bodies, over a
//! runner that records each command line and answers from captured Slurm 22.05 output.
//!
//! Input: byte 0 picks the route (bit 7: site reboot and health commands configured),
//! byte 1 is the length of the path parameter that follows (raw bytes, percent-encoded
//! into the URI), the rest is the JSON body.
//!
//! Checked: no panic and no 5xx but 502 (Slurm's own failure); a request refused with
//! 400 ran no command; a path parameter the validators refuse never reached a command;
//! every argument of every command is printable ASCII without quotes, `` ` ``, `$`, `;`,
//! `|`, `&` or `\`, and only the agent's own fixed options start with `-`.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use libfuzzer_sys::fuzz_target;
use slurm_maint::agent::runner::{Canned, Counting};
use slurm_maint::agent::{Config, router, validate};
use slurm_maint::slurm::parse::SQUEUE_FORMAT;
use tower::ServiceExt;

const TOKEN: &str = "fuzz-token";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/slurm-22.05");

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

/// A cluster as Slurm 22.05 printed it: jobs, our reservations, a foreign drain.
fn slurm() -> &'static Canned {
    static SLURM: OnceLock<Canned> = OnceLock::new();
    SLURM.get_or_init(|| {
        let read = |f: &str| {
            std::fs::read_to_string(format!("{FIXTURES}/{f}"))
                .unwrap_or_else(|e| panic!("{FIXTURES}/{f}: {e}"))
        };
        let state = "02-jobs-reservations-drain";
        Canned::new()
            .ok(
                &["scontrol", "show", "node"],
                read(&format!("{state}/scontrol-show-node.txt")),
            )
            .ok(
                &["scontrol", "show", "job"],
                read(&format!("{state}/scontrol-show-job.txt")),
            )
            .ok(
                &["scontrol", "show", "reservation"],
                read(&format!("{state}/scontrol-show-reservation.txt")),
            )
            .ok(
                &["scontrol", "show", "partition"],
                read(&format!("{state}/scontrol-show-partition.txt")),
            )
            .ok(&["squeue"], read("06-squeue-narrow/squeue-narrow.txt"))
            .ok(
                &["scontrol", "ping"],
                "Slurmctld(primary) at localhost is UP",
            )
            .ok(&["scontrol"], "")
            .ok(&["scancel"], "")
            .ok(&["/usr/local/sbin/site-reboot"], "rebooting")
            .ok(&["/usr/local/bin/site-check"], "healthy")
    })
}

/// The agent's own options: nothing from a request may start with `-`.
const OPTIONS: &[&str] = &["-h", "-a", "-t", "-o"];

fn safe_argument(a: &str) -> bool {
    if a == SQUEUE_FORMAT {
        return true;
    }
    // The agent's promise (validate::reason, the widest of its rules): printable ASCII
    // without quotes, `` ` ``, `$`, `;`, `|`, `&`, `\`.
    a.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && !b"'\"`$;|&\\".contains(&b))
        && (!a.starts_with('-') || OPTIONS.contains(&a))
}

fn percent_encode(raw: &[u8]) -> String {
    raw.iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Param {
    Partition,
    Reservation,
    Node,
    Job,
    None,
}

fuzz_target!(|data: &[u8]| {
    let [route, len, rest @ ..] = data else {
        return;
    };
    let (raw_param, body) = rest.split_at((*len as usize).min(rest.len()));
    let site_commands = route & 0x80 != 0;
    let p = percent_encode(raw_param);
    let (method, uri, param) = match (route & 0x7f) % 10 {
        0 => (
            "GET",
            format!("/v1/partitions/{p}/snapshot"),
            Param::Partition,
        ),
        1 => ("POST", "/v1/reservations".to_string(), Param::None),
        2 => ("PATCH", format!("/v1/reservations/{p}"), Param::Reservation),
        3 => (
            "DELETE",
            format!("/v1/reservations/{p}"),
            Param::Reservation,
        ),
        4 => ("POST", format!("/v1/nodes/{p}/drain"), Param::Node),
        5 => ("POST", format!("/v1/nodes/{p}/resume"), Param::Node),
        6 => ("POST", format!("/v1/nodes/{p}/clear-reason"), Param::Node),
        7 => ("POST", format!("/v1/nodes/{p}/reboot"), Param::Node),
        8 => ("POST", format!("/v1/nodes/{p}/health"), Param::Node),
        _ => ("POST", format!("/v1/jobs/{p}/cancel"), Param::Job),
    };
    let mut config = Config {
        tz: jiff::tz::TimeZone::UTC,
        ..Config::new(TOKEN)
    };
    if site_commands {
        config.reboot_command = Some(vec!["/usr/local/sbin/site-reboot".into(), "{node}".into()]);
        config.health_command = Some(vec![
            "/usr/local/bin/site-check".into(),
            "--node={node}".into(),
        ]);
    }
    let runner = Arc::new(Counting::new(slurm().clone()));
    let app = router(config, runner.clone());
    let request = Request::builder()
        .method(method)
        .uri(&uri)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_vec()))
        .unwrap();
    let response = runtime().block_on(app.oneshot(request)).unwrap();
    let status = response.status();
    let commands = runner.commands();

    assert!(
        !status.is_server_error() || status == StatusCode::BAD_GATEWAY,
        "{method} {uri}: {status}"
    );
    if status == StatusCode::BAD_REQUEST {
        assert!(
            commands.is_empty(),
            "{method} {uri}: 400 after running {commands:?}"
        );
    }
    let text = std::str::from_utf8(raw_param).ok();
    let valid = match param {
        Param::None => true,
        Param::Partition => text.is_some_and(|t| validate::partition_name(t).is_ok()),
        Param::Reservation => text.is_some_and(|t| validate::reservation_name(t).is_ok()),
        Param::Node => text.is_some_and(|t| validate::node_name(t).is_ok()),
        Param::Job => text.is_some_and(|t| validate::job_id(t).is_ok()),
    };
    if !valid {
        assert!(
            commands.is_empty(),
            "{method} {uri}: refused parameter reached {commands:?}"
        );
        assert!(
            matches!(status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND),
            "{method} {uri}: invalid parameter answered {status}"
        );
    }
    for argv in &commands {
        for a in argv.iter().skip(1) {
            assert!(
                site_commands && a.starts_with("--node=") && safe_argument(&a[7..])
                    || safe_argument(a),
                "{method} {uri}: unsafe argument {a:?} in {argv:?}"
            );
        }
    }
});
