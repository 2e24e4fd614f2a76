//! API-key credentials: from an OCI config file (`~/.oci/config`, `OCI_CONFIG_FILE`,
//! a profile) or from a Kubernetes Secret holding `config` and `key`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

/// Parses a PEM RSA private key (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`).
/// Encrypted keys are not supported: decrypt them first (`openssl rsa -in k -out k2`).
pub fn parse_private_key(pem: &str, _pass_phrase: Option<&str>) -> Result<RsaPrivateKey, OciError> {
    if pem.contains("ENCRYPTED") {
        return Err(OciError::Config(
            "encrypted private keys are not supported; store the key unencrypted in the Secret"
                .into(),
        ));
    }
    if pem.contains("BEGIN RSA PRIVATE KEY") {
        RsaPrivateKey::from_pkcs1_pem(pem)
            .map_err(|e| OciError::Config(format!("PKCS#1 private key: {e}")))
    } else {
        RsaPrivateKey::from_pkcs8_pem(pem)
            .map_err(|e| OciError::Config(format!("PKCS#8 private key: {e}")))
    }
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
