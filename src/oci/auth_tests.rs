//! The session providers against the emulator's token services: the OKE proxymux over
//! TLS, the metadata service and X.509 federation, with a PKI made by the openssl CLI.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::oci::emulator::{Emulator, Generate, InstanceIdentity, Scenario, TokenAuth};
use crate::oci::{Endpoints, OciClient};

const TENANCY: &str = "ocid1.tenancy.oc1..aaaaaaaatokens";
const SA_TOKEN: &str =
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6c2x1cm0tbWFpbnQifQ.c2E";

fn pki() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oci/make-identity.sh");
    let st = std::process::Command::new("sh")
        .arg(script)
        .arg(dir.path())
        .arg(TENANCY)
        .status()
        .expect("sh runs");
    assert!(st.success(), "make-identity.sh failed");
    dir
}

fn read(dir: &Path, f: &str) -> String {
    std::fs::read_to_string(dir.join(f)).unwrap()
}

fn identity(dir: &Path, prefix: &str, key_prefix: &str) -> InstanceIdentity {
    InstanceIdentity {
        cert_pem: read(dir, &format!("{prefix}leaf.pem")),
        key_pem: read(dir, &format!("{key_prefix}leaf.key")),
        intermediate_pem: read(dir, &format!("{prefix}intermediate.pem")),
        trusted_ca_pem: read(dir, "ca.pem"),
    }
}

struct Emu {
    emu: Emulator,
    http: String,
    https: String,
}

async fn start(dir: &Path, tenancy: &str, instance: InstanceIdentity) -> Emu {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let scenario = Scenario {
        tenancy: tenancy.into(),
        generate: Some(Generate {
            compartments: 2,
            instances: 2,
            events: 2,
            host_prefix: "gpu-".into(),
            fault_ids: vec![],
        }),
        ..Scenario::default()
    };
    let emu = Emulator::with_tokens(
        scenario,
        vec![],
        TokenAuth {
            sa_tokens: vec![SA_TOKEN.into()],
            instance: Some(instance),
            token_ttl: SignedDuration::from_mins(20),
        },
    )
    .unwrap();
    let (addr, _) = emu.start("127.0.0.1:0").await.unwrap();
    let config =
        crate::agent::tls::server_config(&dir.join("tls.pem"), &dir.join("tls.key"), None).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_addr = l.local_addr().unwrap();
    tokio::spawn(crate::agent::tls::serve(
        l,
        config,
        emu.router(),
        std::future::pending(),
    ));
    Emu {
        emu,
        http: format!("http://{addr}"),
        https: format!("https://{tls_addr}"),
    }
}

fn workload(e: &Emu, dir: &Path, sa: &str, ca: &str) -> SessionSource {
    let sa_path = dir.join(format!("sa-{}", sa.len()));
    std::fs::write(&sa_path, format!("{sa}\n")).unwrap();
    SessionSource::WorkloadIdentity(WorkloadIdentity {
        endpoint: format!("{}/resourcePrincipalSessionTokens", e.https),
        sa_token_path: sa_path,
        ca_path: dir.join(ca),
        region: Some("us-ashburn-1".into()),
    })
}

fn instance(e: &Emu) -> SessionSource {
    SessionSource::InstancePrincipal(InstancePrincipal {
        metadata_base: format!("{}/opc/v2", e.http),
        auth_endpoint: Some(e.http.clone()),
    })
}

fn emu_clock(e: &Emu) -> Clock {
    let emu = e.emu.clone();
    Arc::new(move || emu.now())
}

fn client(e: &Emu, c: &Credentials) -> OciClient {
    OciClient::with_credentials(c.clone(), Endpoints::single(&e.http)).unwrap()
}

fn assert_401(err: &OciError, needle: &str) {
    assert!(
        matches!(err, OciError::Service { status: 401, code, message, .. }
            if code == "NotAuthenticated" && message.contains(needle)),
        "expected 401 NotAuthenticated mentioning {needle:?}, got {err}"
    );
}

