//! The OCI emulator against the official OCI Python SDK (`pip install oci`), and against
//! this crate's own client, both through the `slurm-maint oci-emulator` binary.
//!
//! The SDK test is skipped, with a message, when `python3 -c "import oci"` fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use slurm_maint::oci::config::{ApiKey, parse_private_key};
use slurm_maint::oci::model::{ListEventsFilter, UpdateInstanceMaintenanceEventDetails};
use slurm_maint::oci::sign::fingerprint;
use slurm_maint::oci::{Endpoints, OciClient, OciError};

const TENANCY: &str = "ocid1.tenancy.oc1..aaaaaaaasdkproof";
const USER: &str = "ocid1.user.oc1..aaaaaaaasdkproof";
/// Generated compartments gen0, gen1 and `sub` under gen0: three below the tenancy.
const COMPARTMENT: &str = "ocid1.compartment.oc1..gen0";
const FIXED_EVENT: &str = "ocid1.instancemaintenanceevent.oc1..fixed";
/// In gen1: an event with two resolution actions and a correlation token, and one whose
/// reschedule's work request fails.
const OTHER_COMPARTMENT: &str = "ocid1.compartment.oc1..gen1";
const ALT_EVENT: &str = "ocid1.instancemaintenanceevent.oc1..alt";
const WR_FAIL_EVENT: &str = "ocid1.instancemaintenanceevent.oc1..wrfail";

struct Emu {
    child: Child,
    endpoint: String,
    /// `host:port` of the HTTPS listener, when started with `--tls-listen`.
    tls: Option<String>,
    /// The tenancy it printed.
    tenancy: String,
    /// Its log lines so far (also passed on to the test's stderr).
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Emu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(args: &[&str]) {
    let st = Command::new("openssl")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(st.success(), "openssl {args:?} failed");
}

/// Keys, config files and the scenario in `dir`; returns (config, bad config, scenario).
fn prepare(dir: &Path) -> (String, String, String) {
    let key = dir.join("key.pem");
    let public = dir.join("key.pub");
    let other = dir.join("other.pem");
    openssl(&["genrsa", "-out", key.to_str().unwrap(), "2048"]);
    openssl(&[
        "rsa",
        "-in",
        key.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    openssl(&["genrsa", "-out", other.to_str().unwrap(), "2048"]);
    let fp = |p: &Path| {
        let pem = std::fs::read_to_string(p).unwrap();
        fingerprint(&parse_private_key(&pem, None).unwrap().to_public_key())
    };
    let write_config = |name: &str, key: &Path| {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "[DEFAULT]\nuser={USER}\nfingerprint={}\nkey_file={}\ntenancy={TENANCY}\nregion=us-ashburn-1\n",
                fp(key),
                key.display()
            ),
        )
        .unwrap();
        path.to_str().unwrap().to_string()
    };
    let config = write_config("config", &key);
    let bad = write_config("bad-config", &other);
    let now = Timestamp::now();
    let scenario = dir.join("scenario.yaml");
    std::fs::write(
        &scenario,
        format!(
            r#"tenancy: {TENANCY}
stepSeconds: 5
generate: {{compartments: 2, instances: 10, events: 10}}
compartments:
  - {{id: ocid1.compartment.oc1..sub, name: sub, parent: ocid1.compartment.oc1..gen0}}
instances:
  - {{id: ocid1.instance.oc1..fixed, compartmentId: {COMPARTMENT}, displayName: gpu-fixed, shape: BM.GPU.H100.8, availabilityDomain: AD-1}}
  - {{id: ocid1.instance.oc1..alt, compartmentId: {OTHER_COMPARTMENT}, displayName: gpu-alt, availabilityDomain: AD-2, lifecycleState: STOPPED}}
  - {{id: ocid1.instance.oc1..wrfail, compartmentId: {OTHER_COMPARTMENT}, displayName: gpu-wrfail}}
events:
  - id: {ALT_EVENT}
    instanceId: ocid1.instance.oc1..alt
    compartmentId: {OTHER_COMPARTMENT}
    displayName: a-alt
    alternativeResolutionActions: [REBOOT_MIGRATION, TERMINATE]
    timeWindowStart: "{}"
    canReschedule: true
    correlationToken: corr-alt
  - id: {WR_FAIL_EVENT}
    instanceId: ocid1.instance.oc1..wrfail
    compartmentId: {OTHER_COMPARTMENT}
    displayName: b-wrfail
    alternativeResolutionActions: [REBOOT_MIGRATION]
    timeWindowStart: "{}"
    canReschedule: true
    workRequestOutcome: FAILED
  - id: {FIXED_EVENT}
    instanceId: ocid1.instance.oc1..fixed
    compartmentId: {COMPARTMENT}
    maintenanceCategory: EMERGENCY
    maintenanceReason: EVACUATION
    instanceAction: REBOOT_MIGRATION
    alternativeResolutionActions: [REBOOT_MIGRATION]
    timeWindowStart: "{}"
    timeHardDueDate: "{}"
    canReschedule: false
    lifecycleState: SCHEDULED
    createdBy: SYSTEM
    additionalDetails: {{faultDetails: "not json at all"}}
"#,
            now + SignedDuration::from_hours(24),
            now + SignedDuration::from_hours(24),
            now + SignedDuration::from_hours(48),
            now + SignedDuration::from_hours(72),
        ),
    )
    .unwrap();
    (
        config,
        bad,
        format!("{}|{}", scenario.display(), public.display()),
    )
}

fn start_emulator(scenario: &str, public_key: &str, extra: &[&str]) -> Emu {
    let mut child = Command::new(env!("CARGO_BIN_EXE_slurm-maint"))
        .args([
            "oci-emulator",
            "--listen",
            "127.0.0.1:0",
            "--scenario",
            scenario,
        ])
        .args(["--public-key", public_key])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the emulator starts");
    let log = Arc::new(Mutex::new(vec![]));
    let lines = log.clone();
    let err = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in err.lines().map_while(Result::ok) {
            eprintln!("{line}");
            lines.lock().unwrap().push(line);
        }
    });
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let tls = extra.contains(&"--tls-listen").then(|| {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        line.trim()
            .strip_prefix("tls listening on ")
            .unwrap_or_else(|| panic!("unexpected second line {line:?}"))
            .to_string()
    });
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let tenancy = line
        .trim()
        .strip_prefix("tenancy ")
        .unwrap_or_else(|| panic!("no tenancy line: {line:?}"))
        .to_string();
    Emu {
        child,
        endpoint: format!("http://{addr}"),
        tls,
        tenancy,
        log,
    }
}

