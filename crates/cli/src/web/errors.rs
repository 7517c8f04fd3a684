//! The last warnings and errors of the log, kept for the dashboard and `/api/errors` (a tracing
//! layer beside the one that prints the log).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// How many entries the log keeps.
const KEPT: usize = 100;

/// One warning or error.
#[derive(Clone, Debug, Serialize)]
pub struct LogEntry {
    /// Milliseconds since the Unix epoch.
    pub at: u64,
    /// `WARN` or `ERROR`.
    pub level: String,
    /// The module or target that logged it (`script` for a script's `console.error`).
    pub target: String,
    /// The message, then its fields as `name=value`.
    pub message: String,
}

/// The kept entries, newest last.
pub struct ErrorLog {
    entries: Mutex<VecDeque<LogEntry>>,
}

impl ErrorLog {
    /// The process's log (the layer writes here).
    pub fn global() -> &'static ErrorLog {
        static LOG: OnceLock<ErrorLog> = OnceLock::new();
        LOG.get_or_init(|| ErrorLog { entries: Mutex::new(VecDeque::with_capacity(KEPT)) })
    }

    /// The kept entries, oldest first.
    pub fn entries(&self) -> Vec<LogEntry> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    fn push(&self, entry: LogEntry) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() == KEPT {
            entries.pop_front();
        }
        entries.push_back(entry);
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The tracing layer that fills [`ErrorLog::global`] with every warning and error.
pub struct ErrorLayer;

impl<S: Subscriber> Layer<S> for ErrorLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let mut text = Text::default();
        event.record(&mut text);
        ErrorLog::global().push(LogEntry {
            at: unix_ms(SystemTime::now()),
            level: level.to_string(),
            target: event.metadata().target().to_owned(),
            message: text.0,
        });
    }
}

#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}");
            if !rest.is_empty() {
                let _ = write!(self.0, " {rest}");
            }
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }
}