/// Both sources: a token is fetched once, signs API requests, carries the session key
/// in its `jwk` claim, and is fetched again when it nears `exp` on the provider's clock.
#[tokio::test]
async fn session_tokens_sign_requests_and_refresh_before_exp() {
    let dir = pki();
    let e = start(dir.path(), TENANCY, identity(dir.path(), "", "")).await;
    for (source, ptype) in [
        (workload(&e, dir.path(), SA_TOKEN, "ca.pem"), "resource"),
        (instance(&e), "instance"),
    ] {
        let issued_before = e.emu.tokens_issued();
        let creds = Credentials::session_with_clock(source, emu_clock(&e));
        let c = client(&e, &creds);
        let comps = c.list_compartments(TENANCY).await.unwrap();
        assert_eq!(comps.len(), 3, "{ptype}: the tenancy and two compartments");
        c.list_compartments(TENANCY).await.unwrap();
        assert_eq!(
            creds.tokens_fetched(),
            1,
            "{ptype}: one token for two calls"
        );
        assert_eq!(e.emu.tokens_issued(), issued_before + 1);

        let signer = creds.signer().await.unwrap();
        let token = signer.key_id().strip_prefix("ST$").expect("ST$ key id");
        let claims = parse_jwt(token).unwrap();
        assert_eq!(claims.all["ptype"], ptype);
        assert_eq!(
            claims.exp.duration_since(claims.iat.unwrap()),
            SignedDuration::from_mins(20)
        );
        let jwk: serde_json::Value =
            serde_json::from_str(claims.all["jwk"].as_str().unwrap()).unwrap();
        assert_eq!(jwk["kty"], "RSA");
        assert!(jwk["n"].as_str().is_some_and(|n| n.len() > 300), "{jwk}");

        e.emu.advance(Duration::from_secs(14 * 60));
        c.list_compartments(TENANCY).await.unwrap();
        assert_eq!(creds.tokens_fetched(), 1, "{ptype}: 6 min left, kept");
        e.emu.advance(Duration::from_secs(2 * 60));
        c.list_compartments(TENANCY).await.unwrap();
        assert_eq!(creds.tokens_fetched(), 2, "{ptype}: 4 min left, refreshed");
        let renewed = creds.signer().await.unwrap();
        assert_ne!(renewed.key_id(), signer.key_id());
    }
}

/// A token the emulator considers expired is refused with 401; the client, whose own
/// clock still finds it fresh, fetches a new one once and succeeds.
#[tokio::test]
async fn an_expired_token_is_refused_and_replaced_after_the_401() {
    let dir = pki();
    let e = start(dir.path(), TENANCY, identity(dir.path(), "", "")).await;
    for source in [workload(&e, dir.path(), SA_TOKEN, "ca.pem"), instance(&e)] {
        let creds = Credentials::session(source);
        let c = client(&e, &creds);
        c.list_compartments(TENANCY).await.unwrap();
        let old = creds.signer().await.unwrap();
        e.emu.advance(Duration::from_secs(21 * 60));

        let stale = OciClient::new((*old).clone(), Endpoints::single(&e.http)).unwrap();
        let err = stale.list_compartments(TENANCY).await.unwrap_err();
        assert_401(&err, "expired");

        c.list_compartments(TENANCY).await.unwrap();
        assert_eq!(creds.tokens_fetched(), 2);
        assert_ne!(creds.signer().await.unwrap().key_id(), old.key_id());
    }
}

#[tokio::test]
async fn workload_identity_refusals() {
    let dir = pki();
    let e = start(dir.path(), TENANCY, identity(dir.path(), "", "")).await;

    let wrong = Credentials::session(workload(&e, dir.path(), "not-the-token", "ca.pem"));
    let err = client(&e, &wrong)
        .list_compartments(TENANCY)
        .await
        .unwrap_err();
    assert_401(&err, "ServiceAccount token is not accepted");
    assert_eq!(e.emu.tokens_issued(), 0);

    let untrusted = Credentials::session(workload(&e, dir.path(), SA_TOKEN, "rogue-ca.pem"));
    let err = untrusted.signer().await.unwrap_err();
    assert!(matches!(err, OciError::Transport(_)), "{err}");
    assert_eq!(e.emu.tokens_issued(), 0);

    // A token of another emulator (another HMAC key) is not one this emulator issued.
    let other = start(dir.path(), TENANCY, identity(dir.path(), "", "")).await;
    let foreign = Credentials::session(workload(&other, dir.path(), SA_TOKEN, "ca.pem"));
    let signer = foreign.signer().await.unwrap();
    let err = OciClient::new((*signer).clone(), Endpoints::single(&e.http))
        .unwrap()
        .list_compartments(TENANCY)
        .await
        .unwrap_err();
    assert_401(&err, "not issued by this emulator");
}