/// Requests signed by this crate's signer, for the SDK to re-sign and compare.
fn rust_vectors(dir: &Path, config: &str) -> String {
    use slurm_maint::oci::sign::{SignInput, content_sha256, http_date};
    let key = ApiKey::from_config_file(Path::new(config), "DEFAULT").unwrap();
    let signer = key.signer();
    let date = http_date(Timestamp::now());
    let host = "iaas.us-ashburn-1.oraclecloud.com";
    let cases: [(&str, &str, Option<&str>); 4] = [
        (
            "GET",
            "/20160918/instanceMaintenanceEvents?compartmentId=ocid1.compartment.oc1..gen0&limit=2&page=p2",
            None,
        ),
        (
            "GET",
            "/20160918/workRequests/ocid1.workrequest.oc1..emu000001",
            None,
        ),
        (
            "PUT",
            "/20160918/instanceMaintenanceEvents/ocid1.instancemaintenanceevent.oc1..gen0",
            Some(
                r#"{"timeWindowStart":"2026-12-01T10:00:00Z","freeformTags":{"slurm-maint":"scheduled"}}"#,
            ),
        ),
        (
            "POST",
            "/20160918/instances/ocid1.instance.oc1..gen0?action=SOFTRESET",
            None,
        ),
    ];
    let vectors: Vec<serde_json::Value> = cases
        .iter()
        .map(|(method, pq, body)| {
            let b = body.unwrap_or("").as_bytes();
            let s = signer.sign(&SignInput {
                method,
                path_and_query: pq,
                host,
                date: &date,
                body: b,
                content_type: "application/json",
            });
            serde_json::json!({
                "method": method,
                "url": format!("https://{host}{pq}"),
                "date": date,
                "body": body,
                "authorization": s.authorization,
                "x-content-sha256": content_sha256(b),
            })
        })
        .collect();
    let path = dir.join("rust-vectors.json");
    std::fs::write(&path, serde_json::to_string_pretty(&vectors).unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

fn python_has_oci() -> bool {
    Command::new("python3")
        .args(["-c", "import oci"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn official_python_sdk_drives_the_emulator() {
    if !python_has_oci() {
        eprintln!(
            "SKIPPED: the OCI Python SDK is not installed (`pip install oci`); tests/run.sh installs it"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (config, bad, files) = prepare(dir.path());
    let (scenario, public) = files.split_once('|').unwrap();
    let emu = start_emulator(scenario, public, &[]);
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oci_sdk.py"))
        .args([
            "--endpoint",
            &emu.endpoint,
            "--config",
            &config,
            "--bad-config",
            &bad,
        ])
        .args([
            "--tenancy",
            TENANCY,
            "--compartment",
            COMPARTMENT,
            "--fixed-event",
            FIXED_EVENT,
        ])
        .args([
            "--other-compartment",
            OTHER_COMPARTMENT,
            "--alt-event",
            ALT_EVENT,
            "--wr-fail-event",
            WR_FAIL_EVENT,
        ])
        // gen0, gen1, sub; gen0 holds generated events 0,2,4,6,8 and the fixed one; gen1
        // events 1,3,5,7,9, alt and wrfail.
        .args(["--expect-compartments", "3", "--expect-events", "6"])
        .args(["--expect-other-events", "7"])
        .args(["--rust-vectors", &rust_vectors(dir.path(), &config)])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the SDK proof failed:\n{stdout}");
    assert!(stdout.contains(" passed, 0 failed"));
    assert_eq!(emu.tenancy, TENANCY, "the tenancy is printed");
    // One info line per request and one more per refusal, with what the issue asks.
    let log = emu.log.lock().unwrap().clone();
    let request = log
        .iter()
        .find(|l| l.contains(" request ") && l.contains("path=/20160918/tenancies/"))
        .unwrap_or_else(|| panic!("no request line for GetTenancy in {log:#?}"));
    for field in [
        "INFO",
        "method=GET",
        "status=200",
        "opc_request_id=",
        "latency_ms=",
    ] {
        assert!(request.contains(field), "{field} in {request}");
    }
    let refused = log
        .iter()
        .find(|l| l.contains(" refused ") && l.contains("code=NotAuthenticated"))
        .unwrap_or_else(|| panic!("no refusal line in {log:#?}"));
    assert!(
        refused.contains("status=401") && refused.contains("reason="),
        "{refused}"
    );
}

/// The same flows with this crate's client, plus the injected-fault path.
#[tokio::test]
async fn own_client_drives_the_emulator_binary() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (config, bad, files) = prepare(dir.path());
    let (scenario, public) = files.split_once('|').unwrap();
    let emu = start_emulator(scenario, public, &[]);
    let key = ApiKey::from_config_file(Path::new(&config), "DEFAULT").unwrap();
    let client = OciClient::new(key.signer(), Endpoints::single(&emu.endpoint)).unwrap();

    let comps = client.list_compartments(TENANCY).await.unwrap();
    assert_eq!(comps.len(), 4, "the tenancy and three below it");
    assert_eq!(comps[0].id, TENANCY);

    let mut filter = ListEventsFilter::compartment(COMPARTMENT);
    filter.limit = Some(2);
    let events = client
        .list_instance_maintenance_events(&filter)
        .await
        .unwrap();
    assert_eq!(events.len(), 6);
    assert!(events.iter().all(|e| e.additional_details.is_none()));

    let (fixed, _) = client
        .get_instance_maintenance_event(FIXED_EVENT)
        .await
        .unwrap();
    assert_eq!(
        fixed.additional_details.unwrap()["faultDetails"],
        "not json at all"
    );
    let target = events.iter().find(|e| e.can_reschedule).unwrap();
    let (full, etag) = client
        .get_instance_maintenance_event(&target.id)
        .await
        .unwrap();
    assert!(full.additional_details.is_some());

    let soon = UpdateInstanceMaintenanceEventDetails {
        time_window_start: Some(Timestamp::now() + SignedDuration::from_secs(30)),
        ..Default::default()
    };
    let late = UpdateInstanceMaintenanceEventDetails {
        time_window_start: full
            .time_hard_due_date
            .map(|d| d + SignedDuration::from_hours(24)),
        ..Default::default()
    };
    let err = client
        .update_instance_maintenance_event(&target.id, &late, None, None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    let err = client
        .update_instance_maintenance_event(FIXED_EVENT, &soon, None, None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409));

    let wr = client
        .update_instance_maintenance_event(&target.id, &soon, etag.as_deref(), None)
        .await
        .unwrap();
    let advance = |s: u32| {
        let url = format!("{}/_emulator/advance?seconds={s}", emu.endpoint);
        async move {
            reqwest::Client::builder()
                .tls_backend_preconfigured(
                    rustls::ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                )
                .build()
                .unwrap()
                .post(url)
                .send()
                .await
                .unwrap();
        }
    };
    let mut seen = vec![];
    for _ in 0..50 {
        let w = client.get_work_request(&wr).await.unwrap();
        if seen.last() != Some(&w.status) {
            seen.push(w.status.clone());
        }
        if w.is_terminal() {
            break;
        }
        advance(1).await;
    }
    assert_eq!(seen, ["ACCEPTED", "IN_PROGRESS", "SUCCEEDED"]);
    let mut states = vec![];
    for _ in 0..100 {
        let (e, _) = client
            .get_instance_maintenance_event(&target.id)
            .await
            .unwrap();
        if states.last() != Some(&e.lifecycle_state) {
            states.push(e.lifecycle_state.clone());
        }
        if e.lifecycle_state == "SUCCEEDED" {
            break;
        }
        advance(1).await;
    }
    assert_eq!(states.first().map(String::as_str), Some("SCHEDULED"));
    assert_eq!(states.last().map(String::as_str), Some("SUCCEEDED"));
    assert!(states.contains(&"PROCESSING".to_string()), "{states:?}");

    let i = client
        .instance_action(&target.instance_id, "SOFTRESET", None, None)
        .await
        .unwrap();
    assert_eq!(i.id, target.instance_id);

    let stranger = ApiKey::from_config_file(Path::new(&bad), "DEFAULT").unwrap();
    let stranger = OciClient::new(stranger.signer(), Endpoints::single(&emu.endpoint)).unwrap();
    let err = stranger.list_compartments(TENANCY).await.unwrap_err();
    assert!(
        matches!(&err, OciError::Service { status: 401, code, opc_request_id: Some(_), .. } if code == "NotAuthenticated"),
        "{err}"
    );
}

/// A 20 % injected 429/500 rate only slows the client down (real sleeps, short policy).
#[tokio::test]
async fn injected_faults_only_slow_the_client_down() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (config, _, files) = prepare(dir.path());
    let (scenario, public) = files.split_once('|').unwrap();
    let emu = start_emulator(scenario, public, &["--error-rate", "0.2"]);
    let key = ApiKey::from_config_file(Path::new(&config), "DEFAULT").unwrap();
    let client = OciClient::new(key.signer(), Endpoints::single(&emu.endpoint))
        .unwrap()
        .with_retry(slurm_maint::oci::retry::RetryPolicy {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(50),
            ..Default::default()
        });
    let mut filter = ListEventsFilter::compartment(COMPARTMENT);
    filter.limit = Some(1);
    for _ in 0..5 {
        assert_eq!(
            client
                .list_instance_maintenance_events(&filter)
                .await
                .unwrap()
                .len(),
            6
        );
    }
}

/// An HTTP CONNECT proxy on loopback that tunnels every CONNECT to `target`, recording
/// the request lines. The SDK's OKE signer reaches the proxymux at the fixed port 12250
/// of `KUBERNETES_SERVICE_HOST`; through `HTTPS_PROXY` it reaches the emulator instead.
fn connect_proxy(target: String) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(vec![]));
    let record = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut client) = conn else { continue };
            let (record, target) = (record.clone(), target.clone());
            std::thread::spawn(move || {
                let mut head = vec![];
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut b).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                record.lock().unwrap().push(line.clone());
                let Some(mut upstream) = line
                    .starts_with("CONNECT ")
                    .then(|| TcpStream::connect(&target).ok())
                    .flatten()
                else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
                    return;
                };
                let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                let up = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut u2);
                    let _ = u2.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut upstream, &mut client);
                let _ = client.shutdown(std::net::Shutdown::Both);
                let _ = up.join();
            });
        }
    });
    (port, seen)
}

