//! wss://: the server over rustls with a self-signed certificate (rcgen).

mod support;

use std::sync::Arc;

use support::TestClient;
use switchboard::{define_hooks, Message, Peer, Switchboard, TlsConfig};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

#[tokio::test]
async fn echo_over_tls_with_a_self_signed_certificate() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let cert_pem = certified.cert.pem();
    let key_pem = certified.key_pair.serialize_pem();
    let tls = TlsConfig::from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).expect("tls config");
    let hooks = define_hooks().message(|peer: Peer, message: Message| async move { peer.send(message) });
    let server = Switchboard::new().ws("/echo", hooks).bind_tls("127.0.0.1:0", tls).await.expect("bind");

    let mut roots = RootCertStore::empty();
    roots.add(certified.cert.der().clone()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(server.local_addr()).await.expect("connect");
    let stream = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake");
    let mut client = TestClient::handshake(Box::pin(stream), "localhost", "/echo", &[], &[]).await.expect("upgrade");
    client.send_text("secret hello").await;
    assert_eq!(client.recv_text().await, "secret hello");
    let big = vec![7u8; 1 << 20];
    client.send_binary(&big).await;
    match client.next_event().await {
        Some(switchboard::wire::Event::Message(_, data)) => assert_eq!(&data[..], &big[..]),
        other => panic!("expected the binary echo, got {other:?}"),
    }
}

#[test]
fn bad_pem_is_a_clear_error() {
    let err = TlsConfig::from_pem(b"not a certificate", b"not a key").err().expect("error");
    assert_eq!(err.to_string(), "no certificate found in the PEM data");
    let err = TlsConfig::from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem").err().expect("error");
    assert!(err.to_string().starts_with("cannot read /nonexistent/cert.pem"), "{err}");
}
