//! Tests of the signer (fixed vectors checked with `openssl dgst -sha256 -sign`), the
//! config and Secret key providers, the retry policy, and the client driving the emulator.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::client::{Endpoints, OciClient};
use super::config::{ApiKey, parse_private_key, profile_entries};
use super::emulator::{Emulator, Faults, Scenario};
use super::error::OciError;
use super::model::*;
use super::retry::{Jitter, RecordingSleeper, RetryPolicy};
use super::sign::*;

/// A 1024-bit PKCS#8 test key (made with `openssl genrsa`), fingerprint below.
pub(crate) const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBAMkhTJN68RcaxVCH
+8Yren4iJQqDV/qNxNdgjGYvzYoLWJ+e8J146GidmtLSWCyGNjWESoCJKylIsRfP
Nmx27GG6/8G4LGZYuoQA4DcHj8jHHnhDddEihSNb2D2BKW2lJaaysk+IP0EmJDXh
46flrSykXtYVvUxpQ2NtaGWVl1DbAgMBAAECgYBh/qprtNvgcPewLAEc5bQx3nsD
q0jjV82PTog5hZL0bmDIrMz5PJ6n0hpMG5ZAY0foPUN7atmvrK40No6CvFKg0VTF
F0Qx41sbiLg5I0vT6Kq/1E+ZaEa9+aXzZQZO2PDcflkohZhB35uttqEQJ/0wi7GN
SvIzRJx9wo1Jjq9QwQJBAPg3jadl51Mq/kThkoG8BPc651sH0An+PPdQYYE9xbRn
PQOPoVGp3JZJ4zy6rm1qzMKvQHYJs1ZMkTSwL3bMOaECQQDPb8b/gPws2Gqc/mlL
fmMckapcwdG7DV0oXI7C50Fr3hwVR0voP5iYXusNI1cOHZpcUUkFzkcbWicDFWMv
iND7AkBo2PaCBl5/WALNz8bV/DjQwdXmMtei0Pyprw9wy0oO2SkBrxMCbtDZvt44
0dZKK7nQZrzA33occv1HF0EFWmDhAkBd/+cLbWXY5JEbZ2ZLoZBEJ/YtZl8mBl5K
pfbDd4v714CeW9qX+gmqMokNQRB4Aw4p+2O9z8YFLQs0qIJzzen1AkEAsnX8D7Xv
XRRmEIaQ36tugCctRdxp/QVV/Gb0Duj2Is8aLehw6Vi6czPX9zEO+8doHAEfwDTo
U+pPjmUXuJ+z5w==
-----END PRIVATE KEY-----
";
const KEY_FP: &str = "95:71:d0:d2:9f:28:3b:08:a4:66:03:f8:b2:b2:5e:db";

/// Another key, PKCS#1 (`openssl genrsa -traditional`): not configured in the emulator.
pub(crate) const OTHER_KEY_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----
MIICXgIBAAKBgQCz09ztw7InXdGfF7kT7ur54HKNDJUqmj+cUTiM6ExZxfrRMaAT
7fs1qgw4tCBE+HJmwkeRASmse2JoPTAAJKHpZ/sQIl25ffBFoHriYdwa1McEEZsm
9qhiZK7y7S7Od8EdF6a9Sz5e629JTpyolLJt7gFp+884DprmWuK5Vz908wIDAQAB
AoGAQUcRFcZKL3whEe1co93AsoBFVOpSY6qmmKnrK0tQG+6AQ9wNze4/mJVn5lWM
uTyu2pp/vCV96TzI1ioP+J1ToHimo0Gu90B6XHwPnBSs3nydh4dV9c7vgnouVjIf
NiI4BycAghiuC5UfKInRYqU96OWmZW0/d4owgKTO0X38/yECQQDkkxY87KdFQd6V
Cq4n2iXozF0p9vPLXiQ0qXkcJZiJTeCIMydDsfB8zVs59/M9JIUpOuVpfu7IanBx
NLG2Nz2ZAkEAyWd17AvjSecaCSJsWhuTlb3fj+GySa+YPMvmwRLDdsQ6ssswWTM+
KwZrEV933pM+wJudFqmBqiKoAEiHzaQmawJBAMLVmbQO6ToAvrD+bJrtuTip0pPt
u7vTIDt/ZguXBGGtb0HJkKOEboCDL0rHTqAEnDkbyedV2kYdbIEisISoq6kCQQDF
NMwPfDhqxaIFrbIgrP3e0pNURC+Z3RkY9qKVDLVd1piPN0u5G+bUpC00TqGFy/HX
EMhJR2KSX+rWlC59WizPAkEAzXeinaMKU5etV+oOkcsjole/ZS6Uo9uh58K7CBUA
h4gMQY83HWHS58PjvOn0dQ9g/aRdedO2EjJb2PzdjNIChw==
-----END RSA PRIVATE KEY-----
";

