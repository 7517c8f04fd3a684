//! `*.websocket` descriptors (Dirigible's format): `{"endpoint", "handler", "engine"?, "description"?}`,
//! checked field by field, with errors that say what is wrong and where.

use serde::Serialize;
use serde_json::Value;

use crate::files::{join, with_js, ProjectFiles};

/// The only handler engine (Dirigible's default).
pub const ENGINE: &str = "javascript";

/// A valid descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Descriptor {
    /// Where it was found: its path relative to the project.
    pub location: String,
    /// The endpoint's name: served at `/websockets/v4/service/<endpoint>`.
    pub endpoint: String,
    /// The handler module as written (`my-project/ws-handler`).
    pub handler: String,
    /// The handler's engine (`javascript`).
    pub engine: String,
    /// Free text.
    pub description: Option<String>,
}

impl Descriptor {
    /// The handler module's project path (`my-project/ws-handler.js`), normalised.
    pub fn handler_path(&self) -> String {
        with_js(join("", &self.handler).unwrap_or_else(|| self.handler.clone()))
    }

    /// Reads and checks the descriptor at `location` in `files`. On error, also the endpoint it
    /// names, if it names a valid one (so that its upgrade can be refused with the reason).
    pub fn load(files: &ProjectFiles, location: &str) -> Result<Self, (String, Option<String>)> {
        let text =
            files.read(location).map_err(|e| (format!("cannot read {}: {e}", files.describe(location)), None))?;
        Self::parse(location, &text).map_err(|reason| (reason, named_endpoint(&text)))
    }

    /// Checks the text of a descriptor found at `location`.
    pub fn parse(location: &str, text: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| format!("invalid JSON at line {}, column {}: {e}", e.line(), e.column()))?;
        let Value::Object(fields) = value else {
            return Err(format!("expected a JSON object, found {}", kind(&value)));
        };
        let text_field = |name: &str, required: bool| -> Result<Option<String>, String> {
            match fields.get(name) {
                None | Some(Value::Null) if !required => Ok(None),
                None | Some(Value::Null) => Err(format!("missing \"{name}\"")),
                Some(Value::String(text)) => Ok(Some(text.clone())),
                Some(other) => Err(format!("\"{name}\" must be a string, found {}", kind(other))),
            }
        };
        let endpoint = text_field("endpoint", true)?.unwrap_or_default();
        if endpoint.is_empty()
            || !endpoint.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
            || endpoint == "."
            || endpoint == ".."
        {
            return Err(format!(
                "\"endpoint\" must be one path segment of letters, digits, '-', '_', '.' or '~', found {endpoint:?}"
            ));
        }
        let handler = text_field("handler", true)?.unwrap_or_default();
        if handler.is_empty() {
            return Err("\"handler\" is empty: name a module, e.g. \"my-project/ws-handler\"".into());
        }
        if join("", &handler).is_none() {
            return Err(format!("\"handler\" {handler:?} is outside the project"));
        }
        let engine = text_field("engine", false)?.unwrap_or_else(|| ENGINE.to_owned());
        if engine != ENGINE {
            return Err(format!("unknown \"engine\" {engine:?}: the only engine is \"{ENGINE}\""));
        }
        let description = text_field("description", false)?;
        Ok(Self { location: location.to_owned(), endpoint, handler, engine, description })
    }
}

/// The endpoint a (possibly invalid, even unparsable) descriptor names, if it names a valid one:
/// `"endpoint"`, a colon, and a string.
fn named_endpoint(text: &str) -> Option<String> {
    let endpoint = match serde_json::from_str::<Value>(text) {
        Ok(value) => value.get("endpoint")?.as_str()?.to_owned(),
        Err(_) => {
            let after = text[text.find("\"endpoint\"")? + "\"endpoint\"".len()..].trim_start();
            let quoted = after.strip_prefix(':')?.trim_start().strip_prefix('"')?;
            quoted[..quoted.find('"')?].to_owned()
        }
    };
    Descriptor::parse("", &serde_json::json!({ "endpoint": endpoint, "handler": "x" }).to_string()).ok()?;
    Some(endpoint)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_descriptor_parses() {
        let seed = "{\n  \"handler\": \"my-project/ws-handler\",\n  \"endpoint\":\"my-endpoint\",\n  \"description\":\"My Websocket\"\n}";
        let descriptor = Descriptor::parse("my-endpoint.websocket", seed).expect("valid");
        assert_eq!(descriptor.endpoint, "my-endpoint");
        assert_eq!(descriptor.handler_path(), "my-project/ws-handler.js");
        assert_eq!(descriptor.engine, "javascript");
        assert_eq!(descriptor.description.as_deref(), Some("My Websocket"));
    }

    #[test]
    fn a_broken_descriptor_still_names_its_endpoint() {
        assert_eq!(named_endpoint("{\"endpoint\": \"a\", oops").as_deref(), Some("a"));
        assert_eq!(named_endpoint("{\"endpoint\": \"a\", \"engine\": 1}").as_deref(), Some("a"));
        assert_eq!(named_endpoint("{\"endpoint\": \"a/b\"}"), None);
        assert_eq!(named_endpoint("{}"), None);
    }

    #[test]
    fn every_mistake_is_named() {
        let error = |text: &str| Descriptor::parse("x.websocket", text).expect_err(text);
        assert!(error("{\n  \"endpoint\": \"a\",\n  oops\n}").starts_with("invalid JSON at line 3, column 3"));
        assert_eq!(error("[1]"), "expected a JSON object, found an array");
        assert_eq!(error("{\"handler\":\"h\"}"), "missing \"endpoint\"");
        assert_eq!(error("{\"endpoint\":\"a\"}"), "missing \"handler\"");
        assert_eq!(error("{\"endpoint\":3,\"handler\":\"h\"}"), "\"endpoint\" must be a string, found a number");
        assert!(error("{\"endpoint\":\"a/b\",\"handler\":\"h\"}").contains("one path segment"));
        assert!(error("{\"endpoint\":\"a\",\"handler\":\"../h\"}").contains("outside the project"));
        assert!(error("{\"endpoint\":\"a\",\"handler\":\"/etc/h\"}").contains("outside the project"));
        assert_eq!(
            error("{\"endpoint\":\"a\",\"handler\":\"h\",\"engine\":\"graalvm\"}"),
            "unknown \"engine\" \"graalvm\": the only engine is \"javascript\""
        );
        assert!(error("{\"endpoint\":\"a\",\"handler\":\"h\",\"description\":[]}")
            .contains("\"description\" must be a string"));
    }
}
