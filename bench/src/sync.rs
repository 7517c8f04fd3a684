//! Store sync through the hub: acknowledged mutations per second, mutate -> change latency at a
//! fixed rate, and the time to `ready` for a snapshot of 100 000 entities, on SQLite and on
//! PostgreSQL. The hub runs in `switchboard-bench sync-server` pinned to core 0; the clients here.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use switchboard::client::Messages;
use switchboard::sync::{Collection, PostgresStore, SqliteStore, SyncHub};
use switchboard::{websocket, Session, Switchboard};

#[path = "../../crates/cli/tests/support/postgres.rs"]
#[allow(dead_code)]
mod postgres;

const BEGIN: &str = "<!-- store-sync: written by `switchboard-bench sync` -->";
const END: &str = "<!-- end store-sync -->";

/// Writers for the throughput run, and mutations each keeps in flight.
const WRITERS: usize = 32;
const IN_FLIGHT: usize = 16;

/// Serves a hub over SQLite in a fresh temporary file, or over the PostgreSQL at `database`.
pub async fn serve(database: Option<String>) -> Result<(), Box<dyn std::error::Error>> {
    let hub = match database {
        Some(url) => SyncHub::new(PostgresStore::connect(&url, 1_000_000).await?),
        None => {
            let file = std::env::temp_dir().join(format!("switchboard-bench-sync-{}.sqlite3", std::process::id()));
            SyncHub::new(SqliteStore::open_with_log_limit(&file, 1_000_000)?)
        }
    };
    let server = Switchboard::new().sync("/sync", hub.any_collection(Collection::new())).bind("127.0.0.1:0").await?;
    println!("READY {}", server.local_addr().port());
    server.run_until_signal().await;
    Ok(())
}

struct Hub {
    child: Child,
    port: u16,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_hub(database: Option<&str>) -> Result<Hub, Box<dyn std::error::Error>> {
    let me = std::env::current_exe()?;
    let mut command = Command::new("taskset");
    command.args(["-c", "0"]).arg(me).arg("sync-server");
    if let Some(url) = database {
        command.args(["--database", url]);
    }
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    let port = line.trim().strip_prefix("READY ").and_then(|p| p.parse().ok()).ok_or("the hub did not start")?;
    Ok(Hub { child, port })
}

struct Client {
    session: Session,
    messages: Messages,
}

impl Client {
    async fn subscribe(
        port: u16,
        client: &str,
        id: Option<&str>,
    ) -> Result<(Self, Duration), Box<dyn std::error::Error>> {
        let session = websocket(&format!("ws://127.0.0.1:{port}/sync/bench"))?
            .protocols(["switchboard.sync.v1"])
            .max_message_size(256 << 20)
            .connect();
        let messages = session.messages();
        let mut this = Self { session, messages };
        let mut sub = json!({"type": "sub", "collection": "bench", "client": client});
        if let Some(id) = id {
            sub["id"] = id.into();
        }
        let started = Instant::now();
        this.session.send(sub.to_string()).await?;
        while this.recv().await?["type"] != "ready" {}
        Ok((this, started.elapsed()))
    }

    async fn recv(&mut self) -> Result<Value, Box<dyn std::error::Error>> {
        let message = tokio::time::timeout(Duration::from_secs(30), self.messages.next()).await?.ok_or("closed")?;
        Ok(serde_json::from_str(message.text()?)?)
    }

    async fn mutate(&self, mutation_id: &str, id: &str, n: u64) -> Result<(), Box<dyn std::error::Error>> {
        let message =
            json!({"type": "mutate", "mutation_id": mutation_id, "id": id, "data": {"n": n, "text": "a small entity"}});
        Ok(self.session.send(message.to_string()).await?)
    }
}

/// Acknowledged mutations per second: `WRITERS` clients, each on its own entity with `IN_FLIGHT`
/// mutations outstanding, for `duration`.
async fn throughput(port: u16, duration: Duration) -> Result<f64, Box<dyn std::error::Error>> {
    let mut tasks = Vec::new();
    let deadline = Instant::now() + duration;
    for w in 0..WRITERS {
        tasks.push(tokio::spawn(async move {
            let id = format!("w{w}");
            let (mut client, _) =
                Client::subscribe(port, &format!("writer-{w}"), Some(&id)).await.map_err(|e| e.to_string())?;
            let (mut sent, mut acked) = (0u64, 0u64);
            while sent < IN_FLIGHT as u64 {
                client.mutate(&format!("{w}-{sent}"), &id, sent).await.map_err(|e| e.to_string())?;
                sent += 1;
            }
            while Instant::now() < deadline {
                if client.recv().await.map_err(|e| e.to_string())?["type"] == "ack" {
                    acked += 1;
                    client.mutate(&format!("{w}-{sent}"), &id, sent).await.map_err(|e| e.to_string())?;
                    sent += 1;
                }
            }
            Ok::<u64, String>(acked)
        }));
    }
    let started = Instant::now();
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64().max(duration.as_secs_f64()))
}

