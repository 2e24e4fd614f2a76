//! The emulator's token services: the OKE proxymux exchange
//! (`POST /resourcePrincipalSessionTokens`), the instance metadata identity paths
//! (`/opc/v2/...`) and the Auth service's X.509 federation (`POST /v1/x509`); and the
//! check of `ST$<token>` key ids on API requests.
//!
//! Issued tokens are JWTs signed with the emulator's own HMAC key (HS256). Their claims
//! carry the session public key as a `jwk` claim (a JSON string, as in OCI's tokens),
//! `iat`/`exp` on the emulator's clock, `tenant` and `ptype`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use hmac::{Hmac, Mac};
use jiff::{SignedDuration, Timestamp};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier as _;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPublicKey};
use sha2::{Digest as _, Sha256};
use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode};

use super::{Shared, api_error};
use crate::oci::auth::{certificate_sha256_fingerprint, parse_certificate, tenancy_of_certificate};
use crate::oci::sign;

type HmacSha256 = Hmac<Sha256>;

/// The instance identity the metadata paths serve and `/v1/x509` trusts.
#[derive(Clone, Debug)]
pub struct InstanceIdentity {
    /// `identity/cert.pem`: the leaf certificate (subject `OU=opc-tenant:<tenancy>`).
    pub cert_pem: String,
    /// `identity/key.pem`: the leaf's private key.
    pub key_pem: String,
    /// `identity/intermediate.pem`: the CA that issued the leaf.
    pub intermediate_pem: String,
    /// PEM roots a federated leaf must chain to (through the intermediates sent).
    pub trusted_ca_pem: String,
}

/// Token services of the emulator (all off by default).
#[derive(Clone, Debug)]
pub struct TokenAuth {
    /// ServiceAccount tokens accepted by `/resourcePrincipalSessionTokens` as Bearer.
    pub sa_tokens: Vec<String>,
    /// Instance identity for the metadata paths and `/v1/x509`.
    pub instance: Option<InstanceIdentity>,
    /// Lifetime of issued session tokens.
    pub token_ttl: SignedDuration,
}

impl Default for TokenAuth {
    fn default() -> Self {
        Self {
            sa_tokens: vec![],
            instance: None,
            token_ttl: SignedDuration::from_mins(20),
        }
    }
}

/// The parsed trust material of [`TokenAuth`].
pub(super) struct Tokens {
    pub(super) config: TokenAuth,
    roots: Vec<Certificate>,
    secret: [u8; 32],
    pub(super) issued: std::sync::atomic::AtomicU64,
}

impl Tokens {
    pub(super) fn new(config: TokenAuth) -> Result<Self, String> {
        let mut roots = vec![];
        if let Some(i) = &config.instance {
            for block in pem_blocks(&i.trusted_ca_pem) {
                roots.push(parse_certificate(&block, "trusted CA").map_err(|e| e.to_string())?);
            }
            if roots.is_empty() {
                return Err("the instance identity needs at least one trusted CA".into());
            }
            parse_certificate(&i.cert_pem, "instance cert.pem").map_err(|e| e.to_string())?;
            parse_certificate(&i.intermediate_pem, "instance intermediate.pem")
                .map_err(|e| e.to_string())?;
        }
        let mut secret = [0u8; 32];
        rsa::rand_core::RngCore::fill_bytes(&mut rsa::rand_core::OsRng, &mut secret);
        Ok(Self {
            config,
            roots,
            secret,
            issued: Default::default(),
        })
    }

    fn mac(&self, data: &[u8]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        m.update(data);
        m
    }

