//! The Autobahn|Testsuite client driver: runs every case of a `wstest -m fuzzingserver` as an echo
//! client built on `Session`, then asks the suite to write its reports.
//!
//! Usage: `autobahn_client [ws://127.0.0.1:9001] [agent-name]` (scripts/autobahn runs it).

use std::time::Duration;

use futures_util::StreamExt;
use switchboard::websocket;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::args().nth(1).unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    let agent = std::env::args().nth(2).unwrap_or_else(|| "switchboard".to_owned());

    let session = websocket(&format!("{base}/getCaseCount"))?.connect();
    let count: u32 = session.messages().texts().next().await.ok_or("no case count")?.trim().parse()?;
    session.closed().await;
    println!("{count} cases");

    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        let session = websocket(&url)?.max_message_size(64 << 20).close_timeout(Duration::from_secs(2)).connect();
        let mut messages = session.messages();
        while let Some(message) = messages.next().await {
            if session.send(message).await.is_err() {
                break;
            }
        }
        let close = session.closed().await;
        if case % 50 == 0 || case == count {
            println!("case {case}/{count}: closed {} {}", close.code, close.reason);
        }
    }

    let session = websocket(&format!("{base}/updateReports?agent={agent}"))?.connect();
    session.closed().await;
    println!("reports updated");
    Ok(())
}
