//! Runs the matrix: each scenario, each round, each implementation in turn (A B A B), the server
//! pinned to core 0 and the load generator to core 1.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::load::LoadResult;
use crate::report::{self, Measurement, Scenario};
use crate::servers::IMPLEMENTATIONS;

/// A server process, killed on drop.
struct ServerProcess {
    child: Child,
    port: u16,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pinned(core: &str, program: &str) -> Command {
    let mut command = Command::new("taskset");
    command.args(["-c", core, program]);
    command
}

fn start_server(name: &str) -> Result<ServerProcess, Box<dyn std::error::Error>> {
    let me = std::env::current_exe()?;
    let mut command = if crate::fanout::FANOUT_IMPLEMENTATIONS.contains(&name) {
        let mut command = pinned("0", &me.to_string_lossy());
        command.args(["fanout-server", name]);
        command
    } else if name == "node-ws" {
        let mut command = pinned("0", "node");
        command.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/node_echo.mjs"));
        command.env("NODE_PATH", concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/peers/node_modules"));
        command
    } else {
        let mut command = pinned("0", &me.to_string_lossy());
        command.args(["server", name]);
        command
    };
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let port = line
        .trim()
        .strip_prefix("READY ")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("{name} did not start: {line:?}"))?;
    Ok(ServerProcess { child, port })
}

/// Server CPU seconds (user + system) and peak RSS in KiB, from /proc.
fn server_usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (ticks / 100.0, hwm)
}

