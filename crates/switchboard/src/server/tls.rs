//! TLS (wss://) for the server, with rustls.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// A server certificate and key.
#[derive(Clone)]
pub struct TlsConfig {
    config: Arc<ServerConfig>,
}

/// The certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The PEM data held no certificate.
    #[error("no certificate found in the PEM data")]
    NoCertificate,
    /// The PEM data held no private key.
    #[error("no private key found in the PEM data")]
    NoKey,
    /// The PEM data is malformed.
    #[error("malformed PEM data: {0}")]
    Pem(std::io::Error),
    /// rustls refused the certificate or key.
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsConfig {
    /// Loads a PEM certificate chain and private key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let certs: Vec<CertificateDer<'static>> =
            rustls_pemfile::certs(&mut &cert_pem[..]).collect::<Result<_, _>>().map_err(TlsError::Pem)?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        let key: PrivateKeyDer<'static> =
            rustls_pemfile::private_key(&mut &key_pem[..]).map_err(TlsError::Pem)?.ok_or(TlsError::NoKey)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { config: Arc::new(config) })
    }

    /// Loads a PEM certificate chain and private key from files.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read { path: path.display().to_string(), source })
        };
        Self::from_pem(&read(cert.as_ref())?, &read(key.as_ref())?)
    }

    /// Uses a rustls configuration as it is.
    pub fn from_rustls(config: Arc<ServerConfig>) -> Self {
        Self { config }
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.clone())
    }
}
