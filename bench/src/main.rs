//! `switchboard-bench`: side-by-side WebSocket benchmarks. Never part of the test suite.
//!
//! - `switchboard-bench all [--quick]`: every scenario against every implementation, interleaved
//!   rounds, writes BENCHMARKS.md and bench/echo.svg.
//! - `switchboard-bench server <impl> [--port P]`: one echo server (the harness starts these).
//! - `switchboard-bench load --port P ...`: one load run, JSON on stdout.

mod fanout;
mod load;
mod orchestrate;
mod profile;
mod report;
mod script;
mod servers;
mod soak;
mod sync;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "switchboard-bench", about = "Side-by-side WebSocket benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs every scenario against every implementation and writes BENCHMARKS.md.
    All {
        /// A smaller matrix that finishes in a few minutes.
        #[arg(long)]
        quick: bool,
        /// Rounds per scenario (servers alternate A B A B within each).
        #[arg(long)]
        rounds: Option<usize>,
        /// Only these implementations (comma-separated).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Script endpoints beside the native echo (writes their section of BENCHMARKS.md).
    Script {
        /// Rounds per scenario.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Store sync through the hub on SQLite and PostgreSQL (writes its section of BENCHMARKS.md).
    Sync {
        /// A PostgreSQL database to use (default: a private cluster started for the run).
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
    },
    /// Holds chat connections against `switchboard serve` for minutes, sampling its RSS and open
    /// files (writes its section of BENCHMARKS.md and bench/soak.svg).
    Soak {
        /// Connections (the per-process file limit here is 20 000).
        #[arg(long, default_value_t = 19_000)]
        connections: usize,
        /// Minutes of traffic.
        #[arg(long, default_value_t = 10)]
        minutes: u64,
    },
    /// Runs one sync hub until killed (SQLite in a temporary file, or `--database`).
    SyncServer {
        /// A PostgreSQL URL.
        #[arg(long, value_name = "URL")]
        database: Option<String>,
    },
    /// Runs one echo server until killed.
    Server {
        /// The implementation (see `all`).
        name: String,
        /// Port (0 picks one; the port is printed as `READY <port>`).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Runs one fan-out server until killed.
    FanoutServer {
        /// The implementation.
        name: String,
    },
    /// One fan-out run: prints deliveries per second.
    Fanout {
        /// The server's port on 127.0.0.1.
        #[arg(long)]
        port: u16,
        /// Subscribers.
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        /// Publications.
        #[arg(long, default_value_t = 100)]
        messages: usize,
        /// Payload bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// Measures one implementation's memory per idle connection (prints KiB per connection).
    Idle {
        /// The implementation.
        name: String,
        /// Connections.
        #[arg(long, default_value_t = 10000)]
        connections: usize,
    },
    /// Measures one implementation's user-space instructions per 20-byte echo (callgrind).
    Instructions {
        /// The implementation.
        name: String,
    },
    /// Where one echo's instructions go, by function and component (writes bench/PROFILE.md).
    Profile {
        /// The implementation.
        #[arg(default_value = "switchboard")]
        name: String,
    },
    /// Opening handshakes per second against a running server (prints the rate).
    Handshakes {
        /// The server's port on 127.0.0.1.
        #[arg(long)]
        port: u16,
        /// Concurrent handshake loops.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Warm-up in milliseconds.
        #[arg(long, default_value_t = 300)]
        warmup_ms: u64,
        /// Measurement in milliseconds.
        #[arg(long, default_value_t = 2000)]
        duration_ms: u64,
    },
    /// Opens idle connections and holds them (prints HELD).
    Hold {
        /// The server's port on 127.0.0.1.
        #[arg(long)]
        port: u16,
        /// Connections.
        #[arg(long, default_value_t = 10000)]
        connections: usize,
        /// Raw TCP (no handshake).
        #[arg(long)]
        raw: bool,
    },
    /// Sends a fixed number of echoes per connection (for instruction counts).
    Fixed {
        /// The server's port on 127.0.0.1.
        #[arg(long)]
        port: u16,
        /// Connections.
        #[arg(long, default_value_t = 10)]
        connections: usize,
        /// Echoes per connection.
        #[arg(long, default_value_t = 1000)]
        echoes: usize,
        /// Payload bytes.
        #[arg(long, default_value_t = 20)]
        size: usize,
        /// Raw TCP (no handshake).
        #[arg(long)]
        raw: bool,
    },
    /// Runs one load and prints the result as JSON.
    Load {
        /// The server's port on 127.0.0.1.
        #[arg(long)]
        port: u16,
        /// Connections.
        #[arg(long, default_value_t = 100)]
        connections: usize,
        /// Payload bytes.
        #[arg(long, default_value_t = 20)]
        size: usize,
        /// Messages in flight per connection.
        #[arg(long, default_value_t = 1)]
        inflight: usize,
        /// Warm-up in milliseconds.
        #[arg(long, default_value_t = 500)]
        warmup_ms: u64,
        /// Measurement in milliseconds.
        #[arg(long, default_value_t = 2000)]
        duration_ms: u64,
        /// Raw TCP (no handshake).
        #[arg(long)]
        raw: bool,
    },
}

/// Raises this process's open-file limit to the hard limit (children inherit it): the memory scenario
/// holds up to 19 000 connections.
fn raise_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Pins this process to one core (the servers it starts run on core 0).
fn pin_to_core(core: usize) {
    // SAFETY: the set is a plain bit mask we initialise before passing it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    raise_file_limit();
    let cli = Cli::parse();
    // Each role runs on one core (the harness pins it with taskset): a single-threaded runtime.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match cli.command {
        Command::All { quick, rounds, only } => orchestrate::all(quick, rounds, &only),
        Command::Script { rounds } => {
            let section = script::measure(rounds)?;
            print!("{section}");
            Ok(script::write(&section)?)
        }
        Command::Sync { postgres } => {
            let section = runtime.block_on(sync::measure(postgres))?;
            print!("{section}");
            Ok(sync::write(&section)?)
        }
        Command::Soak { connections, minutes } => {
            pin_to_core(1);
            let local = tokio::task::LocalSet::new();
            let section = runtime.block_on(local.run_until(soak::run(connections, minutes)))?;
            print!("{section}");
            Ok(soak::write(&section)?)
        }
        Command::SyncServer { database } => runtime.block_on(sync::serve(database)),
        Command::Server { name, port } => {
            runtime.block_on(servers::run(&name, SocketAddr::from(([127, 0, 0, 1], port))))
        }
        Command::FanoutServer { name } => runtime.block_on(fanout::serve(&name, SocketAddr::from(([127, 0, 0, 1], 0)))),
        Command::Fanout { port, subscribers, messages, size } => {
            let rate = runtime.block_on(fanout::load(
                SocketAddr::from(([127, 0, 0, 1], port)),
                subscribers,
                messages,
                size,
            ))?;
            println!("{rate}");
            Ok(())
        }
        Command::Idle { name, connections } => {
            println!("{:.2}", orchestrate::idle_memory(&name, connections)?);
            Ok(())
        }
        Command::Instructions { name } => {
            println!("{:.0}", orchestrate::instructions_per_echo(&name)?);
            Ok(())
        }
        Command::Profile { name } => profile::profile(&name),
        Command::Handshakes { port, concurrency, warmup_ms, duration_ms } => {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            println!("{:.0}", runtime.block_on(load::handshakes(addr, concurrency, warmup_ms, duration_ms))?);
            Ok(())
        }
        Command::Hold { port, connections, raw } => {
            runtime.block_on(load::hold(SocketAddr::from(([127, 0, 0, 1], port)), connections, raw))
        }
        Command::Fixed { port, connections, echoes, size, raw } => {
            runtime.block_on(load::fixed(SocketAddr::from(([127, 0, 0, 1], port)), connections, echoes, size, raw))
        }
        Command::Load { port, connections, size, inflight, warmup_ms, duration_ms, raw } => {
            let config = load::LoadConfig {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                connections,
                size,
                inflight,
                warmup: Duration::from_millis(warmup_ms),
                duration: Duration::from_millis(duration_ms),
                raw,
            };
            let result = runtime.block_on(load::run(config))?;
            println!("{}", serde_json::to_string(&result)?);
            Ok(())
        }
    }
}
