//! What `switchboard serve` shows a person, over HTTP: `/api` JSON, `/metrics` Prometheus text,
//! the embedded pages and `switchboard.js`, and the admin token that guards them beyond loopback.

mod support;

use support::{RawClient, ServeProcess};

const JSON: &[&str] = &["Content-Type: application/json"];

async fn get(server: &ServeProcess, path: &str, headers: &[&str]) -> (u16, String, String) {
    RawClient::http(server.addr, "GET", path, headers, "").await
}

#[tokio::test]
async fn api_and_metrics_count_what_peers_do() {
    let server = ServeProcess::start(&["--data", &support::data_dir("dashboard-api")]);
    let mut echo = RawClient::connect(server.addr, "/echo", &[]).await;
    echo.send(true, 0, 1, b"hello").await;
    assert_eq!(echo.recv().await.expect("echo").payload, b"hello");

    let (status, head, body) = get(&server, "/api/overview", &[]).await;
    assert_eq!(status, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
    let overview: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let routes = overview["endpoints"]["routes"].as_array().expect("routes");
    let route = routes.iter().find(|r| r["path"] == "/echo").expect("the /echo route");
    assert_eq!(route["open"], 1);
    assert_eq!(route["traffic"]["messages_in"], 1);
    assert_eq!(route["traffic"]["bytes_out"], 5);
    let scripts = overview["endpoints"]["scripts"].as_array().expect("script endpoints");
    assert!(scripts.iter().any(|s| s["endpoint"] == "my-endpoint"), "{scripts:?}");
    let peers = overview["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0]["route"], "/echo");
    assert!(peers[0]["address"].as_str().is_some_and(|a| a.starts_with("127.0.0.1:")));

    let (status, head, metrics) = get(&server, "/metrics", &[]).await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    for line in [
        "switchboard_connections{endpoint=\"/echo\"} 1",
        "switchboard_messages_received_total{endpoint=\"/echo\"} 1",
        "switchboard_sent_bytes_total{endpoint=\"/echo\"} 5",
        "switchboard_script_endpoints{status=\"ok\"} 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "no {line:?} in\n{metrics}");
    }
    echo.close(4003).await;
    let mut closes = String::new();
    for _ in 0..100 {
        closes = get(&server, "/metrics", &[]).await.2;
        if closes.contains("switchboard_closes_total{endpoint=\"/echo\",code=\"4003\"} 1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(closes.contains("switchboard_closes_total{endpoint=\"/echo\",code=\"4003\"} 1"), "{closes}");
}

#[tokio::test]
async fn the_pages_and_switchboard_js_are_embedded() {
    let server = ServeProcess::start(&["--data", &support::data_dir("dashboard-pages")]);
    for (path, kind, text) in [
        ("/", "text/html", "<title>Switchboard</title>"),
        ("/demo/chat", "text/html", "/assets/chat.js"),
        ("/demo/store", "text/html", "/assets/store.js"),
        ("/switchboard.js", "text/javascript", "export function syncWith"),
        ("/switchboard.d.ts", "application/typescript", "export function websocket"),
        ("/assets/dashboard.js", "text/javascript", "/api/live"),
    ] {
        let (status, head, body) = get(&server, path, &[]).await;
        assert_eq!(status, 200, "{path}: {head}");
        assert!(head.contains(kind), "{path}: {head}");
        assert!(body.contains(text), "{path} lacks {text:?}");
    }
}

#[tokio::test]
async fn actions_explain_bad_requests() {
    let server = ServeProcess::start(&["--data", &support::data_dir("dashboard-actions")]);
    let (status, _, body) = RawClient::http(server.addr, "POST", "/api/close", JSON, "{\"peer\": 7}").await;
    assert_eq!(status, 400);
    assert!(body.contains("expected {\\\"peer\\\": UUID"), "{body}");
    let missing = "{\"peer\": \"6f9619ff-8b86-d011-b42d-00cf4fc964ff\"}";
    let (status, _, body) = RawClient::http(server.addr, "POST", "/api/close", JSON, missing).await;
    assert_eq!(status, 404);
    assert!(body.contains("no open peer 6f9619ff"), "{body}");
    let (status, _, body) =
        RawClient::http(server.addr, "POST", "/api/publish", JSON, "{\"topic\": \"\", \"message\": \"x\"}").await;
    assert_eq!((status, body.as_str()), (400, "{\"error\":\"the topic is empty\"}"));
    let (status, _, body) =
        RawClient::http(server.addr, "POST", "/api/publish", JSON, "{\"topic\": \"t\", \"message\": \"x\"}").await;
    assert_eq!((status, body.as_str()), (200, "{\"subscribers\":0,\"topic\":\"t\"}"));
    // Another web page may not act through a visitor's browser, nor read the live feed.
    let body = "{\"topic\": \"t\", \"message\": \"x\"}";
    let (status, _, _) =
        RawClient::http(server.addr, "POST", "/api/publish", &["Content-Type: text/plain"], body).await;
    assert_eq!(status, 415);
    let foreign = ["Content-Type: application/json", "Origin: http://evil.example"];
    let (status, _, _) = RawClient::http(server.addr, "POST", "/api/publish", &foreign, body).await;
    assert_eq!(status, 403);
    let (_, status) = RawClient::handshake(server.addr, "/api/live", &["Origin: http://evil.example"]).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn beyond_loopback_the_admin_pages_need_the_token() {
    let data = support::data_dir("dashboard-exposed");
    let exposed = ServeProcess::start_logged(&["--host", "0.0.0.0", "--data", &data]);
    exposed.wait_for_log("set --admin-token TOKEN");
    for path in ["/", "/api/overview", "/metrics", "/api/peers"] {
        let (status, head, _) = get(&exposed, path, &[]).await;
        assert_eq!(status, 401, "{path}: {head}");
        assert!(head.to_ascii_lowercase().contains("www-authenticate: bearer"), "{head}");
    }
    let (status, _, body) = get(&exposed, "/", &[]).await;
    assert_eq!(status, 401);
    assert!(body.contains("start it with --admin-token TOKEN"), "{body}");
    let (status, _, _) = get(&exposed, "/switchboard.js", &[]).await;
    assert_eq!(status, 200, "switchboard.js and the demos are public");
    let (_, head) = RawClient::handshake(exposed.addr, "/api/live", &[]).await;
    assert_eq!(head, 401, "the live feed too");
    drop(exposed);

    let data = support::data_dir("dashboard-token");
    let guarded = ServeProcess::start(&["--host", "0.0.0.0", "--admin-token", "s3cret", "--data", &data]);
    let (status, _, _) = get(&guarded, "/api/overview", &["Authorization: Bearer s3cret"]).await;
    assert_eq!(status, 200);
    let (status, _, _) = get(&guarded, "/metrics", &["Authorization: Bearer wrong"]).await;
    assert_eq!(status, 401);
    let (status, head, _) = RawClient::http(guarded.addr, "POST", "/login", &[], "token=s3cret").await;
    assert_eq!(status, 303, "{head}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("the login sets a cookie")
        .to_owned();
    let (status, _, body) = get(&guarded, "/", &[&format!("Cookie: {cookie}")]).await;
    assert_eq!(status, 200);
    assert!(body.contains("/assets/dashboard.js"));
    let (_, status) = RawClient::handshake(guarded.addr, "/api/live", &[&format!("Cookie: {cookie}")]).await;
    assert_eq!(status, 101);
}