/// A ServiceAccount-token-shaped JWT (the SDK reads its `exp`).
fn service_account_token() -> String {
    use base64::Engine;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(serde_json::json!({"alg": "RS256", "kid": "cluster"})),
        b64(serde_json::json!({
            "iss": "https://kubernetes.default.svc.cluster.local",
            "sub": "system:serviceaccount:slurm:slurm-maint-controller",
            "exp": Timestamp::now().as_second() + 3600,
        })),
    )
}

/// The SDK's own OKE workload identity and instance principal signers get tokens from
/// the emulator and list events with them; the emulator refuses an expired token and the
/// SDK's refresh-after-401 recovers.
#[test]
fn official_python_sdk_uses_session_tokens_from_the_emulator() {
    if !python_has_oci() {
        eprintln!(
            "SKIPPED: the OCI Python SDK is not installed (`pip install oci`); tests/run.sh installs it"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, _, files) = prepare(d);
    let (scenario, public) = files.split_once('|').unwrap();
    let st = Command::new("sh")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/oci/make-identity.sh"
        ))
        .arg(d)
        .arg(TENANCY)
        .status()
        .unwrap();
    assert!(st.success());
    let sa_path = d.join("sa-token");
    std::fs::write(&sa_path, service_account_token()).unwrap();
    let p = |f: &str| d.join(f).to_str().unwrap().to_string();
    let emu = start_emulator(
        scenario,
        public,
        &[
            "--sa-token",
            &p("sa-token"),
            "--instance-cert",
            &p("leaf.pem"),
            "--instance-key",
            &p("leaf.key"),
            "--instance-intermediate",
            &p("intermediate.pem"),
            "--instance-ca",
            &p("ca.pem"),
            "--token-ttl-seconds",
            "1200",
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            &p("tls.pem"),
            "--tls-key",
            &p("tls.key"),
        ],
    );
    let (proxy, tunnels) = connect_proxy(emu.tls.clone().unwrap());
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oci_sdk.py"))
        .args(["--session-tokens", "--endpoint", &emu.endpoint])
        .args(["--tenancy", TENANCY, "--compartment", COMPARTMENT])
        .args(["--region", "us-ashburn-1", "--token-ttl", "1200"])
        .args(["--sa-token-path", &p("sa-token")])
        .args(["--expect-compartments", "3", "--expect-events", "6"])
        .env("KUBERNETES_SERVICE_HOST", "proxymux.emulator.test")
        .env("OCI_KUBERNETES_SERVICE_ACCOUNT_CERT_PATH", p("ca.pem"))
        .env("OCI_RESOURCE_PRINCIPAL_VERSION", "2.2")
        .env("OCI_RESOURCE_PRINCIPAL_REGION", "us-ashburn-1")
        .env("OCI_METADATA_BASE_URL", format!("{}/opc/v2", emu.endpoint))
        .env("HTTPS_PROXY", format!("http://127.0.0.1:{proxy}"))
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("no_proxy")
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the SDK session token proof failed:\n{stdout}"
    );
    assert!(stdout.contains(" passed, 0 failed"));
    let tunnels = tunnels.lock().unwrap().clone();
    assert!(
        !tunnels.is_empty()
            && tunnels
                .iter()
                .all(|t| t.starts_with("CONNECT proxymux.emulator.test:12250 ")),
        "the SDK reached the proxymux only at its fixed port: {tunnels:?}"
    );
}