const DATE: &str = "Thu, 05 Jan 2014 21:31:40 GMT";
const HOST: &str = "iaas.us-ashburn-1.oraclecloud.com";
const TENANCY: &str = "ocid1.tenancy.oc1..aaaaaaaatest";
const USER: &str = "ocid1.user.oc1..aaaaaaaauser";

fn signer() -> RequestSigner {
    let key = parse_private_key(KEY_PEM, None).unwrap();
    RequestSigner::new(TENANCY, USER, KEY_FP, key)
}

#[test]
fn fingerprint_is_md5_of_the_public_key_der() {
    let key = parse_private_key(KEY_PEM, None).unwrap();
    assert_eq!(fingerprint(&key.to_public_key()), KEY_FP);
}

#[test]
fn get_signature_matches_the_openssl_vector() {
    let s = signer().sign(&SignInput {
        method: "GET",
        path_and_query:
            "/20160918/instanceMaintenanceEvents?compartmentId=ocid1.compartment.oc1..aaaa&limit=2",
        host: HOST,
        date: DATE,
        body: b"",
        content_type: "application/json",
    });
    assert_eq!(
        s.signing_string,
        "date: Thu, 05 Jan 2014 21:31:40 GMT\n(request-target): get /20160918/instanceMaintenanceEvents?compartmentId=ocid1.compartment.oc1..aaaa&limit=2\nhost: iaas.us-ashburn-1.oraclecloud.com"
    );
    let sig = "O8HTXtM2NTSTOWzJl8LBRjF+SFTxXdUz/YAF+1EAQ0v6n9MDXpybQn1BcPGZF1FI0wTctBpX6g7g+CP/BAVGtcBBSxBAwHcRF97jUQ7/jFbN7kBCRTOqBhkjFwcBIAXn5rfa4jVs7lgzXv/jhH8EnNS1l8grkgKl13C6xX/MC7A=";
    assert_eq!(
        s.authorization,
        format!(
            "Signature version=\"1\",headers=\"date (request-target) host\",keyId=\"{TENANCY}/{USER}/{KEY_FP}\",algorithm=\"rsa-sha256\",signature=\"{sig}\""
        )
    );
    assert_eq!(
        s.headers,
        vec![
            ("date".to_string(), DATE.to_string()),
            ("authorization".to_string(), s.authorization.clone())
        ]
    );
}

#[test]
fn put_signature_covers_the_body_and_matches_the_openssl_vector() {
    let body = br#"{"timeWindowStart":"2026-12-01T10:00:00Z"}"#;
    let s = signer().sign(&SignInput {
        method: "PUT",
        path_and_query: "/20160918/instanceMaintenanceEvents/ocid1.instancemaintenanceevent.oc1..bbbb",
        host: HOST,
        date: DATE,
        body,
        content_type: "application/json",
    });
    let sha = "EHxn6ukEYDZ5h21HI4WzbnMsNGqhSdQkHVNWQCghKew=";
    assert_eq!(
        s.signing_string,
        format!(
            "date: {DATE}\n(request-target): put /20160918/instanceMaintenanceEvents/ocid1.instancemaintenanceevent.oc1..bbbb\nhost: {HOST}\ncontent-length: {}\ncontent-type: application/json\nx-content-sha256: {sha}",
            body.len()
        )
    );
    assert!(s.authorization.contains(
        "headers=\"date (request-target) host content-length content-type x-content-sha256\""
    ));
    assert!(s.authorization.ends_with("signature=\"ODvv9QFDDsv3mDULuzJ8K8tKo6g04tKiQx4o58rvbtV90s2eTH0KZQFRunY5J22j0bGP0yl6b7dtV0K1mstcByS0Hs0rbwG1iXIj3t8m38EleGwngc/lWL61n9dbNbrHxQHPXV8tmfXikLO+Z8I7BKX4Zpz2REJLeaOhmjNXzDw=\""));
    let names: Vec<&str> = s.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "date",
            "content-length",
            "content-type",
            "x-content-sha256",
            "authorization"
        ]
    );
}

