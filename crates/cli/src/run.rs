//! `switchboard run FILE.js`: runs a script with `sdk/net` (the seed's client example, say) and exits
//! once it has finished and every client it created is closed. Ctrl-C ends it early.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use switchboard_script::{Engine, EngineConfig, ProjectFiles, Registry};

/// Options of `switchboard run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The script (an ES module or a CommonJS file).
    file: PathBuf,
    /// The project folder that module and handler names are relative to (default: the current folder).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Hosts the script's clients may reach (exact, or *.domain; repeatable). Default: any.
    #[arg(long = "allow-outbound", value_name = "PATTERN")]
    allow_outbound: Vec<String>,
}

/// The script's path relative to the project folder, `/`-separated.
fn relative(root: &Path, file: &Path) -> Result<String, String> {
    let file = file.canonicalize().map_err(|e| format!("{}: {e}", file.display()))?;
    let inside = file
        .strip_prefix(root)
        .map_err(|_| format!("{} is not inside the project folder {} (use --dir)", file.display(), root.display()))?;
    Ok(inside.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"))
}

pub async fn run(args: RunArgs) -> Result<u8, Box<dyn std::error::Error>> {
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::current_dir()?,
    };
    let root = dir.canonicalize().map_err(|e| format!("project folder {}: {e}", dir.display()))?;
    let path = relative(&root, &args.file)?;
    let clients = Arc::new(Registry::new(args.allow_outbound.clone()));
    let config = EngineConfig { label: path.clone(), ..EngineConfig::default() };
    let engine = Engine::start(ProjectFiles::Dir(root), config, clients.clone());
    if let Err(error) = engine.run(&path).await {
        eprintln!("switchboard: {path}: {error}");
        if let Some(stack) = error.stack.as_deref().filter(|s| !s.trim().is_empty()) {
            eprintln!("{}", stack.trim_end());
        }
        return Ok(1);
    }
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let changed = clients.changed();
        if clients.open_of(engine.label()) == 0 {
            return Ok(0);
        }
        tokio::select! {
            () = changed => {}
            _ = &mut interrupted => {
                clients.close_all_of(engine.label());
                return Ok(130);
            }
        }
    }
}
