//! The load generator: many connections, pre-masked frames, a fixed number of messages in flight per
//! connection, warm-up then measurement, throughput and latency percentiles.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// One load run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoadConfig {
    /// The echo server.
    pub addr: SocketAddr,
    /// Concurrent connections.
    pub connections: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Messages in flight per connection.
    pub inflight: usize,
    /// Warm-up before measuring.
    pub warmup: Duration,
    /// Measurement window.
    pub duration: Duration,
    /// Raw TCP: no handshake, the echo is the masked frame itself.
    pub raw: bool,
}

/// What a run measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoadResult {
    /// Echoes per second during the measurement window.
    pub messages_per_second: f64,
    /// Latency percentiles in microseconds.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// CPU the generator used, in cores (1.0 = one core busy): near 1.0 means it, not the server, limited.
    pub generator_cores: f64,
}

const KEY: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

pub(crate) fn masked_frame(size: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    switchboard_wire::encode_raw_frame(0x82, Some(KEY), &payload)
}

pub(crate) fn reply_len(size: usize, raw: bool) -> usize {
    if raw {
        masked_frame(size).len()
    } else {
        let header = match size {
            0..=125 => 2,
            126..=65535 => 4,
            _ => 10,
        };
        header + size
    }
}

/// Spreads connections over 127.0.0.1-127.0.0.250 so the ephemeral port range never runs out.
pub(crate) async fn connect(addr: SocketAddr, index: usize) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    let source = Ipv4Addr::new(127, 0, 0, 1 + (index % 250) as u8);
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn handshake(stream: &mut TcpStream) -> std::io::Result<()> {
    handshake_path(stream, "/").await
}

/// Performs the opening handshake for `path` and waits for the 101.
pub(crate) async fn handshake_path(stream: &mut TcpStream, path: &str) -> std::io::Result<()> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    // Servers send nothing after the 101 until the client does, so reading past the head loses nothing.
    let mut head = [0u8; 1024];
    let mut len = 0;
    while !head[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        if len == head.len() {
            return Err(std::io::Error::other("response head too long"));
        }
        let n = stream.read(&mut head[len..]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        len += n;
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other(String::from_utf8_lossy(&head[..len]).into_owned()));
    }
    Ok(())
}