#[test]
fn empty_post_body_still_gets_a_content_hash() {
    assert_eq!(
        content_sha256(b""),
        "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    );
    let s = signer().sign(&SignInput {
        method: "post",
        path_and_query: "/20160918/instances/x?action=SOFTRESET",
        host: HOST,
        date: DATE,
        body: b"",
        content_type: "application/json",
    });
    assert!(s.signing_string.contains("content-length: 0\n"));
    assert!(
        s.signing_string
            .ends_with("x-content-sha256: 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
    );
    assert!(
        s.signing_string
            .contains("(request-target): post /20160918/instances/x?action=SOFTRESET")
    );
}

#[test]
fn signatures_round_trip_through_parse_and_verify() {
    let key = parse_private_key(KEY_PEM, None).unwrap();
    let other = parse_private_key(OTHER_KEY_PEM, None).unwrap();
    let s = signer().sign(&SignInput {
        method: "GET",
        path_and_query: "/a?b=c",
        host: HOST,
        date: DATE,
        body: b"",
        content_type: "",
    });
    let p = parse_authorization(&s.authorization).unwrap();
    assert_eq!(p.key_id, format!("{TENANCY}/{USER}/{KEY_FP}"));
    assert_eq!(p.headers, ["date", "(request-target)", "host"]);
    let lookup = |n: &str| match n {
        "date" => Some(DATE.to_string()),
        "host" => Some(HOST.to_string()),
        _ => None,
    };
    verify(&p, "GET", "/a?b=c", lookup, &key.to_public_key()).unwrap();
    assert!(verify(&p, "GET", "/a?b=d", lookup, &key.to_public_key()).is_err());
    assert!(verify(&p, "POST", "/a?b=c", lookup, &key.to_public_key()).is_err());
    assert!(verify(&p, "GET", "/a?b=c", lookup, &other.to_public_key()).is_err());
    assert!(parse_authorization("Bearer x").is_err());
    assert!(parse_authorization("Signature keyId=\"a\",signature=\"!!\"").is_err());
    assert!(parse_authorization("Signature keyId=\"a\"").is_err());
}

#[test]
fn http_dates_round_trip() {
    let ts: Timestamp = "2014-01-05T21:31:40Z".parse().unwrap();
    assert_eq!(http_date(ts), "Sun, 05 Jan 2014 21:31:40 GMT");
    assert_eq!(parse_http_date("Sun, 05 Jan 2014 21:31:40 GMT"), Some(ts));
    assert_eq!(parse_http_date("yesterday"), None);
}

#[test]
fn config_profiles_inherit_default_and_keys_load() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, KEY_PEM).unwrap();
    let cfg = dir.path().join("config");
    std::fs::write(
        &cfg,
        format!(
            "# comment\n[DEFAULT]\nuser={USER}\nfingerprint={KEY_FP}\nkey_file={}\ntenancy={TENANCY}\nregion=us-ashburn-1\n\n[OTHER]\nregion = eu-frankfurt-1\n[BAD]\nfingerprint=00:11\n",
            key.display()
        ),
    )
    .unwrap();
    let k = ApiKey::from_config_file(&cfg, "DEFAULT").unwrap();
    assert_eq!(k.tenancy, TENANCY);
    assert_eq!(k.signer().key_id(), format!("{TENANCY}/{USER}/{KEY_FP}"));
    let o = ApiKey::from_config_file(&cfg, "OTHER").unwrap();
    assert_eq!(o.region.as_deref(), Some("eu-frankfurt-1"));
    assert!(
        matches!(ApiKey::from_config_file(&cfg, "BAD"), Err(OciError::Config(m)) if m.contains("does not match"))
    );
    assert!(
        matches!(ApiKey::from_config_file(&cfg, "NOPE"), Err(OciError::Config(m)) if m.contains("not found"))
    );
    assert!(profile_entries("user=x", "DEFAULT").is_err());
    assert!(profile_entries("[DEFAULT]\nnonsense", "DEFAULT").is_err());
}

