//! `switchboard new endpoint NAME`: writes a `*.websocket` descriptor and a handler with all four
//! functions to start from (Dirigible's template).

use std::path::PathBuf;

use switchboard_script::Descriptor;

/// What to create.
#[derive(clap::Subcommand)]
pub enum NewCommand {
    /// A script endpoint: NAME.websocket and NAME-handler.js.
    Endpoint {
        /// The endpoint's name: served at /websockets/v4/service/NAME.
        name: String,
        /// The project folder to write into (default: the current folder).
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
}

const HANDLER_TEMPLATE: &str = r#"// The handler of the NAME endpoint: ws://HOST/websockets/v4/service/NAME
// Each function is optional. What onMessage returns goes back to the sender (a string as text, an
// ArrayBuffer or typed array as binary, anything else as JSON); websockets.getPeer() is the connection.
import { websockets } from "sdk/net";

export function onOpen() {
  console.log(`NAME: ${websockets.getPeer().id} connected`);
}

export function onMessage(message) {
  return message;
}

export function onError(error) {
  console.error(`NAME: ${error}`);
}

export function onClose() {
  console.log(`NAME: ${websockets.getPeer().id} left`);
}
"#;

pub fn run(command: NewCommand) -> Result<u8, Box<dyn std::error::Error>> {
    let NewCommand::Endpoint { name, dir } = command;
    let descriptor = serde_json::json!({
        "endpoint": name,
        "handler": format!("{name}-handler"),
        "description": format!("The {name} endpoint"),
    });
    let text = serde_json::to_string_pretty(&descriptor)? + "\n";
    // The same checks `serve` applies, before anything is written.
    Descriptor::parse(&format!("{name}.websocket"), &text).map_err(|e| format!("endpoint name {name:?}: {e}"))?;
    let files = [
        (dir.join(format!("{name}.websocket")), text),
        (dir.join(format!("{name}-handler.js")), HANDLER_TEMPLATE.replace("NAME", &name)),
    ];
    for (path, _) in &files {
        if path.exists() {
            return Err(format!("{} exists already: nothing written", path.display()).into());
        }
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (path, contents) in &files {
        std::fs::write(path, contents).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    println!("serve it with: switchboard serve {}", dir.display());
    Ok(0)
}