/// Opening handshakes per second: `concurrency` loops of connect, upgrade, wait for the 101, close the
/// TCP connection; counted after a warm-up.
pub async fn handshakes(
    addr: SocketAddr,
    concurrency: usize,
    warmup_ms: u64,
    duration_ms: u64,
) -> Result<f64, Box<dyn std::error::Error>> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (done, failed, stop) = (done.clone(), failed.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut index = worker;
            while !stop.load(Ordering::Relaxed) {
                index += concurrency;
                match connect(addr, index).await {
                    Ok(mut stream) => match handshake(&mut stream).await {
                        Ok(()) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    },
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(warmup_ms)).await;
    let (start_done, started) = (done.load(Ordering::Relaxed), std::time::Instant::now());
    tokio::time::sleep(std::time::Duration::from_millis(duration_ms)).await;
    let rate = (done.load(Ordering::Relaxed) - start_done) as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let failures = failed.load(Ordering::Relaxed);
    if failures > done.load(Ordering::Relaxed) / 100 {
        return Err(format!("{failures} of the handshakes failed").into());
    }
    Ok(rate)
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Opens `connections` idle WebSocket connections (or raw TCP ones), prints `HELD`, and keeps them
/// open until the process is killed: the server's memory per idle connection is measured meanwhile.
pub async fn hold(addr: SocketAddr, connections: usize, raw: bool) -> Result<(), Box<dyn std::error::Error>> {
    let mut streams = Vec::with_capacity(connections);
    for index in 0..connections {
        let mut stream = connect(addr, index).await?;
        if !raw {
            handshake(&mut stream).await?;
        }
        streams.push(stream);
    }
    println!("HELD");
    std::future::pending::<()>().await;
    drop(streams);
    Ok(())
}

/// Sends exactly `echoes` messages per connection, one in flight, then closes: a fixed amount of work
/// for instruction counting.
pub async fn fixed(
    addr: SocketAddr,
    connections: usize,
    echoes: usize,
    size: usize,
    raw: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let frame = masked_frame(size);
    let reply = reply_len(size, raw);
    let mut tasks = Vec::new();
    for index in 0..connections {
        let mut stream = connect(addr, index).await?;
        if !raw {
            handshake(&mut stream).await?;
        }
        let frame = frame.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            for _ in 0..echoes {
                stream.write_all(&frame).await?;
                let mut got = 0;
                while got < reply {
                    let n = stream.read(&mut buf).await?;
                    if n == 0 {
                        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
                    }
                    got += n;
                }
            }
            Ok::<_, std::io::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Runs the load and returns the measurements.
pub async fn run(config: LoadConfig) -> Result<LoadResult, Box<dyn std::error::Error>> {
    let mut streams = Vec::with_capacity(config.connections);
    for index in 0..config.connections {
        let mut stream = connect(config.addr, index).await?;
        if !config.raw {
            handshake(&mut stream).await?;
        }
        streams.push(stream);
    }
    let frame = Arc::new(masked_frame(config.size));
    let reply = reply_len(config.size, config.raw);
    let start = Instant::now();
    let measure_from = start + config.warmup;
    let measure_until = measure_from + config.duration;
    let counted = Arc::new(AtomicU64::new(0));
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    let mut tasks = Vec::new();
    for stream in streams {
        let frame = frame.clone();
        let counted = counted.clone();
        let histogram = histogram.clone();
        let inflight = config.inflight;
        tasks.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).ok()?;
            let (mut reader, mut writer) = stream.into_split();
            let mut sent: VecDeque<Instant> = VecDeque::with_capacity(inflight);
            let mut batch = Vec::with_capacity(frame.len() * inflight);
            for _ in 0..inflight {
                batch.extend_from_slice(&frame);
                sent.push_back(Instant::now());
            }
            writer.write_all(&batch).await.ok()?;
            let mut buf = vec![0u8; 64 * 1024];
            let mut pending = 0usize;
            let mut count = 0u64;
            loop {
                let n = reader.read(&mut buf).await.ok()?;
                if n == 0 {
                    return None;
                }
                pending += n;
                let now = Instant::now();
                let mut done = 0;
                while pending >= reply {
                    pending -= reply;
                    done += 1;
                    if let Some(at) = sent.pop_front() {
                        if now >= measure_from && now < measure_until {
                            let _ = local.record(now.duration_since(at).as_micros().max(1) as u64);
                            count += 1;
                        }
                    }
                }
                if now >= measure_until {
                    break;
                }
                if done > 0 {
                    batch.clear();
                    for _ in 0..done {
                        batch.extend_from_slice(&frame);
                        sent.push_back(now);
                    }
                    writer.write_all(&batch).await.ok()?;
                }
            }
            counted.fetch_add(count, Ordering::Relaxed);
            if let Ok(mut merged) = histogram.lock() {
                let _ = merged.add(&local);
            }
            Some(())
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_before = cpu_seconds();
    tokio::time::sleep_until(measure_until.into()).await;
    let cpu_after = cpu_seconds();
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    let histogram = histogram.lock().map_err(|_| "histogram lock")?;
    Ok(LoadResult {
        messages_per_second: counted.load(Ordering::Relaxed) as f64 / config.duration.as_secs_f64(),
        p50_us: histogram.value_at_quantile(0.5),
        p99_us: histogram.value_at_quantile(0.99),
        p999_us: histogram.value_at_quantile(0.999),
        generator_cores: (cpu_after - cpu_before) / config.duration.as_secs_f64(),
    })
}
