//! API-key credentials: from an OCI config file (`~/.oci/config`, `OCI_CONFIG_FILE`,
//! a profile) or from a Kubernetes Secret holding `config` and `key`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use md5::{Digest as _, Md5};
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;

use super::error::OciError;
use super::sign::{RequestSigner, fingerprint};

/// API-key credentials of one user.
#[derive(Clone, Debug)]
pub struct ApiKey {
    /// Tenancy OCID.
    pub tenancy: String,
    /// User OCID.
    pub user: String,
    /// Key fingerprint (colon hex MD5).
    pub fingerprint: String,
    /// Region from the config, if any.
    pub region: Option<String>,
    /// The private key.
    pub key: RsaPrivateKey,
}

impl ApiKey {
    /// The request signer of these credentials.
    pub fn signer(&self) -> RequestSigner {
        RequestSigner::new(
            &self.tenancy,
            &self.user,
            &self.fingerprint,
            self.key.clone(),
        )
    }

    /// Reads the default config file (`OCI_CONFIG_FILE`, else `~/.oci/config`) and the
    /// profile (`OCI_CLI_PROFILE`, else `DEFAULT`).
    pub fn from_default_config() -> Result<Self, OciError> {
        let path = match std::env::var_os("OCI_CONFIG_FILE") {
            Some(p) => PathBuf::from(p),
            None => home()?.join(".oci").join("config"),
        };
        let profile = std::env::var("OCI_CLI_PROFILE").unwrap_or_else(|_| "DEFAULT".into());
        Self::from_config_file(&path, &profile)
    }

    /// Reads `profile` of the config file at `path`; `key_file` is read from disk.
    pub fn from_config_file(path: &Path, profile: &str) -> Result<Self, OciError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| OciError::Config(format!("cannot read {}: {e}", path.display())))?;
        let entries = profile_entries(&text, profile)?;
        let key_file = entries
            .get("key_file")
            .ok_or_else(|| OciError::Config(format!("profile {profile} has no key_file")))?;
        let key_path = expand_home(key_file)?;
        let pem = std::fs::read_to_string(&key_path).map_err(|e| {
            OciError::Config(format!("cannot read key_file {}: {e}", key_path.display()))
        })?;
        Self::from_entries(&entries, profile, &pem)
    }

    /// From the `data` of a Kubernetes Secret: `config` (an OCI config file; its
    /// `key_file` is ignored) and `key` (the PEM private key); `profile` optional.
    pub fn from_secret_data(
        data: &BTreeMap<String, Vec<u8>>,
        profile: Option<&str>,
    ) -> Result<Self, OciError> {
        let get = |k: &str| {
            data.get(k)
                .ok_or_else(|| OciError::Config(format!("the credentials Secret has no `{k}`")))
                .and_then(|v| {
                    String::from_utf8(v.clone()).map_err(|_| {
                        OciError::Config(format!("the credentials Secret's `{k}` is not UTF-8"))
                    })
                })
        };
        let config = get("config")?;
        let key = get("key")?;
        let profile = profile.unwrap_or("DEFAULT");
        let entries = profile_entries(&config, profile)?;
        Self::from_entries(&entries, profile, &key)
    }

    /// Reads the Secret `name` in `namespace` through the Kubernetes API.
    pub async fn from_kube_secret(
        client: kube::Client,
        namespace: &str,
        name: &str,
    ) -> Result<Self, OciError> {
        use k8s_openapi::api::core::v1::Secret;
        let api: kube::Api<Secret> = kube::Api::namespaced(client, namespace);
        let secret = api
            .get(name)
            .await
            .map_err(|e| OciError::Config(format!("Secret {namespace}/{name}: {e}")))?;
        // `stringData` is write-only on a real server; taken too for servers that keep it.
        let mut data: BTreeMap<String, Vec<u8>> = secret
            .string_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        data.extend(
            secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0)),
        );
        Self::from_secret_data(&data, None)
    }

    fn from_entries(
        entries: &BTreeMap<String, String>,
        profile: &str,
        pem: &str,
    ) -> Result<Self, OciError> {
        let need = |k: &str| {
            entries
                .get(k)
                .cloned()
                .ok_or_else(|| OciError::Config(format!("profile {profile} has no {k}")))
        };
        let key = parse_private_key(pem, entries.get("pass_phrase").map(String::as_str))?;
        let actual = fingerprint(&key.to_public_key());
        let fp = entries
            .get("fingerprint")
            .cloned()
            .unwrap_or(actual.clone());
        if fp != actual {
            return Err(OciError::Config(format!(
                "profile {profile}: fingerprint {fp} does not match the key ({actual})"
            )));
        }
        Ok(Self {
            tenancy: need("tenancy")?,
            user: need("user")?,
            fingerprint: fp,
            region: entries.get("region").cloned(),
            key,
        })
    }
}