/// p50 and p99 (ms) from a `mutate` to its `change` at another client, at `rate` mutations/s.
async fn latency(port: u16, rate: u64, count: u64) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let (writer, _) = Client::subscribe(port, "latency-writer", Some("latency-writer-own")).await?;
    // Its acks are read and dropped: an unread session stops reading its socket.
    let Client { session, mut messages } = writer;
    let draining = tokio::spawn(async move { while messages.next().await.is_some() {} });
    let (mut reader, _) = Client::subscribe(port, "latency-reader", Some("lat")).await?;
    let sent_at = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let clock = sent_at.clone();
    let pace = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let writing = tokio::spawn(async move {
        let mut tick = tokio::time::interval(pace);
        for n in 0..count {
            tick.tick().await;
            clock.lock().unwrap_or_else(|p| p.into_inner()).insert(n, Instant::now());
            let message = json!({"type": "mutate", "mutation_id": format!("lat-{n}"), "id": "lat", "data": {"n": n}});
            session.send(message.to_string()).await.map_err(|e| e.to_string())?;
        }
        Ok::<Session, String>(session)
    });
    let mut histogram = hdrhistogram::Histogram::<u64>::new(3)?;
    let mut seen = 0;
    while seen < count {
        let message = reader.recv().await?;
        if message["type"] != "change" {
            continue;
        }
        let Some(n) = message["data"]["n"].as_u64() else { continue };
        if let Some(at) = sent_at.lock().unwrap_or_else(|p| p.into_inner()).remove(&n) {
            histogram.record(at.elapsed().as_micros() as u64)?;
        }
        seen += 1;
    }
    writing.await??;
    draining.abort();
    Ok((histogram.value_at_quantile(0.5) as f64 / 1000.0, histogram.value_at_quantile(0.99) as f64 / 1000.0))
}

/// Writes `entities` entities (as fast as the hub takes them), then times a new subscriber's
/// snapshot to `ready`.
async fn time_to_ready(port: u16, entities: u64) -> Result<Duration, Box<dyn std::error::Error>> {
    let (mut loader, _) = Client::subscribe(port, "loader", Some("loader-own")).await?;
    let window = 256;
    let (mut sent, mut acked) = (0u64, 0u64);
    while acked < entities {
        while sent < entities && sent - acked < window {
            loader.mutate(&format!("load-{sent}"), &format!("e{sent:06}"), sent).await?;
            sent += 1;
        }
        if loader.recv().await?["type"] == "ack" {
            acked += 1;
        }
    }
    let (_, took) = Client::subscribe(port, "snapshot-reader", None).await?;
    Ok(took)
}

struct Figures {
    store: &'static str,
    acked: f64,
    p50: f64,
    p99: f64,
    ready: Duration,
}

async fn measure_store(store: &'static str, database: Option<&str>) -> Result<Figures, Box<dyn std::error::Error>> {
    let hub = start_hub(database)?;
    let acked = throughput(hub.port, Duration::from_secs(5)).await?;
    eprintln!("{store}: {acked:.0} acked mutations/s");
    let (p50, p99) = latency(hub.port, 1000, 5000).await?;
    eprintln!("{store}: mutate -> change p50 {p50:.2} ms, p99 {p99:.2} ms at 1000/s");
    let ready = time_to_ready(hub.port, 100_000).await?;
    eprintln!("{store}: 100 000 entities, sub -> ready in {:.0} ms", ready.as_secs_f64() * 1000.0);
    Ok(Figures { store, acked, p50, p99, ready })
}

/// Measures SQLite and PostgreSQL (a private cluster unless `postgres` names one) and returns the
/// section for BENCHMARKS.md.
pub async fn measure(postgres: Option<String>) -> Result<String, Box<dyn std::error::Error>> {
    let sqlite = measure_store("SQLite", None).await?;
    let cluster = postgres.is_none().then(postgres::PgCluster::start);
    let url = match (&postgres, &cluster) {
        (Some(url), _) => url.clone(),
        (None, Some(cluster)) => cluster.database("bench"),
        (None, None) => return Err("no PostgreSQL".into()),
    };
    let pg = measure_store("PostgreSQL", Some(&url)).await?;
    let rows: Vec<String> = [&sqlite, &pg]
        .iter()
        .map(|f| {
            format!(
                "| {} | {:.0} | {:.2} | {:.2} | {:.0} |",
                f.store,
                f.acked,
                f.p50,
                f.p99,
                f.ready.as_secs_f64() * 1000.0
            )
        })
        .collect();
    let verdict = |met: bool| if met { "met" } else { "not met" };
    Ok(format!(
        "{BEGIN}\n## Store sync\n\n\
         The hub (`switchboard-bench sync-server`, pinned to core 0) on SQLite (a file, WAL, synchronous=NORMAL) \
         and on PostgreSQL 15 (a private local cluster, fsync off); clients on the other core. Acked mutations/s: \
         {WRITERS} clients, each writing its own entity with {IN_FLIGHT} mutations in flight, for 5 s. Latency: one \
         client writes 1 000 mutations/s, another subscribed to that entity times each `change` from the `mutate`. \
         Time to ready: a new subscriber's snapshot of 100 000 entities (one message), from `sub` to `ready`.\n\n\
         | store | acked mutations/s | p50 mutate->change ms | p99 ms | 100 000-entity snapshot to ready ms |\n\
         | --- | --- | --- | --- | --- |\n{}\n\n\
         Targets: at least 20 000 acked mutations/s on SQLite ({}: {:.0}); p99 under 5 ms at 1 000 mutations/s ({}: {:.2} ms).\n{END}\n",
        rows.join("\n"),
        verdict(sqlite.acked >= 20_000.0),
        sqlite.acked,
        verdict(sqlite.p99 < 5.0),
        sqlite.p99
    ))
}

/// Replaces (or appends) the section in BENCHMARKS.md.
pub fn write(section: &str) -> std::io::Result<()> {
    crate::report::replace_section(BEGIN, END, section)
}
