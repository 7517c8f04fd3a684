//! Store sync on PostgreSQL shared by two `switchboard serve` nodes: changes cross nodes, one of two
//! compare-and-set writes on different nodes commits, a client resumes on the other node, and an
//! unreachable database gives retryable rejections with nothing acknowledged lost.

mod support;

use serde_json::json;
use support::postgres::PgCluster;
use support::sync::SyncClient;
use support::ServeProcess;

fn node(url: &str) -> ServeProcess {
    ServeProcess::start(&["--database", url])
}

#[tokio::test]
async fn two_nodes_on_one_postgres_serve_one_set_of_collections() {
    let cluster = PgCluster::start();
    let url = cluster.database("two_nodes");
    let a = node(&url);
    let b = node(&url);

    let (writer_a, _) = SyncClient::subscribe(a.addr, "people", "writer-a", None).await;
    let (mut reader_b, got) = SyncClient::subscribe(b.addr, "people", "reader-b", None).await;
    assert_eq!(got.last().expect("ready")["version"], 0);
    // A write on node A reaches a subscriber on node B.
    writer_a.mutate("a1", "p1", json!({"name": "Ada"}), None).await;
    let change = reader_b.recv_type("change").await;
    assert_eq!(change["version"], 1);
    assert_eq!(change["data"], json!({"name": "Ada"}));
    assert_eq!(change["origin"], json!({"client": "writer-a", "mutation_id": "a1"}));

    // Two writes on one base version, one per node: exactly one commits.
    let (mut writer_b, _) = SyncClient::subscribe(b.addr, "people", "writer-b", None).await;
    let mut writer_a = writer_a;
    writer_a.mutate("a2", "p1", json!({"name": "Ada", "age": 37}), Some(1)).await;
    writer_b.mutate("b2", "p1", json!({"name": "Bob"}), Some(1)).await;
    let answers = [writer_a.answer("a2").await, writer_b.answer("b2").await];
    let acks: Vec<_> = answers.iter().filter(|m| m["type"] == "ack").collect();
    let rejects: Vec<_> = answers.iter().filter(|m| m["type"] == "reject").collect();
    assert_eq!((acks.len(), rejects.len()), (1, 1), "exactly one wins: {answers:?}");
    assert_eq!(acks[0]["version"], 2);
    assert_eq!(rejects[0]["current"]["version"], 2);
    assert_eq!(rejects[0]["current"]["data"], acks[0]["data"]);
    assert_eq!(reader_b.recv_type("change").await["version"], 2);

    // A client that leaves node B resumes on node A with since: every later change once, in order.
    drop(reader_b);
    for n in 3..=6u64 {
        writer_b.mutate(&format!("b{n}"), "p2", json!({"n": n}), None).await;
        assert_eq!(writer_b.answer(&format!("b{n}")).await["version"], n);
    }
    let (_, got) = SyncClient::subscribe(a.addr, "people", "reader-b", Some(2)).await;
    let versions: Vec<_> = got.iter().map(|m| m["version"].clone()).collect();
    assert_eq!(versions, vec![json!(3), json!(4), json!(5), json!(6), json!(6)], "{got:?}");
    assert_eq!(got.last().expect("ready")["type"], "ready");
}

#[tokio::test]
async fn an_unreachable_database_gives_retryable_rejections_and_loses_nothing_acknowledged() {
    let cluster = PgCluster::start();
    let url = cluster.database("outage");
    let server = node(&url);
    let (mut writer, _) = SyncClient::subscribe(server.addr, "notes", "writer", None).await;
    writer.mutate("m1", "n1", json!({"text": "kept"}), None).await;
    assert_eq!(writer.answer("m1").await["type"], "ack");

    cluster.stop();
    writer.mutate("m2", "n2", json!({"text": "later"}), None).await;
    let reject = writer.answer("m2").await;
    assert_eq!(reject["type"], "reject", "{reject}");
    assert_eq!(reject["retryable"], true, "{reject}");
    assert!(reject["reason"].as_str().unwrap_or("").contains("database"), "{reject}");

    cluster.restart();
    // The client sends it again (as the Rust client does after a retryable rejection).
    let mut acked = None;
    for _ in 0..50 {
        writer.mutate("m2", "n2", json!({"text": "later"}), None).await;
        let answer = writer.answer("m2").await;
        if answer["type"] == "ack" {
            acked = Some(answer);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(acked.expect("acked once the database is back")["version"], 2);
    let (_, got) = SyncClient::subscribe(server.addr, "notes", "reader", None).await;
    assert_eq!(
        got[0]["entities"],
        json!([
            {"id": "n1", "data": {"text": "kept"}, "version": 1},
            {"id": "n2", "data": {"text": "later"}, "version": 2}
        ])
    );
}
