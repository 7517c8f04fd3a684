//! How a runtime finds modules: the SDK modules by name (`sdk/net`, `net/v4/websockets`,
//! `net/websockets`), every other module in the project, relative to the importing module or to the
//! project root, never outside it.

use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::{Ctx, Error, Module, Result};

use crate::files::{dir_of, join, with_js, ProjectFiles, ReadLog};

/// ES module sources of the SDK: views of the `websockets` object the prelude defines.
const SDK_NET: &str = "const websockets = globalThis.__switchboard.websockets;\n\
export { websockets };\nexport default { websockets };\n";
const NET_WEBSOCKETS: &str = "const w = globalThis.__switchboard.websockets;\nexport default w;\n\
export const createWebsocket = w.createWebsocket, getClients = w.getClients, getClient = w.getClient,\n\
getClientByHandler = w.getClientByHandler, getMessage = w.getMessage, getError = w.getError,\n\
getMethod = w.getMethod, isOnOpen = w.isOnOpen, isOnMessage = w.isOnMessage, isOnError = w.isOnError,\n\
isOnClose = w.isOnClose, getPeer = w.getPeer;\n";

/// The SDK module with this name, if it is one.
fn sdk_module(name: &str) -> Option<&'static str> {
    match name {
        "sdk/net" => Some(SDK_NET),
        "net/v4/websockets" | "net/websockets" => Some(NET_WEBSOCKETS),
        _ => None,
    }
}

/// Resolves and loads modules of one project.
#[derive(Clone)]
pub(crate) struct ProjectModules {
    pub(crate) files: ProjectFiles,
    /// What the runtime loaded, for reloads.
    pub(crate) log: ReadLog,
}

impl ProjectModules {
    /// The project path of module `name` imported from `base` (a project path), or why not.
    pub(crate) fn resolve_path(&self, base: &str, name: &str) -> std::result::Result<String, String> {
        let from = if name.starts_with("./") || name.starts_with("../") { dir_of(base) } else { "" };
        let path = join(from, name).ok_or_else(|| format!("module {name:?} (from {base}) is outside the project"))?;
        let path = with_js(path);
        if self.files.exists(&path) {
            Ok(path)
        } else {
            Err(format!("cannot find module {name:?} (from {base}): no {}", self.files.describe(&path)))
        }
    }
}

impl Resolver for ProjectModules {
    fn resolve<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        base: &str,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> Result<String> {
        if sdk_module(name).is_some() {
            return Ok(name.to_owned());
        }
        self.resolve_path(base, name).map_err(|message| Error::new_resolving_message(base, name, message))
    }
}

impl Loader for ProjectModules {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> Result<Module<'js>> {
        if let Some(source) = sdk_module(name) {
            return Module::declare(ctx.clone(), name, source);
        }
        let source = self.log.read(&self.files, name).map_err(|e| Error::new_loading_message(name, e.to_string()))?;
        Module::declare(ctx.clone(), name, source)
    }
}
