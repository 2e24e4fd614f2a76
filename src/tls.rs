//! TLS shared by the agent and its client: rustls with the ring provider only, and PEM
//! parsing of certificates, keys and CA bundles.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The crypto provider every TLS configuration here uses: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM text, in order; `what` names it in errors.
pub fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: invalid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what}: no CERTIFICATE found in the PEM"));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM text.
pub fn private_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            format!("{what}: no PRIVATE KEY found in the PEM")
        }
        e => format!("{what}: invalid PEM: {e}"),
    })
}

/// A root store holding every certificate of a PEM CA bundle.
pub fn roots(pem: &[u8], what: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(pem, what)? {
        roots
            .add(cert)
            .map_err(|e| format!("{what}: unusable CA certificate: {e}"))?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_errors_are_clear() {
        let e = certificates(b"", "--tls-cert a.pem").unwrap_err();
        assert!(
            e.contains("--tls-cert a.pem") && e.contains("no CERTIFICATE"),
            "{e}"
        );
        let e = private_key(b"hello", "--tls-key k.pem").unwrap_err();
        assert!(e.contains("no PRIVATE KEY"), "{e}");
        let bad = b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(certificates(bad, "x").unwrap_err().contains("invalid PEM"));
        assert!(roots(b"", "ca").is_err());
    }
}
