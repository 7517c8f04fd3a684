//! Reload without restart: a file watcher on the project folder; a change to any descriptor or
//! script reloads the project within about a second (changes are gathered for 200 ms first).

use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use crate::project::Project;

/// How long changes are gathered before a reload (an editor's save is several events).
const SETTLE: Duration = Duration::from_millis(200);

/// Keeps the project reconciled with its folder for as long as it is kept.
pub struct ProjectWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for ProjectWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProjectWatcher")
    }
}

/// Watches `project`'s folder (`None` for an embedded project, which never changes). Within a
/// tokio runtime.
pub fn watch(project: Arc<Project>) -> Result<Option<ProjectWatcher>, String> {
    let Some(root) = project.files().root().map(std::path::Path::to_path_buf) else { return Ok(None) };
    let (changed, mut changes) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        Ok(event) if relevant(&event) => {
            let _ = changed.send(());
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "watching the project folder"),
    })
    .map_err(|e| format!("cannot watch {}: {e}", root.display()))?;
    watcher.watch(&root, RecursiveMode::Recursive).map_err(|e| format!("cannot watch {}: {e}", root.display()))?;
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            tokio::time::sleep(SETTLE).await;
            while changes.try_recv().is_ok() {}
            project.reload().await;
        }
    });
    Ok(Some(ProjectWatcher { _watcher: watcher }))
}

/// Changes to descriptors and scripts (not reads, not other files).
fn relevant(event: &notify::Event) -> bool {
    !event.kind.is_access()
        && event.paths.iter().any(|path| {
            let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
            name.ends_with(".websocket") || name.ends_with(".js") || name.ends_with(".mjs") || path.is_dir()
        })
}
