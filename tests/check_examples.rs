//! The example checks of docs/examples/gpu-checks.yaml: the agent accepts the file, and
//! each check's patterns judge sample outputs (tests/fixtures/checks/, written to look
//! like the tools' documented output, not captured) as a site would want.

use std::time::Duration;

use slurm_maint::agent::checks::Checks;
use slurm_maint::agent::runner::CommandOutput;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn examples() -> Checks {
    Checks::load(
        &root().join("docs/examples/gpu-checks.yaml"),
        Duration::from_secs(30),
    )
    .unwrap()
}

fn judge(checks: &Checks, check: &str, sample: &str, code: i32) -> Result<(), String> {
    let stdout = std::fs::read_to_string(root().join("tests/fixtures/checks").join(sample))
        .unwrap_or_else(|e| panic!("{sample}: {e}"));
    checks
        .get(check)
        .unwrap_or_else(|| panic!("no example {check}"))
        .judge(&CommandOutput {
            stdout,
            code: Some(code),
            ..Default::default()
        })
}

#[test]
fn the_example_checks_judge_sample_outputs() {
    let c = examples();
    let cases: &[(&str, &str, i32, Result<(), &str>)] = &[
        ("ready", "scontrol-idle.txt", 0, Ok(())),
        ("ready", "scontrol-drained.txt", 0, Err("fail pattern")),
        ("ready", "scontrol-down.txt", 0, Err("fail pattern")),
        ("gpu-dcgm", "dcgm-pass.txt", 0, Ok(())),
        ("gpu-dcgm", "dcgm-fail.txt", 0, Err("fail pattern")),
        ("gpu-dcgm", "dcgm-fail.txt", 226, Err("fail pattern")),
        ("gpu-ecc", "ecc-pass.txt", 0, Ok(())),
        ("gpu-ecc", "ecc-fail.txt", 0, Err("pass pattern")),
        ("gpu-ecc", "ecc-disabled.txt", 0, Err("pass pattern")),
        ("gpu-ecc", "ecc-pass.txt", 9, Err("exit code 9")),
        ("pcie-width", "lspci-pass.txt", 0, Ok(())),
        ("pcie-width", "lspci-downgraded.txt", 0, Err("fail pattern")),
        ("pcie-width-sysfs", "sysfs-pass.txt", 0, Ok(())),
        (
            "pcie-width-sysfs",
            "sysfs-degraded.txt",
            0,
            Err("fail pattern"),
        ),
        ("nccl-single-node", "nccl-pass.txt", 0, Ok(())),
        ("nccl-single-node", "nccl-slow.txt", 0, Err("pass pattern")),
        ("nccl-single-node", "nccl-wrong.txt", 0, Err("fail pattern")),
        ("gpu-xid-log", "xid-none.txt", 0, Ok(())),
        ("gpu-xid-log", "xid-13.txt", 0, Ok(())),
        ("gpu-xid-log", "xid-79.txt", 0, Err("fail pattern")),
    ];
    for (check, sample, code, want) in cases {
        let got = judge(&c, check, sample, *code);
        match (want, &got) {
            (Ok(()), Ok(())) => {}
            (Err(w), Err(e)) if e.contains(w) => {}
            _ => panic!("{check} on {sample} (exit {code}): {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn the_example_argv_keep_node_and_fault_in_one_element() {
    let c = examples();
    let argv = c
        .get("gpu-ecc")
        .unwrap()
        .argv_for("gpu001", Some("HPCGPU-0001-01"));
    assert_eq!(argv[..2], ["ssh", "gpu001"]);
    let argv = c.get("nccl-single-node").unwrap().argv_for("gpu001", None);
    assert_eq!(argv[..3], ["srun", "-w", "gpu001"]);
    assert_eq!(c.get("ready").unwrap().retries, 5);
}
