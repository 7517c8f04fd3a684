//! Routes mounted in one axum `Router` with `switchboard::axum::ws` form one group: shared topics, one
//! peer list, one shutdown. (Its own test binary: the group is process-wide.)

mod support;

use std::time::Duration;

use support::TestClient;
use switchboard::{define_hooks, Message, Peer};

#[tokio::test]
async fn routes_in_one_router_share_topics_peers_and_shutdown() {
    let listen = define_hooks().open(|peer: Peer| async move {
        peer.subscribe("news");
        peer.send_text("listening")
    });
    let speak = define_hooks().message(|peer: Peer, message: Message| async move {
        peer.publish("news", message);
    });
    let router = axum::Router::new()
        .route("/listen", switchboard::axum::ws(listen))
        .route("/speak", switchboard::axum::ws(speak));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
    });
    let mut listener = TestClient::connect(addr, "/listen").await;
    assert_eq!(listener.recv_text().await, "listening");
    let mut speaker = TestClient::connect(addr, "/speak").await;
    speaker.send_text("hello from another route").await;
    assert_eq!(listener.recv_text().await, "hello from another route");

    let hub = switchboard::axum::hub();
    assert_eq!(hub.peers().len(), 2, "one peer list for the group");
    assert_eq!(hub.subscribers("news").len(), 1);
    hub.publish("news", "from the hub");
    assert_eq!(listener.recv_text().await, "from the hub");

    let shutdown = tokio::spawn(async move { hub.shutdown(Duration::from_secs(5)).await });
    for client in [&mut listener, &mut speaker] {
        let close = client.recv_close().await.expect("close frame");
        assert_eq!(close.code.0, 1001);
        client.close(1001, "").await;
    }
    tokio::time::timeout(Duration::from_secs(5), shutdown).await.expect("shutdown in time").expect("join");
    let refused = TestClient::connect_with(addr, "/listen", &[], &[]).await.err().expect("refused after shutdown");
    assert_eq!(refused.status, 503);
}