#[test]
fn secret_data_provides_config_and_key() {
    let data = BTreeMap::from([
        (
            "config".to_string(),
            format!("[DEFAULT]\nuser={USER}\ntenancy={TENANCY}\nkey_file=/nowhere\n").into_bytes(),
        ),
        ("key".to_string(), OTHER_KEY_PEM.as_bytes().to_vec()),
    ]);
    let k = ApiKey::from_secret_data(&data, None).unwrap();
    let other = parse_private_key(OTHER_KEY_PEM, None).unwrap();
    assert_eq!(k.fingerprint, fingerprint(&other.to_public_key()));
    let mut missing = data.clone();
    missing.remove("key");
    assert!(ApiKey::from_secret_data(&missing, None).is_err());
    assert!(parse_private_key("-----BEGIN ENCRYPTED PRIVATE KEY-----\n", None).is_err());
    assert!(parse_private_key("garbage", None).is_err());
}

#[test]
fn retry_delays_are_decorrelated_jitter_capped() {
    let p = RetryPolicy::default();
    assert_eq!(p.max_attempts, 8);
    assert_eq!(p.next_delay(None, 0.0), Duration::from_secs(1));
    assert_eq!(p.next_delay(None, 0.999_999).as_secs(), 1);
    assert_eq!(
        p.next_delay(Some(Duration::from_secs(4)), 1.0),
        Duration::from_secs(8)
    );
    assert_eq!(
        p.next_delay(Some(Duration::from_secs(20)), 1.0),
        Duration::from_secs(30)
    );
    let j = Jitter::seeded(7);
    let mut prev = None;
    for _ in 0..50 {
        let d = p.next_delay(prev, j.unit());
        assert!(d >= p.base && d <= p.cap);
        assert!(d <= prev.unwrap_or(p.base) * 2);
        prev = Some(d);
    }
}

#[test]
fn retryable_errors_follow_the_sdk_policy() {
    let e = |status: u16, code: &str| OciError::Service {
        status,
        code: code.into(),
        message: String::new(),
        opc_request_id: None,
    };
    assert!(e(429, "TooManyRequests").is_retryable());
    assert!(e(500, "InternalServerError").is_retryable());
    assert!(e(503, "ServiceUnavailable").is_retryable());
    assert!(!e(501, "MethodNotImplemented").is_retryable());
    assert!(e(409, "IncorrectState").is_retryable());
    assert!(!e(409, "Conflict").is_retryable());
    assert!(!e(400, "InvalidParameter").is_retryable());
    assert!(!e(401, "NotAuthenticated").is_retryable());
    assert!(!e(404, "NotAuthorizedOrNotFound").is_retryable());
    assert!(!e(412, "NoEtagMatch").is_retryable());
    assert!(OciError::Timeout("t".into()).is_retryable());
    assert!(OciError::Transport("t".into()).is_retryable());
    assert!(!OciError::Decode("t".into()).is_retryable());
}

// ---- the client against the emulator ----

struct Rig {
    emu: Emulator,
    client: OciClient,
    sleeps: RecordingSleeper,
    base: String,
}

fn client_for(base: &str, key_pem: &str) -> (OciClient, RecordingSleeper) {
    let key = parse_private_key(key_pem, None).unwrap();
    let fp = fingerprint(&key.to_public_key());
    let sleeps = RecordingSleeper::default();
    let c = OciClient::new(
        RequestSigner::new(TENANCY, USER, &fp, key),
        Endpoints::single(base),
    )
    .unwrap()
    .with_sleeper(Arc::new(sleeps.clone()))
    .with_jitter(Jitter::seeded(1));
    (c, sleeps)
}

/// Generated: compartments gen0/gen1, instances gpu-001…006, events gen0…gen4 (events
/// 0, 2, 4 in gen0). Event gen1 cannot be rescheduled, gen3's maintenance fails and
/// gen4's reschedule work request fails.
async fn rig() -> Rig {
    let mut sc = Scenario::parse(
        "tenancy: ocid1.tenancy.oc1..aaaaaaaatest\nstepSeconds: 10\ngenerate: {compartments: 2, instances: 6, events: 5}\ncompartments: [{id: ocid1.compartment.oc1..sub, name: sub, parent: ocid1.compartment.oc1..gen0}]\n",
    )
    .unwrap();
    sc.expand(Timestamp::now());
    sc.events[1].event.can_reschedule = false;
    sc.events[3].outcome = "FAILED".into();
    sc.events[4].work_request_outcome = "FAILED".into();
    let key = parse_private_key(KEY_PEM, None).unwrap();
    let emu = Emulator::new(sc, vec![key.to_public_key()]);
    let (addr, _task) = emu.start("127.0.0.1:0").await.unwrap();
    let base = format!("http://{addr}");
    let (client, sleeps) = client_for(&base, KEY_PEM);
    Rig {
        emu,
        client,
        sleeps,
        base,
    }
}

