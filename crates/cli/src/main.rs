//! The `switchboard` command.

use clap::{Parser, Subcommand};

mod connect;
mod serve;

/// Switchboard: a WebSocket toolkit and server.
#[derive(Parser)]
#[command(name = "switchboard", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the server: the demo endpoints (/echo, /chat) and a project's script endpoints.
    Serve(serve::ServeArgs),
    /// Connects to a WebSocket server: stdin lines out, received messages to stdout.
    Connect(connect::ConnectArgs),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // `connect` prints its own state lines, so its log shows only warnings unless RUST_LOG says more.
    let default_level = if matches!(cli.command, Command::Connect(_)) { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args).await.map(|()| 0),
        Command::Connect(args) => connect::run(args).await,
    };
    let code = match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("switchboard: {error}");
            1
        }
    };
    // Exit here rather than return: a blocking read of stdin (`connect`) would otherwise keep the
    // runtime, and so the process, alive after the session ended.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(i32::from(code))
}
