//! A provider's `ca_file`: the certificates Warden trusts for it, in the form Pingora takes.
//!
//! The file's CAs are trusted *on top of* the platform's roots (SPEC: "extra trust for a
//! private gateway"), so a provider that moves from a private gateway back to a public
//! endpoint keeps working. Read while compiling, never on the request path; a certificate that
//! does not parse is an error here rather than a panic inside Pingora's connector.

use std::sync::Arc;

use pingora::protocols::tls::CaType;
use pingora::utils::tls::WrappedX509;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The trust list for a provider whose `ca_file` holds `pem`: its certificates, then the
/// platform's roots (including `SSL_CERT_FILE` / `SSL_CERT_DIR`).
pub fn trust_list(pem: &[u8]) -> Result<Arc<CaType>, String> {
    let mut list = Vec::new();
    for (i, cert) in rustls_pemfile::certs(&mut &pem[..]).enumerate() {
        let der = cert.map_err(|e| format!("certificate {} is not valid PEM: {e}", i + 1))?;
        let wrapped = wrap(der.to_vec()).map_err(|e| {
            format!(
                "certificate {} is not a valid X.509 certificate: {e}",
                i + 1
            )
        })?;
        list.push(wrapped);
    }
    if list.is_empty() {
        return Err("it holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)".into());
    }
    match rustls_native_certs::load_native_certs() {
        Ok(roots) => list.extend(roots.into_iter().filter_map(|der| wrap(der.to_vec()).ok())),
        Err(e) => log::warn!("cannot load the platform's CA certificates: {e}"),
    }
    Ok(Arc::from(list))
}

fn wrap(der: Vec<u8>) -> Result<WrappedX509, String> {
    WrappedX509::try_new(der, |raw| {
        X509Certificate::from_der(raw)
            .map(|(_, cert)| cert)
            .map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_files_without_certificates() {
        assert!(trust_list(b"").unwrap_err().contains("no PEM certificate"));
        assert!(
            trust_list(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .unwrap_err()
                .contains("certificate 1")
        );
    }
}