    /// A token for `key`, valid from `now` for the configured lifetime.
    fn issue(&self, key: &RsaPublicKey, now: Timestamp, claims: serde_json::Value) -> String {
        let n = self
            .issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let jwk = serde_json::json!({
            "kid": format!("emulator-{n}"),
            "n": B64URL.encode(key.n().to_bytes_be()),
            "e": B64URL.encode(key.e().to_bytes_be()),
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
        });
        let mut payload = serde_json::json!({
            "iss": "slurm-maint-oci-emulator",
            "iat": now.as_second(),
            "exp": (now + self.config.token_ttl).as_second(),
            "jti": format!("emulator-token-{n}"),
            "jwk": jwk.to_string(),
        });
        if let (Some(p), Some(extra)) = (payload.as_object_mut(), claims.as_object()) {
            p.extend(extra.clone());
        }
        let header = B64URL.encode(br#"{"alg":"HS256","typ":"JWT","kid":"emulator"}"#);
        let body = B64URL.encode(payload.to_string());
        let signing_input = format!("{header}.{body}");
        let sig = B64URL.encode(self.mac(signing_input.as_bytes()).finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    /// The session key of a token this emulator issued, if it has not expired at `now`.
    pub(super) fn session_key(&self, token: &str, now: Timestamp) -> Result<RsaPublicKey, String> {
        let (signing_input, sig) = token
            .rsplit_once('.')
            .ok_or("the security token is not a JWT")?;
        let sig = B64URL
            .decode(sig)
            .map_err(|_| "the security token signature is not base64url")?;
        self.mac(signing_input.as_bytes())
            .verify_slice(&sig)
            .map_err(|_| "the security token was not issued by this emulator")?;
        let claims = crate::oci::auth::parse_jwt(token).map_err(|e| e.to_string())?;
        if claims.exp <= now {
            return Err(format!("the security token expired at {}", claims.exp));
        }
        let jwk: serde_json::Value = claims
            .all
            .get("jwk")
            .and_then(|v| v.as_str())
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or("the security token has no jwk claim")?;
        let part = |k: &str| {
            jwk.get(k)
                .and_then(|v| v.as_str())
                .and_then(|v| B64URL.decode(v).ok())
                .map(|b| BigUint::from_bytes_be(&b))
                .ok_or_else(|| format!("the jwk claim has no {k}"))
        };
        RsaPublicKey::new(part("n")?, part("e")?).map_err(|e| format!("jwk: {e}"))
    }
}

fn pem_blocks(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("-----BEGIN CERTIFICATE-----") {
            cur = Some(String::new());
        }
        if let Some(c) = cur.as_mut() {
            c.push_str(line);
            c.push('\n');
        }
        if line.starts_with("-----END CERTIFICATE-----")
            && let Some(c) = cur.take()
        {
            out.push(c);
        }
    }
    out
}

fn not_authenticated(why: impl Into<String>) -> Response {
    let why = why.into();
    tracing::debug!(%why, "emulator refused a token request");
    api_error(
        401,
        "NotAuthenticated",
        format!(
            "The required information to complete authentication was not provided or was incorrect: {why}"
        ),
    )
}

fn public_key_of_b64_der(b64: &str) -> Result<RsaPublicKey, String> {
    let der = B64
        .decode(b64.trim())
        .map_err(|_| "the public key is not base64".to_string())?;
    RsaPublicKey::from_public_key_der(&der).map_err(|e| format!("the public key: {e}"))
}

/// `POST /resourcePrincipalSessionTokens`: Bearer ServiceAccount token and
/// `{"podKey": <base64 DER SPKI>}` in; base64 of `{"token": "ST$<jwt>"}` out.
pub(super) async fn resource_principal_session_token(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let tokens = &s.tokens;
    if tokens.config.sa_tokens.is_empty() {
        return api_error(
            404,
            "NotAuthorizedOrNotFound",
            "workload identity is not enabled",
        );
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    let known = tokens.config.sa_tokens.iter().any(|t| {
        use subtle::ConstantTimeEq;
        t.len() == bearer.len() && bool::from(t.as_bytes().ct_eq(bearer.as_bytes()))
    });
    if !known {
        return not_authenticated("the ServiceAccount token is not accepted");
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Req {
        pod_key: String,
    }
    let key = match serde_json::from_slice::<Req>(&body)
        .map_err(|e| format!("body: {e}"))
        .and_then(|r| public_key_of_b64_der(&r.pod_key))
    {
        Ok(k) => k,
        Err(e) => return api_error(400, "InvalidParameter", e),
    };
    let token = tokens.issue(
        &key,
        s.clock.now(),
        serde_json::json!({
            "sub": "ocid1.workload.oc1..emulator",
            "ptype": "resource",
            "res_type": "workload",
            "res_tenant": s.scenario.tenancy,
            "tenant": s.scenario.tenancy,
        }),
    );
    let body = B64.encode(serde_json::json!({ "token": format!("ST${token}") }).to_string());
    (StatusCode::OK, [("content-type", "text/plain")], body).into_response()
}

fn metadata<'a>(headers: &HeaderMap, s: &'a Shared) -> Result<&'a InstanceIdentity, Box<Response>> {
    let Some(i) = s.tokens.config.instance.as_ref() else {
        return Err(Box::new(api_error(
            404,
            "NotFound",
            "no instance identity is configured",
        )));
    };
    let ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "Bearer Oracle");
    if ok {
        Ok(i)
    } else {
        Err(Box::new(api_error(
            401,
            "NotAuthenticated",
            "instance metadata v2 needs `Authorization: Bearer Oracle`",
        )))
    }
}

fn text(body: String) -> Response {
    (StatusCode::OK, [("content-type", "text/plain")], body).into_response()
}

/// `GET /opc/v2/instance/region`.
pub(super) async fn imds_region(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match metadata(&headers, &s) {
        Ok(_) => text(s.scenario.region.clone()),
        Err(r) => *r,
    }
}

/// `GET /opc/v2/instance/regionInfo`.
pub(super) async fn imds_region_info(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match metadata(&headers, &s) {
        Ok(_) => axum::Json(serde_json::json!({
            "realmKey": "oc1",
            "realmDomainComponent": "oraclecloud.com",
            "regionKey": "EMU",
            "regionIdentifier": s.scenario.region,
        }))
        .into_response(),
        Err(r) => *r,
    }
}

/// `GET /opc/v2/identity/cert.pem`.
pub(super) async fn imds_cert(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match metadata(&headers, &s) {
        Ok(i) => text(i.cert_pem.clone()),
        Err(r) => *r,
    }
}

/// `GET /opc/v2/identity/key.pem`.
pub(super) async fn imds_key(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match metadata(&headers, &s) {
        Ok(i) => text(i.key_pem.clone()),
        Err(r) => *r,
    }
}

/// `GET /opc/v2/identity/intermediate.pem`.
pub(super) async fn imds_intermediate(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Response {
    match metadata(&headers, &s) {
        Ok(i) => text(i.intermediate_pem.clone()),
        Err(r) => *r,
    }
}

const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";

fn rsa_key_of(cert: &Certificate) -> Result<RsaPublicKey, String> {
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| e.to_string())?;
    RsaPublicKey::from_public_key_der(&spki).map_err(|e| format!("certificate key: {e}"))
}

/// Whether `issuer` signed `child` (sha256WithRSAEncryption).
fn issued_by(child: &Certificate, issuer: &Certificate) -> bool {
    if child.tbs_certificate.issuer != issuer.tbs_certificate.subject
        || child.signature_algorithm.oid.to_string() != SHA256_WITH_RSA
    {
        return false;
    }
    let (Ok(key), Ok(tbs), Some(sig)) = (
        rsa_key_of(issuer),
        child.tbs_certificate.to_der(),
        child.signature.as_bytes(),
    ) else {
        return false;
    };
    Signature::try_from(sig)
        .is_ok_and(|sig| VerifyingKey::<Sha256>::new(key).verify(&tbs, &sig).is_ok())
}

fn valid_at(cert: &Certificate, now: Timestamp) -> bool {
    let v = &cert.tbs_certificate.validity;
    let secs = |t: &x509_cert::time::Time| t.to_unix_duration().as_secs() as i64;
    let now = now.as_second();
    secs(&v.not_before) <= now && now <= secs(&v.not_after)
}

/// The leaf chains to a trusted root, directly or through one of `intermediates`.
fn chains_to_root(
    leaf: &Certificate,
    intermediates: &[Certificate],
    roots: &[Certificate],
) -> bool {
    roots.iter().any(|r| issued_by(leaf, r))
        || intermediates
            .iter()
            .any(|i| issued_by(leaf, i) && roots.iter().any(|r| issued_by(i, r)))
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// `POST /v1/x509`: a request signed by the instance's leaf key (`keyId`
/// `<tenancy>/fed-x509/<SHA-1>` or `<tenancy>/fed-x509-sha256/<SHA-256>` of the leaf),
/// with the leaf, its intermediates and the session public key; `{"token": <jwt>}` out.
pub(super) async fn x509_federation(
    State(s): State<Arc<Shared>>,
    req: axum::extract::Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 1 << 20).await else {
        return api_error(400, "InvalidParameter", "unreadable body");
    };
    if s.tokens.config.instance.is_none() {
        return api_error(
            404,
            "NotAuthorizedOrNotFound",
            "instance principals are not enabled",
        );
    }
    let required = [
        "date",
        "(request-target)",
        "content-length",
        "content-type",
        "x-content-sha256",
    ];
    let auth = match super::check_request(&s, &parts, &body, &required) {
        Ok(a) => a,
        Err(why) => return not_authenticated(why),
    };
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Req {
        certificate: String,
        public_key: String,
        #[serde(default)]
        intermediate_certificates: Vec<String>,
        #[serde(default)]
        fingerprint_algorithm: Option<String>,
    }
    let r: Req = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return api_error(400, "InvalidParameter", format!("body: {e}")),
    };
    let der = |b64: &str| {
        B64.decode(b64.trim())
            .ok()
            .and_then(|d| Certificate::from_der(&d).ok().map(|c| (c, d)))
    };
    let Some((leaf, leaf_der)) = der(&r.certificate) else {
        return api_error(
            400,
            "InvalidParameter",
            "certificate is not a base64 DER certificate",
        );
    };
    let Some(intermediates) = r
        .intermediate_certificates
        .iter()
        .map(|c| der(c).map(|(c, _)| c))
        .collect::<Option<Vec<_>>>()
    else {
        return api_error(
            400,
            "InvalidParameter",
            "an intermediate certificate is not base64 DER",
        );
    };
    let session_key = match public_key_of_b64_der(&r.public_key) {
        Ok(k) => k,
        Err(e) => return api_error(400, "InvalidParameter", e),
    };
    let Some(tenancy) = tenancy_of_certificate(&leaf) else {
        return not_authenticated("the certificate names no opc-tenant");
    };
    let (key_tenancy, kind, fp) = {
        let mut it = auth.key_id.splitn(3, '/');
        (
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default(),
        )
    };
    let expected = match kind {
        "fed-x509" => colon_hex(&sha1::Sha1::digest(&leaf_der)),
        "fed-x509-sha256" => certificate_sha256_fingerprint(&leaf),
        other => return not_authenticated(format!("keyId kind {other} is not fed-x509[-sha256]")),
    };
    if kind == "fed-x509" && r.fingerprint_algorithm.as_deref() == Some("SHA256") {
        return not_authenticated("fingerprintAlgorithm SHA256 needs a fed-x509-sha256 keyId");
    }
    if !fp.eq_ignore_ascii_case(&expected) {
        return not_authenticated("the keyId fingerprint is not the certificate's");
    }
    if key_tenancy != tenancy || tenancy != s.scenario.tenancy {
        return not_authenticated(format!("tenancy {key_tenancy} is not this emulator's"));
    }
    let now = s.clock.now();
    if !valid_at(&leaf, now) {
        return not_authenticated("the certificate is not valid now");
    }
    if !chains_to_root(&leaf, &intermediates, &s.tokens.roots) {
        return not_authenticated("the certificate does not chain to a trusted CA");
    }
    let leaf_key = match rsa_key_of(&leaf) {
        Ok(k) => k,
        Err(e) => return not_authenticated(e),
    };
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if let Err(why) = sign::verify(&auth, parts.method.as_str(), pq, header, &leaf_key) {
        return not_authenticated(why);
    }
    let sub = leaf
        .tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter_map(|a| {
            a.value
                .decode_as::<x509_cert::der::asn1::Utf8StringRef<'_>>()
                .ok()
        })
        .map(|s| s.as_str().to_string())
        .find_map(|v| v.strip_prefix("opc-instance:").map(str::to_string))
        .unwrap_or_else(|| "ocid1.instance.oc1..emulator".into());
    let token = s.tokens.issue(
        &session_key,
        now,
        serde_json::json!({
            "sub": sub,
            "ptype": "instance",
            "tenant": tenancy,
        }),
    );
    axum::Json(serde_json::json!({ "token": token })).into_response()
}