#[tokio::test]
async fn instance_principal_refusals() {
    let dir = pki();
    let cases = [
        // The leaf chains to a root the Auth service does not trust.
        (
            TENANCY,
            identity(dir.path(), "rogue-", "rogue-"),
            "does not chain",
        ),
        // The federation request is signed by a key other than the leaf's.
        (
            TENANCY,
            identity(dir.path(), "", "rogue-"),
            "does not verify",
        ),
        // The certificate's tenancy is not the emulator's.
        (
            "ocid1.tenancy.oc1..someoneelse",
            identity(dir.path(), "", ""),
            "is not this emulator's",
        ),
    ];
    for (tenancy, id, needle) in cases {
        let e = start(dir.path(), tenancy, id).await;
        let creds = Credentials::session(instance(&e));
        let err = creds.signer().await.unwrap_err();
        assert_401(&err, needle);
        assert_eq!(e.emu.tokens_issued(), 0, "{needle}");
    }

    let e = start(dir.path(), TENANCY, identity(dir.path(), "", "")).await;
    let plain = reqwest::Client::builder()
        .tls_backend_preconfigured(crate::oci::client::tls_config().unwrap())
        .build()
        .unwrap();
    let url = format!("{}/opc/v2/identity/key.pem", e.http);
    assert_eq!(plain.get(&url).send().await.unwrap().status(), 401);
    let ok = plain.get(&url).bearer_auth("Oracle").send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("PRIVATE KEY"));
}

#[test]
fn jwt_payloads_are_read_and_checked() {
    let enc = |v: &str| B64URL.encode(v);
    let t = format!(
        "{}.{}.sig",
        enc("{}"),
        enc(r#"{"exp":1900000000,"iat":1899998800}"#)
    );
    let c = parse_jwt(&t).unwrap();
    assert_eq!(c.exp.as_second(), 1_900_000_000);
    assert_eq!(c.iat.unwrap().as_second(), 1_899_998_800);
    let no_exp = format!("{}.{}.sig", enc("{}"), enc(r#"{"iat":1}"#));
    assert!(
        parse_jwt(&no_exp)
            .unwrap_err()
            .to_string()
            .contains("no numeric exp")
    );
    assert!(
        parse_jwt("a.b")
            .unwrap_err()
            .to_string()
            .contains("2 parts")
    );
    assert!(
        parse_jwt("a.!!.c")
            .unwrap_err()
            .to_string()
            .contains("base64url")
    );
}

#[test]
fn endpoints_come_from_the_sdk_variables() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let w = WorkloadIdentity::from_vars(env(&[
        ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
        ("OCI_RESOURCE_PRINCIPAL_VERSION", "2.2"),
        ("OCI_RESOURCE_PRINCIPAL_REGION", "eu-frankfurt-1"),
    ]))
    .unwrap();
    assert_eq!(
        w.endpoint,
        "https://10.96.0.1:12250/resourcePrincipalSessionTokens"
    );
    assert_eq!(w.sa_token_path, Path::new(SA_TOKEN_PATH));
    assert_eq!(w.ca_path, Path::new(SA_CA_PATH));
    assert_eq!(w.region.as_deref(), Some("eu-frankfurt-1"));
    let v6 = WorkloadIdentity::from_vars(env(&[("KUBERNETES_SERVICE_HOST", "fd00::1")])).unwrap();
    assert_eq!(
        v6.endpoint,
        "https://[fd00::1]:12250/resourcePrincipalSessionTokens"
    );
    let e = WorkloadIdentity::from_vars(env(&[
        ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
        ("OCI_RESOURCE_PRINCIPAL_VERSION", "2.1"),
    ]))
    .unwrap_err();
    assert!(e.to_string().contains("version 2.2"), "{e}");
    assert!(WorkloadIdentity::from_vars(env(&[])).is_err());

    let i = InstancePrincipal::from_vars(env(&[]));
    assert_eq!(i.metadata_base, METADATA_BASE);
    assert_eq!(i.auth_endpoint, None);
    let i = InstancePrincipal::from_vars(env(&[
        ("OCI_METADATA_BASE_URL", "http://127.0.0.1:9/opc/v2/"),
        ("OCI_SDK_AUTH_CLIENT_REGION_URL", "http://127.0.0.1:9"),
    ]));
    assert_eq!(i.metadata_base, "http://127.0.0.1:9/opc/v2");
    assert_eq!(i.auth_endpoint.as_deref(), Some("http://127.0.0.1:9"));
}