fn run_load(
    server: &ServerProcess,
    scenario: &Scenario,
    raw: bool,
    warmup_ms: u64,
    duration_ms: u64,
) -> Result<LoadResult, Box<dyn std::error::Error>> {
    let me = std::env::current_exe()?;
    let mut command = pinned("1", &me.to_string_lossy());
    command.args(["load", "--port", &server.port.to_string()]);
    command.args(["--connections", &scenario.connections.to_string(), "--size", &scenario.size.to_string()]);
    command.args(["--inflight", &scenario.inflight.to_string()]);
    command.args(["--warmup-ms", &warmup_ms.to_string(), "--duration-ms", &duration_ms.to_string()]);
    if raw {
        command.arg("--raw");
    }
    let output = command.stderr(Stdio::inherit()).output()?;
    if !output.status.success() {
        return Err(format!("load failed: {}", String::from_utf8_lossy(&output.stdout)).into());
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Server memory per idle open connection, in KiB: RSS with `connections` idle connections open,
/// minus RSS before, divided by the count.
pub fn idle_memory(name: &str, connections: usize) -> Result<f64, Box<dyn std::error::Error>> {
    let server = start_server(name)?;
    std::thread::sleep(Duration::from_millis(300));
    let pid = server.child.id();
    let before = rss_kib(pid);
    let me = std::env::current_exe()?;
    let mut holder = pinned("1", &me.to_string_lossy());
    holder.args(["hold", "--port", &server.port.to_string(), "--connections", &connections.to_string()]);
    if name == "raw-tcp" {
        holder.arg("--raw");
    }
    let mut holder = holder.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
    let stdout = holder.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(pid);
    let _ = holder.kill();
    let _ = holder.wait();
    if line.trim() != "HELD" {
        return Err(format!("{name}: could not open {connections} connections").into());
    }
    Ok(after.saturating_sub(before) as f64 / connections as f64)
}

/// User-space instructions the server executes per 20-byte echo, from callgrind: two runs with a
/// fixed amount of work (10 x 1000 and 10 x 3000 echoes); the difference over the 20 000 extra echoes
/// cancels start-up, handshakes and shutdown. Deterministic for the same binary and inputs.
pub fn instructions_per_echo(name: &str) -> Result<f64, Box<dyn std::error::Error>> {
    let (profiles, extra_echoes) = callgrind_runs(name)?;
    let mut totals = Vec::new();
    for path in &profiles {
        let profile = std::fs::read_to_string(path)?;
        let _ = std::fs::remove_file(path);
        let total: u64 = profile
            .lines()
            .find_map(|l| l.strip_prefix("summary:").or_else(|| l.strip_prefix("totals:")))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or("no totals in the callgrind output")?;
        totals.push(total);
    }
    Ok((totals[1] as f64 - totals[0] as f64) / extra_echoes)
}

/// Echoes per connection in the two callgrind runs. The same for every server: fewer echoes for the
/// slow ones (a 128 KiB buffer zero-filled per read) were tried and moved their figure by half, so the
/// quick mode pays the few minutes instead.
const ECHO_COUNTS: [usize; 2] = [1000, 3000];

/// Runs `name` under callgrind twice (10 connections x the two `ECHO_COUNTS` of 20 B) and returns the
/// two profile files (the caller removes them) and how many more echoes the second run did.
pub fn callgrind_runs(name: &str) -> Result<(Vec<std::path::PathBuf>, f64), Box<dyn std::error::Error>> {
    if name == "node-ws" {
        return Err("not measured under callgrind (a JIT)".into());
    }
    let me = std::env::current_exe()?;
    let mut profiles = Vec::new();
    let counts = ECHO_COUNTS;
    for echoes in counts {
        let out = std::env::temp_dir().join(format!("switchboard-bench-{name}-{echoes}.callgrind"));
        let _ = std::fs::remove_file(&out);
        let mut command = Command::new("valgrind");
        command.args(["--tool=callgrind", &format!("--callgrind-out-file={}", out.display())]);
        command.arg(&me).args(["server", name]);
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let port: u16 =
            line.trim().strip_prefix("READY ").and_then(|p| p.parse().ok()).ok_or("server did not start")?;
        let mut load = Command::new(&me);
        load.args(["fixed", "--port", &port.to_string(), "--connections", "10", "--echoes", &echoes.to_string()]);
        if name == "raw-tcp" {
            load.arg("--raw");
        }
        let status = load.status()?;
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let _ = child.wait();
        if !status.success() {
            return Err(format!("{name}: the fixed load failed").into());
        }
        profiles.push(out);
    }
    Ok((profiles, 10.0 * (counts[1] - counts[0]) as f64))
}

/// Starts the server `name`, runs the generator subcommand `args` against it (pinned to core 1, with
/// `--port` added) and returns the one figure the generator prints.
fn generator_figure(name: &str, args: &[&str]) -> Result<f64, Box<dyn std::error::Error>> {
    let server = start_server(name)?;
    let me = std::env::current_exe()?;
    let mut load = pinned("1", &me.to_string_lossy());
    load.args(args).args(["--port", &server.port.to_string()]);
    let output = load.stderr(Stdio::inherit()).output()?;
    if !output.status.success() {
        return Err(format!("{name}: `{}` failed", args.join(" ")).into());
    }
    let figure = String::from_utf8_lossy(&output.stdout).trim().parse::<f64>()?;
    Ok(figure)
}

/// Opening handshakes per second for each implementation, the servers alternating; median over rounds.
fn handshake_rates(implementations: &[String], rounds: usize, duration_ms: u64) -> Vec<(String, f64)> {
    let mut runs: Vec<(String, f64)> = Vec::new();
    for round in 0..rounds {
        for name in implementations.iter().filter(|n| *n != "raw-tcp") {
            let outcome = generator_figure(name, &["handshakes", "--duration-ms", &duration_ms.to_string()]);
            match outcome {
                Ok(rate) => {
                    eprintln!("handshakes round {round} {name:>24}: {rate:.0} per second");
                    runs.push((name.clone(), rate));
                }
                Err(error) => eprintln!("handshakes {name}: {error}"),
            }
        }
    }
    let mut medians = Vec::new();
    for name in implementations {
        let rates: Vec<f64> = runs.iter().filter(|(n, _)| n == name).map(|(_, r)| *r).collect();
        if !rates.is_empty() {
            medians.push((name.clone(), report::median(rates)));
        }
    }
    medians
}

/// One publisher, many subscribers: deliveries per second, median over the rounds.
fn fan_out(subscriber_counts: &[usize], rounds: usize) -> Vec<(usize, String, f64)> {
    let mut results = Vec::new();
    for &subscribers in subscriber_counts {
        let mut runs: Vec<(String, f64)> = Vec::new();
        for round in 0..rounds {
            for name in crate::fanout::FANOUT_IMPLEMENTATIONS {
                let outcome = generator_figure(name, &["fanout", "--subscribers", &subscribers.to_string()]);
                match outcome {
                    Ok(rate) => {
                        eprintln!(
                            "fan-out {subscribers} subscribers round {round} {name:>24}: {rate:>12.0} deliveries/s"
                        );
                        runs.push(((*name).to_owned(), rate));
                    }
                    Err(error) => eprintln!("fan-out {subscribers} {name}: {error}"),
                }
            }
        }
        for name in crate::fanout::FANOUT_IMPLEMENTATIONS {
            let rates: Vec<f64> = runs.iter().filter(|(n, _)| n == name).map(|(_, r)| *r).collect();
            if !rates.is_empty() {
                results.push((subscribers, (*name).to_owned(), report::median(rates)));
            }
        }
    }
    results
}

/// Runs the whole matrix and writes the report.
/// Starts `name`, runs one load of `scenario` against it, and returns messages per second.
pub fn load_once(
    name: &str,
    scenario: &Scenario,
    warmup_ms: u64,
    duration_ms: u64,
) -> Result<f64, Box<dyn std::error::Error>> {
    let server = start_server(name)?;
    std::thread::sleep(Duration::from_millis(100));
    Ok(run_load(&server, scenario, false, warmup_ms, duration_ms)?.messages_per_second)
}

pub fn all(quick: bool, rounds: Option<usize>, only: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let (connections, sizes, inflights, default_rounds, warmup_ms, duration_ms): (
        &[usize],
        &[usize],
        &[usize],
        usize,
        u64,
        u64,
    ) = if quick {
        (&[1, 100], &[20, 1024], &[1, 16], 2, 300, 1000)
    } else {
        (&[1, 100, 1000], &[20, 1024, 16384], &[1, 16], 3, 500, 2000)
    };
    let rounds = rounds.unwrap_or(default_rounds);
    let mut implementations: Vec<String> = IMPLEMENTATIONS.iter().map(|s| s.to_string()).collect();
    implementations.push("node-ws".to_owned());
    if !only.is_empty() {
        implementations.retain(|i| only.contains(i));
    }
    let mut measurements = Vec::new();
    for &connections in connections {
        for &size in sizes {
            for &inflight in inflights {
                let scenario = Scenario { connections, size, inflight };
                for round in 0..rounds {
                    for name in &implementations {
                        let server = start_server(name)?;
                        std::thread::sleep(Duration::from_millis(100));
                        let pid = server.child.id();
                        let (cpu_before, _) = server_usage(pid);
                        let result = run_load(&server, &scenario, name == "raw-tcp", warmup_ms, duration_ms);
                        let (cpu_after, peak_rss_kib) = server_usage(pid);
                        match result {
                            Ok(result) => {
                                eprintln!(
                                    "{scenario} round {round} {name:>24}: {:>10.0} msg/s p99 {:>6} us{}",
                                    result.messages_per_second,
                                    result.p99_us,
                                    if result.generator_cores > 0.9 { "  (generator-bound)" } else { "" }
                                );
                                measurements.push(Measurement {
                                    scenario: scenario.clone(),
                                    implementation: name.clone(),
                                    result,
                                    server_cpu: cpu_after - cpu_before,
                                    peak_rss_kib,
                                });
                            }
                            Err(error) => eprintln!("{scenario} round {round} {name}: {error}"),
                        }
                    }
                }
            }
        }
    }
    let idle_counts: &[usize] = if quick { &[10_000] } else { &[10_000, 19_000] };
    let mut idle = Vec::new();
    let mut instructions = Vec::new();
    for name in &implementations {
        for &count in idle_counts {
            match idle_memory(name, count) {
                Ok(kib) => {
                    eprintln!("idle memory {name:>24}: {kib:.2} KiB per connection at {count}");
                    idle.push((count, name.clone(), kib));
                }
                Err(error) => eprintln!("idle memory {name} at {count}: {error}"),
            }
        }
        match instructions_per_echo(name) {
            Ok(count) => {
                eprintln!("instructions {name:>24}: {count:.0} per 20 B echo");
                instructions.push((name.clone(), count));
            }
            Err(error) => eprintln!("instructions {name}: {error}"),
        }
    }
    let handshakes = handshake_rates(&implementations, rounds, duration_ms);
    let fanout = fan_out(&[1000, 10_000], rounds);
    let extra = report::Extra { idle_counts: idle_counts.to_vec(), idle_kib: idle, instructions, fanout, handshakes };
    report::write(&measurements, &implementations, rounds, quick, &extra)
}
