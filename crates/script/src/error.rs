//! What went wrong in a script, with where.

use std::fmt;

/// Why a script failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptErrorKind {
    /// The module does not compile (or a module it imports cannot be found).
    Compile,
    /// The handler threw (or its promise was rejected).
    Thrown,
    /// The handler ran past its CPU-time limit.
    Timeout,
    /// The runtime hit its memory limit.
    OutOfMemory,
    /// The runtime is gone (its thread ended).
    Unavailable,
}

/// A script error: what JavaScript said, and where (`file:line:column` when known).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptError {
    /// Why.
    pub kind: ScriptErrorKind,
    /// The error's message, e.g. `TypeError: cannot read property 'x' of undefined`.
    pub message: String,
    /// `file:line:column` (or `file:line`) of the failing code, when QuickJS reported one.
    pub location: Option<String>,
    /// The JavaScript stack, when there is one.
    pub stack: Option<String>,
}

impl ScriptError {
    pub(crate) fn new(kind: ScriptErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), location: None, stack: None }
    }

    /// A message and stack from QuickJS; the location is the first frame of the stack.
    pub(crate) fn from_js(kind: ScriptErrorKind, message: String, stack: Option<String>) -> Self {
        let location = stack.as_deref().and_then(first_location);
        Self { kind, message, location, stack }
    }

    /// A close reason naming the error, within the 123 bytes a close frame allows.
    pub fn close_reason(&self) -> String {
        let mut reason = match (&self.kind, &self.location) {
            (ScriptErrorKind::Timeout, _) => format!("script timed out: {}", self.message),
            (ScriptErrorKind::OutOfMemory, _) => "script ran out of memory".to_owned(),
            (_, Some(location)) => format!("script error at {location}: {}", self.message),
            (_, None) => format!("script error: {}", self.message),
        };
        if reason.len() > 123 {
            let mut end = 120;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
            reason.push_str("...");
        }
        reason
    }
}

/// `file:line:column` from the first `at ...` frame of a QuickJS stack: `    at onMessage (x.js:3:9)`
/// or `    at x.js:3:9`.
fn first_location(stack: &str) -> Option<String> {
    let frame = stack.lines().map(str::trim).find(|line| line.starts_with("at "))?;
    let inner = match (frame.rfind('('), frame.rfind(')')) {
        (Some(open), Some(close)) if open < close => &frame[open + 1..close],
        _ => frame.trim_start_matches("at ").trim(),
    };
    (inner.contains(':') && inner != "<native>").then(|| inner.to_owned())
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{} (at {location})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ScriptError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_location_is_the_first_frame() {
        let stack = "    at onMessage (my-project/handler.js:12:17)\n    at dispatch (prelude.js:140:5)\n";
        let error = ScriptError::from_js(ScriptErrorKind::Thrown, "TypeError: boom".into(), Some(stack.into()));
        assert_eq!(error.location.as_deref(), Some("my-project/handler.js:12:17"));
        assert_eq!(error.to_string(), "TypeError: boom (at my-project/handler.js:12:17)");
        let bare = ScriptError::from_js(ScriptErrorKind::Compile, "x".into(), Some("    at a.js:3:1\n".into()));
        assert_eq!(bare.location.as_deref(), Some("a.js:3:1"));
    }

    #[test]
    fn close_reasons_fit_a_close_frame() {
        let long = ScriptError::new(ScriptErrorKind::Thrown, "é".repeat(200));
        let reason = long.close_reason();
        assert!(reason.len() <= 123, "{}", reason.len());
        assert!(reason.ends_with("..."));
    }
}
