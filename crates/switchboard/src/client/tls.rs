//! TLS for wss:// clients: the web PKI roots by default, extra roots for private CAs, or (for tests
//! against self-signed servers only) no verification at all.

use std::sync::Arc;

use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::error::ConnectError;

/// How a wss:// client verifies the server.
#[derive(Clone)]
pub struct ClientTls {
    pub(crate) config: Arc<ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build(roots: RootCertStore) -> Result<ClientTls, ConnectError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ClientTls { config: Arc::new(config) })
}

impl ClientTls {
    /// Trusts the Mozilla root store (webpki-roots): what a browser would trust.
    pub fn webpki() -> Self {
        let roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        // The web PKI roots with the default provider always make a valid configuration.
        match build(roots) {
            Ok(tls) => tls,
            Err(error) => unreachable!("the default TLS configuration is valid: {error}"),
        }
    }

    /// Trusts the web PKI roots and the certificates in `pem` (a private CA or a self-signed server).
    pub fn with_extra_roots_pem(pem: &[u8]) -> Result<Self, ConnectError> {
        let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &pem[..])
            .collect::<Result<_, _>>()
            .map_err(|e| ConnectError::Tls(e.to_string()))?;
        if certs.is_empty() {
            return Err(ConnectError::Tls("no certificate found in the PEM data".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| ConnectError::Tls(e.to_string()))?;
        }
        build(roots)
    }

    /// Accepts any certificate. Only for development against self-signed servers: it makes TLS
    /// worthless against an attacker.
    pub fn insecure() -> Self {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map(|b| b.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnything)).with_no_client_auth());
        match config.as_mut() {
            Ok(config) => {
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
            }
            Err(error) => unreachable!("the default protocol versions are valid: {error}"),
        }
        match config {
            Ok(config) => Self { config: Arc::new(config) },
            Err(error) => unreachable!("the default protocol versions are valid: {error}"),
        }
    }

    /// Uses a rustls configuration as it is.
    pub fn from_rustls(config: Arc<ClientConfig>) -> Self {
        Self { config }
    }
}

#[derive(Debug)]
struct AcceptAnything;

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}
