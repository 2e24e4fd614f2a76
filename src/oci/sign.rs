//! OCI request signing: draft-cavage HTTP signatures with rsa-sha256, as the OCI SDKs do.
//!
//! GET/DELETE/HEAD sign `date (request-target) host`; POST/PUT/PATCH also sign
//! `content-length content-type x-content-sha256` (the base64 SHA-256 of the body, also
//! for an empty body). The key id is `<tenancy>/<user>/<fingerprint>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use md5::{Digest as _, Md5};
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::EncodePublicKey;
use rsa::signature::{SignatureEncoding, Signer as _, Verifier as _};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;

/// Headers signed on every request.
pub const GENERIC_HEADERS: [&str; 3] = ["date", "(request-target)", "host"];
/// Headers signed in addition on requests with a body (POST, PUT, PATCH).
pub const BODY_HEADERS: [&str; 3] = ["content-length", "content-type", "x-content-sha256"];

/// Whether requests of this method carry (and sign) a body.
pub fn method_has_body(method: &str) -> bool {
    matches!(
        method.to_ascii_uppercase().as_str(),
        "POST" | "PUT" | "PATCH"
    )
}

/// The OCI fingerprint of a public key: MD5 of its SubjectPublicKeyInfo DER, colon hex.
pub fn fingerprint(key: &RsaPublicKey) -> String {
    let der = key
        .to_public_key_der()
        .expect("an RSA public key always encodes");
    let digest = Md5::digest(der.as_bytes());
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// base64 of the SHA-256 of `body` (the `x-content-sha256` header).
pub fn content_sha256(body: &[u8]) -> String {
    B64.encode(Sha256::digest(body))
}

/// What gets signed about one request.
#[derive(Clone, Debug)]
pub struct SignInput<'a> {
    /// HTTP method, any case.
    pub method: &'a str,
    /// Path and query exactly as sent, e.g. `/20160918/instances/ocid1...?action=RESET`.
    pub path_and_query: &'a str,
    /// The `host` header: host, plus `:port` when not the scheme's default.
    pub host: &'a str,
    /// The `date` header (RFC 7231 IMF-fixdate).
    pub date: &'a str,
    /// The body for POST/PUT/PATCH (empty when none); ignored for other methods.
    pub body: &'a [u8],
    /// The `content-type` for POST/PUT/PATCH.
    pub content_type: &'a str,
}