/// Parses a PEM RSA private key: PKCS#1 `RSA PRIVATE KEY`, PKCS#8 `PRIVATE KEY`, PKCS#8
/// `ENCRYPTED PRIVATE KEY` (PBES2, as `openssl genrsa -aes128` writes with OpenSSL 3), or
/// traditional OpenSSL PEM with `Proc-Type: 4,ENCRYPTED` and `DEK-Info` (AES-128/192/256-CBC
/// or DES-EDE3-CBC, as the OCI CLI and Python `cryptography` write). `pass_phrase` is
/// needed for the encrypted forms and ignored otherwise.
pub fn parse_private_key(pem: &str, pass_phrase: Option<&str>) -> Result<RsaPrivateKey, OciError> {
    let encrypted_pkcs8 = pem.contains("BEGIN ENCRYPTED PRIVATE KEY");
    let encrypted_legacy = pem.contains("Proc-Type: 4,ENCRYPTED");
    if encrypted_pkcs8 || encrypted_legacy {
        let pass = pass_phrase.filter(|p| !p.is_empty()).ok_or_else(|| {
            OciError::Config("the private key is encrypted; set pass_phrase".into())
        })?;
        return if encrypted_pkcs8 {
            RsaPrivateKey::from_pkcs8_encrypted_pem(pem, pass.as_bytes()).map_err(|e| {
                OciError::Config(format!(
                    "wrong pass_phrase for the encrypted PKCS#8 private key ({e})"
                ))
            })
        } else {
            decrypt_legacy_pem(pem, pass)
        };
    }
    if pem.contains("BEGIN RSA PRIVATE KEY") {
        RsaPrivateKey::from_pkcs1_pem(pem)
            .map_err(|e| OciError::Config(format!("PKCS#1 private key: {e}")))
    } else {
        RsaPrivateKey::from_pkcs8_pem(pem)
            .map_err(|e| OciError::Config(format!("PKCS#8 private key: {e}")))
    }
}

/// The key of traditional OpenSSL PEM encryption: `EVP_BytesToKey` with MD5, one round,
/// the first 8 bytes of the IV as salt.
fn evp_bytes_to_key(pass: &[u8], salt: &[u8], len: usize) -> Vec<u8> {
    let mut key = Vec::with_capacity(len + 16);
    let mut prev: Vec<u8> = vec![];
    while key.len() < len {
        let mut h = Md5::new();
        h.update(&prev);
        h.update(pass);
        h.update(salt);
        prev = h.finalize().to_vec();
        key.extend_from_slice(&prev);
    }
    key.truncate(len);
    key
}

