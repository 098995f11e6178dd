//! A job's own log lines. A handler writes them with [`JobLog`]; the runtime ships them to the
//! command API in batches while the attempt runs and flushes the rest before it reports the
//! outcome, so a job's last lines arrive while its attempt is still the running one.
//!
//! Writing never blocks the job: lines go into a bounded buffer, and when the shipper falls
//! that far behind the excess is dropped and counted rather than stalling the handler.

use chrono::Utc;
use ordo_protocol::worker::{LogLevel, LogLine};
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Lines buffered per attempt before new ones are dropped.
pub const LOG_BUFFER: usize = 10_000;

/// Where a handler writes its job's log lines; cheap to clone into spawned work.
#[derive(Debug, Clone)]
pub struct JobLog {
    sender: Option<mpsc::Sender<LogLine>>,
    dropped: Arc<AtomicU64>,
}

impl Default for JobLog {
    fn default() -> Self {
        Self::discard()
    }
}

impl JobLog {
    /// A log that keeps nothing, for handlers run outside a worker (tests, embedding).
    pub fn discard() -> Self {
        Self {
            sender: None,
            dropped: Arc::default(),
        }
    }

    /// A log and the receiving end its lines arrive at.
    pub fn channel() -> (Self, mpsc::Receiver<LogLine>) {
        let (sender, receiver) = mpsc::channel(LOG_BUFFER);
        let log = Self {
            sender: Some(sender),
            dropped: Arc::default(),
        };
        (log, receiver)
    }

    pub fn info(&self, message: impl Into<String>) {
        self.line(LogLevel::Info, message, None);
    }

    pub fn warn(&self, message: impl Into<String>) {
        self.line(LogLevel::Warn, message, None);
    }

    pub fn error(&self, message: impl Into<String>) {
        self.line(LogLevel::Error, message, None);
    }

    /// A line with structured `fields` (a JSON object).
    pub fn line(
        &self,
        level: LogLevel,
        message: impl Into<String>,
        fields: Option<Map<String, Value>>,
    ) {
        let Some(sender) = &self.sender else { return };
        let line = LogLine {
            level,
            message: message.into(),
            ts: Some(Utc::now()),
            fields,
        };
        if sender.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lines lost because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