/// The signing string: one `name: value` line per signed header, joined by `\n`.
pub fn signing_string(headers: &[(&str, String)]) -> String {
    headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A request signer holding one API key.
#[derive(Clone)]
pub struct RequestSigner {
    key_id: String,
    key: SigningKey<Sha256>,
}

impl std::fmt::Debug for RequestSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The headers to add to a signed request, in signing order, `authorization` last.
#[derive(Clone, Debug, PartialEq)]
pub struct SignedHeaders {
    /// `(name, value)` pairs to set on the request (lower-case names), without `host`
    /// (the HTTP client sets it) and without `(request-target)`.
    pub headers: Vec<(String, String)>,
    /// The exact string that was signed.
    pub signing_string: String,
    /// The `authorization` header value.
    pub authorization: String,
}

impl RequestSigner {
    /// A signer for `keyId` = `<tenancy>/<user>/<fingerprint>`.
    pub fn new(tenancy: &str, user: &str, fingerprint: &str, key: RsaPrivateKey) -> Self {
        Self::with_key_id(format!("{tenancy}/{user}/{fingerprint}"), key)
    }

    /// A signer with an explicit key id (e.g. `ST$<token>` for session tokens).
    pub fn with_key_id(key_id: String, key: RsaPrivateKey) -> Self {
        Self {
            key_id,
            key: SigningKey::<Sha256>::new(key),
        }
    }

    /// The key id put in the `authorization` header.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs one request.
    pub fn sign(&self, input: &SignInput<'_>) -> SignedHeaders {
        self.sign_headers(input, true)
    }

    /// Signs a request to the X.509 federation endpoint (`/v1/x509`), which the SDKs sign
    /// without `host`: `date (request-target) content-length content-type x-content-sha256`.
    pub fn sign_federation(&self, input: &SignInput<'_>) -> SignedHeaders {
        self.sign_headers(input, false)
    }

    fn sign_headers(&self, input: &SignInput<'_>, with_host: bool) -> SignedHeaders {
        let method = input.method.to_ascii_lowercase();
        let mut signed: Vec<(&str, String)> = vec![
            ("date", input.date.to_string()),
            (
                "(request-target)",
                format!("{method} {}", input.path_and_query),
            ),
        ];
        if with_host {
            signed.push(("host", input.host.to_string()));
        }
        if method_has_body(&method) {
            signed.push(("content-length", input.body.len().to_string()));
            signed.push(("content-type", input.content_type.to_string()));
            signed.push(("x-content-sha256", content_sha256(input.body)));
        }
        let signing_string = signing_string(&signed);
        let signature: Signature = self.key.sign(signing_string.as_bytes());
        let names = signed.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(" ");
        let authorization = format!(
            "Signature version=\"1\",headers=\"{names}\",keyId=\"{}\",algorithm=\"rsa-sha256\",signature=\"{}\"",
            self.key_id,
            B64.encode(signature.to_bytes())
        );
        let headers = signed
            .into_iter()
            .filter(|(n, _)| *n != "host" && *n != "(request-target)")
            .map(|(n, v)| (n.to_string(), v))
            .chain(std::iter::once((
                "authorization".to_string(),
                authorization.clone(),
            )))
            .collect();
        SignedHeaders {
            headers,
            signing_string,
            authorization,
        }
    }
}

/// A parsed `authorization: Signature …` header.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedAuthorization {
    /// `keyId`.
    pub key_id: String,
    /// `algorithm`.
    pub algorithm: String,
    /// `headers`, split on spaces (lower case).
    pub headers: Vec<String>,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// Parses an `authorization` header of the draft-cavage `Signature` scheme.
pub fn parse_authorization(value: &str) -> Result<ParsedAuthorization, String> {
    let rest = value
        .trim()
        .strip_prefix("Signature ")
        .ok_or("the authorization header is not of the Signature scheme")?;
    let mut key_id = None;
    let mut algorithm = None;
    let mut headers = None;
    let mut signature = None;
    let mut s = rest.trim();
    while !s.is_empty() {
        let eq = s.find('=').ok_or("malformed Signature parameters")?;
        let name = s[..eq].trim().trim_start_matches(',').trim().to_string();
        let after = &s[eq + 1..];
        let after = after
            .strip_prefix('"')
            .ok_or("Signature parameter values must be quoted")?;
        let end = after.find('"').ok_or("unterminated Signature parameter")?;
        let val = after[..end].to_string();
        s = after[end + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
        match name.as_str() {
            "keyId" => key_id = Some(val),
            "algorithm" => algorithm = Some(val),
            "headers" => headers = Some(val),
            "signature" => signature = Some(val),
            _ => {}
        }
    }
    let signature = B64
        .decode(signature.ok_or("the signature parameter is missing")?)
        .map_err(|e| format!("the signature is not base64: {e}"))?;
    Ok(ParsedAuthorization {
        key_id: key_id.ok_or("the keyId parameter is missing")?,
        algorithm: algorithm.unwrap_or_else(|| "rsa-sha256".into()),
        headers: headers
            .unwrap_or_else(|| "date".into())
            .split_whitespace()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        signature,
    })
}

/// Verifies a parsed signature: rebuilds the signing string from the request's
/// headers (`header` looks one up by lower-case name) and checks it with `key`.
pub fn verify(
    auth: &ParsedAuthorization,
    method: &str,
    path_and_query: &str,
    header: impl Fn(&str) -> Option<String>,
    key: &RsaPublicKey,
) -> Result<(), String> {
    if auth.algorithm != "rsa-sha256" {
        return Err(format!("unsupported algorithm {}", auth.algorithm));
    }
    let mut lines = Vec::with_capacity(auth.headers.len());
    for name in &auth.headers {
        let value = if name == "(request-target)" {
            format!("{} {path_and_query}", method.to_ascii_lowercase())
        } else {
            header(name).ok_or_else(|| format!("signed header {name} is missing"))?
        };
        lines.push((name.as_str(), value));
    }
    let text = signing_string(&lines);
    let sig = Signature::try_from(auth.signature.as_slice())
        .map_err(|e| format!("malformed signature: {e}"))?;
    VerifyingKey::<Sha256>::new(key.clone())
        .verify(text.as_bytes(), &sig)
        .map_err(|_| "the signature does not verify".to_string())
}

/// An RFC 7231 `date` header value for a timestamp.
pub fn http_date(ts: jiff::Timestamp) -> String {
    ts.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Parses an RFC 7231 `date` header value.
pub fn parse_http_date(s: &str) -> Option<jiff::Timestamp> {
    let s = s.trim().trim_end_matches("GMT").trim();
    jiff::civil::DateTime::strptime("%a, %d %b %Y %H:%M:%S", s)
        .ok()
        .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp())
}