fn ev(i: usize) -> String {
    format!("ocid1.instancemaintenanceevent.oc1..gen{i}")
}

#[tokio::test]
async fn lists_events_page_by_page_without_additional_details() {
    let r = rig().await;
    let mut f = ListEventsFilter::compartment("ocid1.compartment.oc1..gen0");
    f.limit = Some(2);
    let p1 = r
        .client
        .list_instance_maintenance_events_page(&f, None)
        .await
        .unwrap();
    assert_eq!(p1.items.len(), 2);
    let next = p1.next_page.clone().expect("a second page");
    let p2 = r
        .client
        .list_instance_maintenance_events_page(&f, Some(&next))
        .await
        .unwrap();
    assert_eq!(p2.items.len(), 1);
    assert_eq!(p2.next_page, None);
    let all = r.client.list_instance_maintenance_events(&f).await.unwrap();
    let ids: Vec<_> = all.iter().map(|e| e.id.clone()).collect();
    // OCI's default order, TIMECREATED descending: the newest event first.
    assert_eq!(ids, [ev(4), ev(2), ev(0)]);
    assert!(all.iter().all(|e| e.additional_details.is_none()));
    f.instance_id = Some("ocid1.instance.oc1..gen2".into());
    let one = r.client.list_instance_maintenance_events(&f).await.unwrap();
    assert_eq!(one.len(), 1);
    f.instance_id = None;
    f.lifecycle_state = Some("SUCCEEDED".into());
    assert!(
        r.client
            .list_instance_maintenance_events(&f)
            .await
            .unwrap()
            .is_empty()
    );
    f.lifecycle_state = None;
    f.time_window_start_gte = Some(Timestamp::now() + SignedDuration::from_hours(24 * 30));
    assert!(
        r.client
            .list_instance_maintenance_events(&f)
            .await
            .unwrap()
            .is_empty()
    );
    f.time_window_start_gte = None;
    f.sort_order = Some("DESC".into());
    let desc = r.client.list_instance_maintenance_events(&f).await.unwrap();
    assert_eq!(desc.len(), 3);
    f.sort_by = Some("NOPE".into());
    let err = r
        .client
        .list_instance_maintenance_events(&f)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
}

#[tokio::test]
async fn get_has_fault_details_and_an_etag() {
    let r = rig().await;
    let (e, etag) = r
        .client
        .get_instance_maintenance_event(&ev(0))
        .await
        .unwrap();
    assert!(etag.is_some());
    let details = e.additional_details.expect("additionalDetails");
    let faults: serde_json::Value = serde_json::from_str(&details["faultDetails"]).unwrap();
    assert_eq!(faults[0]["faultId"], "HPCRDMA-0002-02");
    let err = r
        .client
        .get_instance_maintenance_event("ocid1.nope")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OciError::Service { status: 404, code, opc_request_id: Some(_), .. } if code == "NotAuthorizedOrNotFound"),
        "{err}"
    );
}