/// Decrypts a traditional `Proc-Type: 4,ENCRYPTED` PKCS#1 PEM.
fn decrypt_legacy_pem(pem: &str, pass: &str) -> Result<RsaPrivateKey, OciError> {
    let bad = |m: &str| OciError::Config(format!("encrypted PEM private key: {m}"));
    let mut lines = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    lines
        .next()
        .ok_or_else(|| bad("no BEGIN RSA PRIVATE KEY line"))?;
    let mut dek = None;
    let mut body = String::new();
    for line in lines {
        if line.starts_with("-----END") {
            break;
        }
        if let Some(v) = line.strip_prefix("DEK-Info:") {
            dek = Some(v.trim().to_string());
        } else if !line.contains(':') {
            body.push_str(line);
        }
    }
    let dek = dek.ok_or_else(|| bad("no DEK-Info header"))?;
    let (cipher, iv_hex) = dek
        .split_once(',')
        .ok_or_else(|| bad("DEK-Info is not `CIPHER,IV`"))?;
    let iv = hex_decode(iv_hex.trim()).ok_or_else(|| bad("the DEK-Info IV is not hex"))?;
    let mut data = B64
        .decode(body.as_bytes())
        .map_err(|e| bad(&format!("not base64: {e}")))?;
    type Decrypt = fn(&[u8], &[u8], &mut [u8]) -> Option<Vec<u8>>;
    let (key_len, iv_len, decrypt): (usize, usize, Decrypt) = match cipher.trim() {
        "AES-128-CBC" => (16, 16, cbc_decrypt::<aes::Aes128>),
        "AES-192-CBC" => (24, 16, cbc_decrypt::<aes::Aes192>),
        "AES-256-CBC" => (32, 16, cbc_decrypt::<aes::Aes256>),
        "DES-EDE3-CBC" => (24, 8, cbc_decrypt::<des::TdesEde3>),
        other => return Err(bad(&format!("unsupported cipher {other}"))),
    };
    if iv.len() != iv_len {
        return Err(bad("the DEK-Info IV has the wrong length"));
    }
    let key = evp_bytes_to_key(pass.as_bytes(), &iv[..8], key_len);
    let wrong = || OciError::Config("wrong pass_phrase for the encrypted private key".into());
    let plain = decrypt(&key, &iv, &mut data).ok_or_else(wrong)?;
    RsaPrivateKey::from_pkcs1_der(&plain).map_err(|_| wrong())
}

fn cbc_decrypt<C>(key: &[u8], iv: &[u8], data: &mut [u8]) -> Option<Vec<u8>>
where
    C: cbc::cipher::BlockDecryptMut + cbc::cipher::BlockCipher + cbc::cipher::KeyInit,
{
    use cbc::cipher::block_padding::Pkcs7;
    use cbc::cipher::{BlockDecryptMut as _, KeyIvInit};
    cbc::Decryptor::<C>::new_from_slices(key, iv)
        .ok()?
        .decrypt_padded_mut::<Pkcs7>(data)
        .ok()
        .map(<[u8]>::to_vec)
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Parses a PEM RSA public key (SPKI `PUBLIC KEY` or PKCS#1 `RSA PUBLIC KEY`).
pub fn parse_public_key(pem: &str) -> Result<rsa::RsaPublicKey, OciError> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::pkcs8::DecodePublicKey;
    if pem.contains("BEGIN RSA PUBLIC KEY") {
        rsa::RsaPublicKey::from_pkcs1_pem(pem)
            .map_err(|e| OciError::Config(format!("PKCS#1 public key: {e}")))
    } else if pem.contains("PRIVATE KEY") {
        Ok(parse_private_key(pem, None)?.to_public_key())
    } else {
        rsa::RsaPublicKey::from_public_key_pem(pem)
            .map_err(|e| OciError::Config(format!("public key: {e}")))
    }
}

/// The `key=value` entries of one profile of an INI-style OCI config file; entries of
/// `DEFAULT` are inherited by other profiles, as in the SDKs.
pub fn profile_entries(text: &str, profile: &str) -> Result<BTreeMap<String, String>, OciError> {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.trim().to_string());
            sections.entry(name.trim().to_string()).or_default();
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(OciError::Config(format!(
                "config line not understood: {line}"
            )));
        };
        let Some(section) = &current else {
            return Err(OciError::Config("config entry before any [profile]".into()));
        };
        sections
            .entry(section.clone())
            .or_default()
            .insert(k.trim().to_string(), v.trim().to_string());
    }
    let Some(own) = sections.get(profile) else {
        return Err(OciError::Config(format!("profile {profile} not found")));
    };
    let mut merged = sections.get("DEFAULT").cloned().unwrap_or_default();
    merged.extend(own.clone());
    Ok(merged)
}

