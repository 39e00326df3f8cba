//! Leaf certificates for intercepted hosts: minted on the first handshake for a host (by its
//! SNI), signed by the mounted interception CA, cached. The agent trusts the CA
//! (`SSL_CERT_FILE`, `NODE_EXTRA_CA_CERTS`), so a CONNECT to `api.openai.com` ends in Warden and
//! its requests go through the same pipeline as base-URL requests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pingora::listeners::tls::{Acceptor, TlsSettings};
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert};
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Leaves kept: one per intercepted host name an agent reaches.
const CACHED_LEAVES: usize = 1024;

/// The interception CA and the leaves it has signed.
pub struct Interceptor {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    leaves: quick_cache::sync::Cache<String, Arc<CertifiedKey>>,
}

impl std::fmt::Debug for Interceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interceptor").finish_non_exhaustive()
    }
}

impl Interceptor {
    /// Reads the CA certificate and key (PEM); an error says which file and why.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, String> {
        let read = |path: &Path| {
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let cert_pem = read(cert_file)?;
        let key = KeyPair::from_pem(&read(key_file)?).map_err(|e| {
            format!(
                "{}: not a PKCS#8 PEM private key ({e}); convert one with `openssl pkcs8 -topk8 -nocrypt`",
                key_file.display()
            )
        })?;
        let ca_der = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| format!("{}: no PEM certificate", cert_file.display()))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", cert_file.display()))?;
        Ok(Interceptor {
            issuer,
            ca_der,
            leaves: quick_cache::sync::Cache::new(CACHED_LEAVES),
        })
    }

    /// The leaf for `host`, minted once.
    pub fn leaf(&self, host: &str) -> Result<Arc<CertifiedKey>, String> {
        self.leaves
            .get_or_insert_with(host, || self.mint(host))
            .map_err(|e| format!("cannot mint a certificate for {host}: {e}"))
    }

    fn mint(&self, host: &str) -> Result<Arc<CertifiedKey>, String> {
        let mut params =
            CertificateParams::new(vec![host.to_string()]).map_err(|e| e.to_string())?;
        params.distinguished_name.push(DnType::CommonName, host);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| e.to_string())?;
        let chain = vec![cert.der().clone(), self.ca_der.clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        pingora::tls::install_default_crypto_provider();
        let provider = CryptoProvider::get_default().ok_or("no TLS crypto provider")?;
        CertifiedKey::from_der(chain, key, provider)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }
}

/// The TLS acceptor for intercepted tunnels, from the interception CA's files; `None` when none
/// is configured (intercepted hosts are then refused, never passed through).
pub fn acceptor(ca: Option<&(PathBuf, PathBuf)>) -> Result<Option<Acceptor>, String> {
    let Some((cert, key)) = ca else {
        return Ok(None);
    };
    let interceptor = Arc::new(Interceptor::load(cert, key)?);
    let mut tls = TlsSettings::intermediate("", "").map_err(|e| e.to_string())?;
    tls.set_cert_resolver(interceptor);
    Ok(Some(tls.build()))
}

impl ResolvesServerCert for Interceptor {
    /// Intercepted clients name the host they want (SNI); one that does not gets no
    /// certificate, and the handshake fails.
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let host = hello.server_name()?.to_ascii_lowercase();
        match self.leaf(&host) {
            Ok(leaf) => Some(leaf),
            Err(e) => {
                log::warn!("{e}");
                None
            }
        }
    }
}