#[tokio::test]
async fn reschedule_runs_the_work_request_then_the_maintenance() {
    let r = rig().await;
    let (_, etag) = r
        .client
        .get_instance_maintenance_event(&ev(0))
        .await
        .unwrap();
    let window = r.emu.now() + SignedDuration::from_mins(5);
    let details = UpdateInstanceMaintenanceEventDetails {
        time_window_start: Some(window),
        freeform_tags: Some(BTreeMap::from([("slurm-maint".into(), "scheduled".into())])),
        ..Default::default()
    };
    // A stale etag is refused.
    let err = r
        .client
        .update_instance_maintenance_event(&ev(0), &details, Some("\"stale\""), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("NoEtagMatch"));
    let token = "tok-1".to_string();
    let wr = r
        .client
        .update_instance_maintenance_event(&ev(0), &details, etag.as_deref(), Some(token.clone()))
        .await
        .unwrap();
    // The same retry token gets the same answer, not a second work request.
    let again = r
        .client
        .update_instance_maintenance_event(&ev(0), &details, etag.as_deref(), Some(token))
        .await
        .unwrap();
    assert_eq!(wr, again);
    assert_eq!(
        r.client.get_work_request(&wr).await.unwrap().status,
        "ACCEPTED"
    );
    r.emu.advance(Duration::from_secs(10));
    assert_eq!(
        r.client.get_work_request(&wr).await.unwrap().status,
        "IN_PROGRESS"
    );
    r.emu.advance(Duration::from_secs(10));
    let w = r.client.get_work_request(&wr).await.unwrap();
    assert_eq!(
        (w.status.as_str(), w.percent_complete),
        ("SUCCEEDED", 100.0)
    );
    assert_eq!(w.resources[0].identifier, ev(0));
    assert!(
        r.client
            .list_work_request_errors(&wr)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(r.client.list_work_request_logs(&wr).await.unwrap().len() >= 3);
    let state = |r: &Rig| r.emu.event(&ev(0)).unwrap().lifecycle_state;
    assert_eq!(state(&r), "SCHEDULED");
    let (e, _) = r
        .client
        .get_instance_maintenance_event(&ev(0))
        .await
        .unwrap();
    assert_eq!(e.time_window_start, Some(window));
    assert_eq!(e.freeform_tags["slurm-maint"], "scheduled");
    r.emu.advance(Duration::from_secs(275));
    assert_eq!(state(&r), "SCHEDULED");
    r.emu.advance(Duration::from_secs(6));
    assert_eq!(state(&r), "STARTED");
    r.emu.advance(Duration::from_secs(10));
    assert_eq!(state(&r), "PROCESSING");
    r.emu.advance(Duration::from_secs(10));
    let (e, _) = r
        .client
        .get_instance_maintenance_event(&ev(0))
        .await
        .unwrap();
    assert_eq!(e.lifecycle_state, "SUCCEEDED");
    assert!(e.time_started.is_some() && e.time_finished.is_some());
    // Not SCHEDULED any more: refused.
    let err = r
        .client
        .update_instance_maintenance_event(&ev(0), &details, None, None)
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(409), Some("IncorrectState"))
    );
}

#[tokio::test]
async fn failure_paths_are_scripted() {
    let r = rig().await;
    let soon = UpdateInstanceMaintenanceEventDetails {
        time_window_start: Some(r.emu.now() + SignedDuration::from_mins(1)),
        ..Default::default()
    };
    // gen3: the maintenance itself fails.
    r.client
        .update_instance_maintenance_event(&ev(3), &soon, None, None)
        .await
        .unwrap();
    // gen4: the work request fails; the event stays SCHEDULED.
    let wr = r
        .client
        .update_instance_maintenance_event(&ev(4), &soon, None, None)
        .await
        .unwrap();
    r.emu.advance(Duration::from_secs(200));
    assert_eq!(r.emu.event(&ev(3)).unwrap().lifecycle_state, "FAILED");
    assert_eq!(
        r.client.get_work_request(&wr).await.unwrap().status,
        "FAILED"
    );
    assert_eq!(
        r.client.list_work_request_errors(&wr).await.unwrap().len(),
        1
    );
    assert_eq!(r.emu.event(&ev(4)).unwrap().lifecycle_state, "SCHEDULED");
}

#[tokio::test]
async fn bad_windows_are_refused() {
    let r = rig().await;
    let at = |h: i64| UpdateInstanceMaintenanceEventDetails {
        time_window_start: Some(r.emu.now() + SignedDuration::from_hours(h)),
        ..Default::default()
    };
    let past_due = r
        .client
        .update_instance_maintenance_event(&ev(0), &at(24 * 20), None, None)
        .await
        .unwrap_err();
    assert_eq!(
        (past_due.status(), past_due.code()),
        (Some(400), Some("InvalidParameter"))
    );
    let past = r
        .client
        .update_instance_maintenance_event(&ev(0), &at(-2), None, None)
        .await
        .unwrap_err();
    assert_eq!(past.status(), Some(400));
    let fixed = r
        .client
        .update_instance_maintenance_event(&ev(1), &at(1), None, None)
        .await
        .unwrap_err();
    assert_eq!(fixed.status(), Some(409));
    assert!(
        r.sleeps.sleeps().is_empty(),
        "client errors are not retried"
    );
}

#[tokio::test]
async fn wrong_key_and_skewed_date_get_401() {
    let r = rig().await;
    let (stranger, _) = client_for(&r.base, OTHER_KEY_PEM);
    let err = stranger
        .get_instance_maintenance_event(&ev(0))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OciError::Service { status: 401, code, .. } if code == "NotAuthenticated"),
        "{err}"
    );
    let (late, _) = client_for(&r.base, KEY_PEM);
    let late = late.with_clock(Arc::new(|| Timestamp::now() - SignedDuration::from_mins(6)));
    let err = late
        .get_instance_maintenance_event(&ev(0))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    let (ok, _) = client_for(&r.base, KEY_PEM);
    let ok = ok.with_clock(Arc::new(|| Timestamp::now() - SignedDuration::from_mins(4)));
    ok.get_instance_maintenance_event(&ev(0)).await.unwrap();
}