fn home() -> Result<PathBuf, OciError> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| OciError::Config("HOME is not set".into()))
}

fn expand_home(p: &str) -> Result<PathBuf, OciError> {
    match p.strip_prefix("~/") {
        Some(rest) => Ok(home()?.join(rest)),
        None => Ok(PathBuf::from(p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys written by `openssl genrsa` (OpenSSL 3) and Python `cryptography`, each with
    /// its public half and pass phrase.
    const FIXTURES: [(&str, &str, &str, &str); 4] = [
        (
            "PKCS#8 PBES2 AES-128 (openssl genrsa -aes128)",
            include_str!("testdata/pkcs8_aes128.pem"),
            include_str!("testdata/pkcs8_aes128.pub"),
            "hunter2-pkcs8",
        ),
        (
            "traditional AES-256-CBC (openssl genrsa -traditional -aes256)",
            include_str!("testdata/trad_aes256.pem"),
            include_str!("testdata/trad_aes256.pub"),
            "hunter2-trad",
        ),
        (
            "traditional DES-EDE3-CBC (openssl genrsa -traditional -des3)",
            include_str!("testdata/trad_des3.pem"),
            include_str!("testdata/trad_des3.pub"),
            "hunter2-des3",
        ),
        (
            "Python cryptography TraditionalOpenSSL + BestAvailableEncryption",
            include_str!("testdata/python_traditional.pem"),
            include_str!("testdata/python_traditional.pub"),
            "hunter2-python",
        ),
    ];

    #[test]
    fn encrypted_keys_decrypt_with_their_pass_phrase() {
        for (what, pem, public, pass) in FIXTURES {
            let key = parse_private_key(pem, Some(pass)).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(
                key.to_public_key(),
                parse_public_key(public).unwrap(),
                "{what}"
            );
        }
    }

    #[test]
    fn encrypted_keys_without_or_with_a_wrong_pass_phrase_are_refused_clearly() {
        for (what, pem, _, pass) in FIXTURES {
            let e = parse_private_key(pem, None).unwrap_err().to_string();
            assert!(
                e.contains("the private key is encrypted; set pass_phrase"),
                "{what}: {e}"
            );
            let e = parse_private_key(pem, Some("")).unwrap_err().to_string();
            assert!(e.contains("set pass_phrase"), "{what}: {e}");
            let e = parse_private_key(pem, Some(&format!("{pass}x")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("wrong pass_phrase"), "{what}: {e}");
        }
    }

    #[test]
    fn pass_phrase_comes_from_the_config() {
        let (_, pem, public, pass) = FIXTURES[1];
        let fp = fingerprint(&parse_public_key(public).unwrap());
        let config = |extra: &str| {
            format!(
                "[DEFAULT]\nuser=ocid1.user.oc1..u\ntenancy=ocid1.tenancy.oc1..t\nfingerprint={fp}\n{extra}"
            )
        };
        let data = |config: String| {
            BTreeMap::from([
                ("config".to_string(), config.into_bytes()),
                ("key".to_string(), pem.as_bytes().to_vec()),
            ])
        };
        let key = ApiKey::from_secret_data(&data(config(&format!("pass_phrase={pass}\n"))), None)
            .unwrap();
        assert_eq!(key.fingerprint, fp);
        let e = ApiKey::from_secret_data(&data(config("")), None).unwrap_err();
        assert!(e.to_string().contains("set pass_phrase"), "{e}");
    }

    #[test]
    fn legacy_pem_headers_are_checked() {
        let (_, pem, _, pass) = FIXTURES[1];
        let unknown = pem.replace("AES-256-CBC", "CAMELLIA-256-CBC");
        let e = parse_private_key(&unknown, Some(pass))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsupported cipher CAMELLIA-256-CBC"), "{e}");
        let short_iv = pem.replace("DEK-Info: AES-256-CBC,", "DEK-Info: AES-256-CBC,00");
        let e = parse_private_key(&short_iv, Some(pass))
            .unwrap_err()
            .to_string();
        assert!(e.contains("IV has the wrong length"), "{e}");
    }
}
