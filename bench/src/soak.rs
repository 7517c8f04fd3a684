//! The soak: `switchboard serve` (release, pinned to core 0) holds CONNECTIONS chat connections in
//! rooms of 100 for MINUTES while every room gets one message a second from a rotating member. Every
//! ten seconds the server's RSS and open files are sampled; every delivery is counted and timed.
//! Reports the curve (bench/soak.svg), p50/p99/max latency, and deliveries expected vs received.

use std::cell::RefCell;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BEGIN: &str = "<!-- soak: written by `switchboard-bench soak` -->";
const END: &str = "<!-- end soak -->";
const ROOM: usize = 100;
const KEY: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_serve() -> Result<(Serve, u16), Box<dyn std::error::Error>> {
    let binary = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/switchboard");
    if !std::path::Path::new(binary).exists() {
        return Err(format!("{binary} is missing: cargo build --release -p switchboard-cli").into());
    }
    let data = std::env::temp_dir().join(format!("switchboard-soak-{}", std::process::id()));
    let mut child = Command::new("taskset")
        .args(["-c", "0", binary, "serve", "--port", "0", "--history", "0", "--max-connections", "0"])
        .arg("--data")
        .arg(&data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    let port = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .map(|a| a.port())
        .ok_or_else(|| format!("serve did not start: {line:?}"))?;
    Ok((Serve(child), port))
}

/// The server's resident memory (KiB) and open files.
fn sample(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let files = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss, files)
}

/// One sample of the server: seconds into the traffic, RSS, open files, p99 of the last window.
#[derive(Clone, Copy)]
struct Sample {
    at: u64,
    rss_kib: u64,
    files: usize,
    p99_us: u64,
}

/// What the readers saw.
struct Seen {
    received: u64,
    latency: Histogram<u64>,
    window: Histogram<u64>,
    closed: u64,
}

/// One task per connection, as a chat client: counts our messages (`S <micros>`) and their latency,
/// skips the chat's own JSON (welcome, join, leave), answers the server's pings (it closes a peer
/// silent for the keep-alive timeout), and sends what the publisher hands it.
async fn client(
    stream: tokio::net::TcpStream,
    mut publish: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    start: Instant,
    seen: Rc<RefCell<Seen>>,
) {
    let (mut read, mut write) = stream.into_split();
    let mut buf = bytes::BytesMut::with_capacity(4096);
    loop {
        let mut pongs = Vec::new();
        while let Ok(Some((header, len))) = switchboard_wire::FrameHeader::parse(&buf) {
            let total = len + header.payload_len as usize;
            if buf.len() < total {
                break;
            }
            let payload = &buf[len..total];
            if header.opcode == 9 {
                pongs.extend(switchboard_wire::encode_raw_frame(0x8A, Some(KEY), payload));
            } else if let Some(sent) =
                payload.strip_prefix(b"S ").and_then(|t| std::str::from_utf8(t).ok()?.parse::<u64>().ok())
            {
                let micros = (start.elapsed().as_micros() as u64).saturating_sub(sent).max(1);
                let mut seen = seen.borrow_mut();
                seen.received += 1;
                let _ = seen.latency.record(micros);
                let _ = seen.window.record(micros);
            }
            bytes::Buf::advance(&mut buf, total);
        }
        if !pongs.is_empty() && write.write_all(&pongs).await.is_err() {
            break;
        }
        tokio::select! {
            read = read.read_buf(&mut buf) => match read {
                Ok(n) if n > 0 => {}
                _ => break,
            },
            frame = publish.recv() => match frame {
                Some(frame) => {
                    if write.write_all(&frame).await.is_err() {
                        break;
                    }
                }
                None => return,
            },
        }
    }
    seen.borrow_mut().closed += 1;
}

/// Runs the soak and returns the BENCHMARKS.md section.
pub async fn run(connections: usize, minutes: u64) -> Result<String, Box<dyn std::error::Error>> {
    let (serve, port) = start_serve()?;
    let pid = serve.0.id();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let rooms = connections.div_ceil(ROOM);
    let start = Instant::now();
    let seen =
        Rc::new(RefCell::new(Seen { received: 0, latency: Histogram::new(3)?, window: Histogram::new(3)?, closed: 0 }));
    let (idle_rss, idle_files) = sample(pid);
    let mut writers = Vec::with_capacity(connections);
    for index in 0..connections {
        let mut stream = crate::load::connect(addr, index).await?;
        crate::load::handshake_path(&mut stream, &format!("/chat?room=r{}", index % rooms)).await?;
        let (writer, publish) = tokio::sync::mpsc::unbounded_channel();
        tokio::task::spawn_local(client(stream, publish, start, seen.clone()));
        writers.push(writer);
    }
    let joined = start.elapsed();
    eprintln!("soak: {connections} connections in {rooms} rooms after {:.1} s", joined.as_secs_f64());
    let members: Vec<usize> = (0..rooms).map(|room| (room..connections).step_by(rooms).count()).collect();
    let (rss, files) = sample(pid);
    let mut samples = vec![Sample { at: 0, rss_kib: rss, files, p99_us: 0 }];
    let mut expected = 0u64;
    let mut published = 0u64;
    let mut next_sample = Instant::now() + Duration::from_secs(10);
    let end = Instant::now() + Duration::from_secs(minutes * 60);
    // Each room's message of the second goes out at its own moment, evenly spread over the second.
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rooms as u32);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round = 0usize;
    while Instant::now() < end {
        for (room, &size) in members.iter().enumerate() {
            tick.tick().await;
            let member = room + (round % size) * rooms;
            let text = format!("S {}", start.elapsed().as_micros());
            let frame = switchboard_wire::encode_raw_frame(0x81, Some(KEY), text.as_bytes());
            let _ = writers[member].send(frame);
            expected += size as u64 - 1;
            published += 1;
        }
        round += 1;
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(10);
            let (rss, files) = sample(pid);
            let p99 = {
                let mut seen = seen.borrow_mut();
                let p99 = seen.window.value_at_quantile(0.99);
                seen.window.reset();
                p99
            };
            samples.push(Sample { at: (start.elapsed() - joined).as_secs(), rss_kib: rss, files, p99_us: p99 });
            eprintln!("soak: t={}s rss={rss} KiB files={files} p99={p99} us", samples.last().map_or(0, |s| s.at));
        }
    }
    // Let the last deliveries arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = seen.borrow();
    let section =
        report(Run { connections, minutes, rooms, idle_rss, idle_files, expected, published }, &samples, &seen);
    std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/soak.svg"), chart(&samples))?;
    drop(writers);
    drop(serve);
    Ok(section)
}

