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

/// Where lines go, fixed at start.
static DESTINATION: OnceLock<Option<String>> = OnceLock::new();
/// The writer, created on first use: with `-d` Pingora forks after start-up, and a thread
/// started before the fork would not exist in the daemon.
static SINK: OnceLock<Option<SyncSender<String>>> = OnceLock::new();

/// Fixes the destination (stdout, or the file at `settings.path`, checked here so that a bad
/// path fails at start). `enabled` and `sample` follow reloads.
pub fn start(settings: &AccessLogSettings) -> std::io::Result<()> {
    if let Some(p) = &settings.path {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)?;
    }
    let _ = DESTINATION.set(settings.path.clone());
    Ok(())
}

fn open_sink() -> Option<SyncSender<String>> {
    let destination = DESTINATION.get()?;
    let mut out: Box<dyn Write + Send> = match destination {
        Some(p) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            Ok(f) => Box::new(std::io::BufWriter::new(f)),
            Err(e) => {
                log::error!("access log {p}: {e}; access logging disabled");
                return None;
            }
        },
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let (tx, rx) = sync_channel::<String>(QUEUE);
    let spawned = std::thread::Builder::new()
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
        });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            log::error!("access log writer thread: {e}; access logging disabled");
            None
        }
    }
}

/// Whether a request with this status should be logged under `settings`.
pub fn wanted(settings: &AccessLogSettings, status: u16) -> bool {
    if !settings.enabled || DESTINATION.get().is_none() {
        return false;
    }
    status >= 400 || settings.sample >= 1.0 || rand::random::<f64>() < settings.sample
}

pub fn write(line: String) {
    let Some(tx) = SINK.get_or_init(open_sink) else {
        return;
    };
    match tx.try_send(line) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => metrics::access_log_dropped("queue_full"),
        Err(TrySendError::Disconnected(_)) => metrics::access_log_dropped("writer_gone"),
    }
}