#[tokio::test]
async fn injected_faults_are_retried_per_the_sdk_policy() {
    let r = rig().await;
    r.emu.set_faults(Faults {
        error_rate: 0.5,
        latency_ms: 0,
        seed: 3,
    });
    for _ in 0..10 {
        r.client
            .get_instance_maintenance_event(&ev(0))
            .await
            .unwrap();
    }
    let sleeps = r.sleeps.sleeps();
    assert!(!sleeps.is_empty(), "some calls were retried");
    assert!(
        sleeps
            .iter()
            .all(|d| *d >= Duration::from_secs(1) && *d <= Duration::from_secs(30))
    );
    r.emu.set_faults(Faults {
        error_rate: 1.0,
        latency_ms: 0,
        seed: 3,
    });
    let before = r.sleeps.sleeps().len();
    let err = r
        .client
        .get_instance("ocid1.instance.oc1..gen0")
        .await
        .unwrap_err();
    assert!(matches!(err.status(), Some(429 | 500)));
    assert_eq!(r.sleeps.sleeps().len() - before, 7, "8 attempts, 7 waits");
}

#[tokio::test]
async fn compartments_include_the_tenancy_and_the_subtree() {
    let r = rig().await;
    let comps = r.client.list_compartments(TENANCY).await.unwrap();
    let ids: Vec<_> = comps.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids[0], TENANCY);
    assert!(ids.contains(&"ocid1.compartment.oc1..gen0"));
    assert!(ids.contains(&"ocid1.compartment.oc1..gen1"));
    assert!(ids.contains(&"ocid1.compartment.oc1..sub"));
    assert_eq!(ids.len(), 4);
}

#[tokio::test]
async fn instance_actions_and_get_instance() {
    let r = rig().await;
    let id = "ocid1.instance.oc1..gen0";
    let i = r.client.get_instance(id).await.unwrap();
    assert_eq!(i.display_name.as_deref(), Some("gpu-001"));
    assert_eq!(i.lifecycle_state, "RUNNING");
    let body = serde_json::json!({"actionType": "softreset", "allowDenseRebootMigration": true});
    let i = r
        .client
        .instance_action(id, "SOFTRESET", Some(&body), None)
        .await
        .unwrap();
    assert_eq!(i.id, id);
    let stopped = r
        .client
        .instance_action(id, "STOP", None, None)
        .await
        .unwrap();
    assert_eq!(stopped.lifecycle_state, "STOPPED");
    let bad = r
        .client
        .instance_action(id, "EXPLODE", None, None)
        .await
        .unwrap_err();
    assert_eq!(bad.status(), Some(400));
}

#[tokio::test]
async fn cancel_path_and_latency_injection() {
    let mut sc = Scenario::parse("generate: {instances: 1, events: 1}\nstepSeconds: 10\n").unwrap();
    sc.expand(Timestamp::now());
    sc.events[0].outcome = "CANCELED".into();
    let key = parse_private_key(KEY_PEM, None).unwrap();
    let emu = Emulator::new(sc, vec![key.to_public_key()]);
    let (addr, _task) = emu.start("127.0.0.1:0").await.unwrap();
    let (client, _) = client_for(&format!("http://{addr}"), KEY_PEM);
    let soon = UpdateInstanceMaintenanceEventDetails {
        time_window_start: Some(emu.now() + SignedDuration::from_mins(1)),
        ..Default::default()
    };
    client
        .update_instance_maintenance_event(&ev(0), &soon, None, None)
        .await
        .unwrap();
    emu.advance(Duration::from_secs(30));
    assert_eq!(emu.event(&ev(0)).unwrap().lifecycle_state, "SCHEDULED");
    emu.advance(Duration::from_secs(31));
    let e = emu.event(&ev(0)).unwrap();
    assert_eq!(e.lifecycle_state, "CANCELED");
    assert!(e.time_started.is_none() && e.time_finished.is_some());
    emu.set_faults(Faults {
        error_rate: 0.0,
        latency_ms: 80,
        seed: 0,
    });
    let t = std::time::Instant::now();
    client.get_instance_maintenance_event(&ev(0)).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(80));
}

