//! The `switchboard` command.

use clap::{Parser, Subcommand};

mod connect;
mod new;
mod run;
mod serve;
mod web;

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
    Serve(Box<serve::ServeArgs>),
    /// Connects to a WebSocket server: stdin lines out, received messages to stdout.
    Connect(connect::ConnectArgs),
    /// Runs a script with sdk/net until it and the clients it created are done.
    Run(run::RunArgs),
    /// Creates a project file to start from.
    #[command(subcommand)]
    New(new::NewCommand),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // `connect` prints its own state lines, so its log shows only warnings unless RUST_LOG says more.
    let default_level = if matches!(cli.command, Command::Connect(_)) { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colours only for a terminal: a log piped to a file or another program stays plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let printed = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).with_filter(filter);
    // The dashboard keeps the last warnings and errors, whatever RUST_LOG prints.
    tracing_subscriber::registry().with(printed).with(web::errors::ErrorLayer).init();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args).await.map(|()| 0),
        Command::Connect(args) => connect::run(args).await,
        Command::Run(args) => run::run(args).await,
        Command::New(command) => new::run(command),
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
