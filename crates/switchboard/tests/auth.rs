//! The authentication patterns of `examples/auth.rs`: a token in the query, a cookie or the
//! subprotocol; sessions that end when their token expires (4001) or is revoked (4003).

mod support;

#[path = "../../../examples/auth.rs"]
mod auth;

use std::time::Duration;

use support::TestClient;
use switchboard::wire::Event;
use switchboard::{define_hooks, Message, Peer, Server, Switchboard};

async fn serve(tokens: auth::Tokens) -> Server {
    let echo = define_hooks().message(|peer: Peer, message: Message| async move {
        let user = peer.context::<auth::Session>().map(|s| s.user.clone()).unwrap_or_default();
        peer.send(format!("{user}: {}", message.text()?))?;
        Ok::<_, switchboard::BoxError>(())
    });
    Switchboard::new().ws("/live", auth::hooks(tokens, echo)).bind("127.0.0.1:0").await.expect("bind")
}

async fn close_of(client: &mut TestClient) -> (u16, String) {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), client.next_event()).await.expect("a close in time") {
            Some(Event::Close(Some(frame))) => return (frame.code.0, frame.reason),
            Some(_) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_token_in_the_query_a_cookie_or_the_subprotocol_opens_a_session() {
    let tokens = auth::Tokens::default();
    tokens.grant("t-ada", "ada", Duration::from_secs(60));
    let server = serve(tokens).await;
    let addr = server.local_addr();

    let mut query = TestClient::connect(addr, "/live?token=t-ada").await;
    query.send_text("hi").await;
    assert_eq!(query.recv_text().await, "ada: hi");

    let mut cookie = TestClient::connect_with(addr, "/live", &[], &[("cookie", "theme=dark; session=t-ada")])
        .await
        .expect("accepted");
    cookie.send_text("hi").await;
    assert_eq!(cookie.recv_text().await, "ada: hi");

    let protocols = [auth::BEARER_PROTOCOL, "t-ada"];
    let mut offered = TestClient::connect_with(addr, "/live", &protocols, &[]).await.expect("accepted");
    assert_eq!(offered.response.protocol.as_deref(), Some(auth::BEARER_PROTOCOL), "the token is not echoed");
    offered.send_text("hi").await;
    assert_eq!(offered.recv_text().await, "ada: hi");

    for path in ["/live", "/live?token=wrong"] {
        let refused = TestClient::connect_with(addr, path, &[], &[]).await.err().expect("refused");
        assert_eq!((refused.status, refused.body.as_str()), (401, "a valid token is required\n"));
    }
}

#[tokio::test]
async fn a_session_ends_when_its_token_expires_or_is_revoked() {
    let tokens = auth::Tokens::default();
    tokens.grant("short", "bob", Duration::from_millis(300));
    tokens.grant("long", "eve", Duration::from_secs(60));
    let server = serve(tokens.clone()).await;
    let addr = server.local_addr();

    let mut expiring = TestClient::connect(addr, "/live?token=short").await;
    assert_eq!(close_of(&mut expiring).await, (auth::TOKEN_EXPIRED, "token expired".to_owned()));
    let refused = TestClient::connect_with(addr, "/live?token=short", &[], &[]).await.err().expect("expired");
    assert_eq!(refused.status, 401);

    let mut first = TestClient::connect(addr, "/live?token=long").await;
    let mut second =
        TestClient::connect_with(addr, "/live", &[], &[("cookie", "session=long")]).await.expect("accepted");
    second.send_text("still here").await;
    assert_eq!(second.recv_text().await, "eve: still here");
    tokens.revoke("long");
    assert_eq!(close_of(&mut first).await, (auth::TOKEN_REVOKED, "token revoked".to_owned()));
    assert_eq!(close_of(&mut second).await, (auth::TOKEN_REVOKED, "token revoked".to_owned()));
    assert_eq!(TestClient::connect_with(addr, "/live?token=long", &[], &[]).await.err().map(|r| r.status), Some(401));
}
