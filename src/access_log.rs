//! The access log: one JSON line per request, written by a dedicated thread.
//!
//! The proxy hands a finished line to a bounded channel and moves on (`try_send`); when the
//! writer falls behind, lines are dropped and counted rather than slowing requests down.
//! Sampling applies to successful requests only: errors and 429s are always logged.

use std::io::Write;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::OnceLock;

use crate::config::AccessLogSettings;
use crate::metrics;

const QUEUE: usize = 16 * 1024;

static SINK: OnceLock<SyncSender<String>> = OnceLock::new();

/// Starts the writer thread. The destination is fixed at start (stdout or a file); `enabled`
/// and `sample` follow reloads.
pub fn start(settings: &AccessLogSettings) -> std::io::Result<()> {
    let mut out: Box<dyn Write + Send> = match &settings.path {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let (tx, rx) = sync_channel::<String>(QUEUE);
    std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || {
            while let Ok(line) = rx.recv() {
                let _ = writeln!(out, "{line}");
                // Flush when the queue is drained, so lines appear promptly at low traffic
                // and are batched at high traffic.
                while let Ok(more) = rx.try_recv() {
                    let _ = writeln!(out, "{more}");
                }
                let _ = out.flush();
            }
        })?;
    let _ = SINK.set(tx);
    Ok(())
}

/// Whether a request with this status should be logged under `settings`.
pub fn wanted(settings: &AccessLogSettings, status: u16) -> bool {
    if !settings.enabled || SINK.get().is_none() {
        return false;
    }
    status >= 400 || settings.sample >= 1.0 || rand::random::<f64>() < settings.sample
}

pub fn write(line: String) {
    let Some(tx) = SINK.get() else { return };
    match tx.try_send(line) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => metrics::access_log_dropped("queue_full"),
        Err(TrySendError::Disconnected(_)) => metrics::access_log_dropped("writer_gone"),
    }
}