/// What a run was, for its report.
struct Run {
    connections: usize,
    minutes: u64,
    rooms: usize,
    idle_rss: u64,
    idle_files: usize,
    expected: u64,
    published: u64,
}

fn report(run: Run, samples: &[Sample], seen: &Seen) -> String {
    let Run { connections, minutes, rooms, idle_rss, idle_files, expected, published } = run;
    use std::fmt::Write;
    let mut md = String::new();
    let _ = writeln!(md, "{BEGIN}\n## Soak: {connections} chat connections for {minutes} minutes\n");
    let _ = writeln!(
        md,
        "`switchboard serve` (release, core 0) with {connections} connections in {rooms} rooms of up to {ROOM} on `/chat`; every room gets one message a second from a rotating member, the rooms' messages spread evenly over the second (the generator on core 1, `cargo run --release -p switchboard-bench -- soak`): {published} publications, {:.0} per second. Deliveries: {expected} expected, {} received ({} lost); connections closed by the server: {}. Latency publish -> delivery over the whole run: p50 {} us, p99 {} us, max {} us.\n",
        published as f64 / (minutes * 60).max(1) as f64,
        seen.received,
        expected.saturating_sub(seen.received),
        seen.closed,
        seen.latency.value_at_quantile(0.5),
        seen.latency.value_at_quantile(0.99),
        seen.latency.max(),
    );
    let _ = writeln!(
        md,
        "Before the connections: {:.1} MiB, {idle_files} open files. Seconds count from the moment all were connected.\n",
        idle_rss as f64 / 1024.0
    );
    let _ = writeln!(md, "![Server RSS and open files over the soak](bench/soak.svg)\n");
    let _ = writeln!(md, "| seconds | RSS MiB | open files | p99 us (last 10 s) |\n|---:|---:|---:|---:|");
    let step = (samples.len() / 12).max(1);
    let last = samples.len().saturating_sub(1);
    let shown = samples.iter().enumerate().filter(|(n, _)| n % step == 0 || *n == last).map(|(_, s)| s);
    for sample in shown {
        let rss = sample.rss_kib as f64 / 1024.0;
        let _ = writeln!(md, "| {} | {rss:.1} | {} | {} |", sample.at, sample.files, sample.p99_us);
    }
    let _ = writeln!(md, "{END}");
    md
}

fn chart(samples: &[Sample]) -> String {
    let (width, height, left, bottom) = (640.0, 240.0, 50.0, 200.0);
    let last = samples.last().map_or(1, |s| s.at.max(1)) as f64;
    let max_rss = samples.iter().map(|s| s.rss_kib).max().unwrap_or(1).max(1) as f64 * 1.1;
    let max_files = samples.iter().map(|s| s.files).max().unwrap_or(1).max(1) as f64 * 1.1;
    let x = |t: u64| left + (t as f64 / last) * (width - left - 20.0);
    let line = |value: &dyn Fn(&Sample) -> f64| {
        samples
            .iter()
            .map(|s| format!("{:.1},{:.1}", x(s.at), bottom - value(s) * (bottom - 30.0)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rss = line(&|s| s.rss_kib as f64 / max_rss);
    let files = line(&|s| s.files as f64 / max_files);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{left}\" y=\"18\" font-size=\"13\">switchboard serve over the soak: RSS (blue, max {:.0} MiB) and open files (green, max {:.0})</text>\n<line x1=\"{left}\" y1=\"{bottom}\" x2=\"{}\" y2=\"{bottom}\" stroke=\"#888\"/>\n<polyline fill=\"none\" stroke=\"#2156c5\" stroke-width=\"2\" points=\"{rss}\"/>\n<polyline fill=\"none\" stroke=\"#1e7d3a\" stroke-width=\"2\" points=\"{files}\"/>\n<text x=\"{left}\" y=\"{}\">0 s</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{last:.0} s</text>\n</svg>\n",
        max_rss / 1.1 / 1024.0,
        max_files / 1.1,
        width - 20.0,
        bottom + 14.0,
        width - 20.0,
        bottom + 14.0,
    )
}

/// Writes the section into BENCHMARKS.md.
pub fn write(section: &str) -> std::io::Result<()> {
    crate::report::replace_section(BEGIN, END, section)
}