/// Requests signed correctly but altered afterwards, or missing signed headers, are
/// refused by the emulator.
#[tokio::test]
async fn tampered_requests_are_refused() {
    let r = rig().await;
    let key = parse_private_key(KEY_PEM, None).unwrap();
    let s = RequestSigner::new(TENANCY, USER, KEY_FP, key);
    let host = r.base.trim_start_matches("http://").to_string();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(
            rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        )
        .build()
        .unwrap();
    let date = http_date(Timestamp::now());
    let put_path = format!("/20160918/instanceMaintenanceEvents/{}", ev(0));
    let body = br#"{"displayName":"a"}"#;
    let signed = s.sign(&SignInput {
        method: "PUT",
        path_and_query: &put_path,
        host: &host,
        date: &date,
        body,
        content_type: "application/json",
    });
    let send = |path: &str, body: &'static [u8], headers: Vec<(String, String)>| {
        let mut req = http.put(format!("{}{path}", r.base)).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let rid = resp.headers().get("opc-request-id").is_some();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            (status, body["code"].as_str().unwrap_or("").to_string(), rid)
        }
    };
    // As signed: accepted.
    let ok = send(&put_path, body, signed.headers.clone()).await;
    assert_eq!(ok.0, 202, "{ok:?}");
    // Another body under the same signature.
    let (st, code, rid) = send(&put_path, br#"{"displayName":"b"}"#, signed.headers.clone()).await;
    assert_eq!((st, code.as_str(), rid), (401, "NotAuthenticated", true));
    // Another path.
    let other = format!("/20160918/instanceMaintenanceEvents/{}", ev(2));
    assert_eq!(send(&other, body, signed.headers.clone()).await.0, 401);
    // A PUT signed like a GET (no body headers).
    let get_like = s.sign(&SignInput {
        method: "GET",
        path_and_query: &put_path,
        host: &host,
        date: &date,
        body: b"",
        content_type: "",
    });
    let mut h = get_like.headers.clone();
    h.push(("content-type".into(), "application/json".into()));
    assert_eq!(send(&put_path, body, h).await.0, 401);
    // No authorization at all.
    assert_eq!(send(&put_path, body, vec![]).await.0, 401);
}

/// The scenario of docs/oci-emulator.md, served: what it says is what a client reads,
/// and what it leaves out is filled in as OCI would send it.
#[tokio::test]
async fn the_documented_scenario_is_served_as_written() {
    let sc = Scenario::parse(&super::emulator::scenario::tests::docs_example()).unwrap();
    let key = parse_private_key(KEY_PEM, None).unwrap();
    let emu = Emulator::new(sc, vec![key.to_public_key()]);
    let (addr, _task) = emu.start("127.0.0.1:0").await.unwrap();
    let (client, _) = client_for(&format!("http://{addr}"), KEY_PEM);
    let comps = client
        .list_compartments("ocid1.tenancy.oc1..aaaaaaaaexample")
        .await
        .unwrap();
    let names: Vec<_> = comps.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["(tenancy)", "hpc", "hpc-dev"]);
    let hpc = ListEventsFilter::compartment("ocid1.compartment.oc1..aaaaaaaahpc");
    let events = client.list_instance_maintenance_events(&hpc).await.unwrap();
    assert_eq!(events.len(), 2);
    let (gpu, _) = client
        .get_instance_maintenance_event("ocid1.instancemaintenanceevent.oc1..aaaaaaaaev001")
        .await
        .unwrap();
    assert_eq!(gpu.freeform_tags["team"], "hpc");
    assert_eq!(
        gpu.alternative_resolution_actions,
        ["REBOOT_MIGRATION", "TERMINATE"]
    );
    assert!(gpu.additional_details.unwrap()["faultDetails"].contains("HPCGPU-0001-01"));
    let (evacuation, _) = client
        .get_instance_maintenance_event("ocid1.instancemaintenanceevent.oc1..aaaaaaaaev002")
        .await
        .unwrap();
    assert_eq!(evacuation.instance_action, "REBOOT_MIGRATION");
    assert_eq!(evacuation.created_by, "SYSTEM");
    assert!(evacuation.description.is_some() && evacuation.time_created.is_some());
    assert!(evacuation.freeform_tags.is_empty() && !evacuation.can_reschedule);
    let inst = client
        .get_instance("ocid1.instance.oc1..aaaaaaaagpu002")
        .await
        .unwrap();
    assert_eq!(inst.availability_domain, "Uocm:US-ASHBURN-AD-1");
    assert_eq!(inst.lifecycle_state, "RUNNING");
}
