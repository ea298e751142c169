//! The access log: one JSON line per request, as cheap on the request path as nginx's
//! `access_log ... buffer=64k flush=1s`.
//!
//! Each worker thread formats its lines straight into its own buffer (a [`Slot`], reused, locked
//! only by its own thread and, once per flush interval, by the writer). A buffer that reaches
//! [`CHUNK`] bytes is handed to the writer thread as one chunk: one cross-thread hand-off per
//! ~150 lines, not per line. The writer also sweeps every slot each [`FLUSH`], so lines reach the
//! file within about a second at low traffic, and writes each chunk with one `write` call.
//!
//! Nothing is lost silently: a chunk the writer cannot take (its queue is full) or could not
//! write is counted, line by line, in `tollgate_access_log_dropped_total{reason}`, and a failed
//! write in `tollgate_access_log_write_errors_total`. [`shutdown`] writes what is buffered when
//! the server stops. Sampling applies to successful requests only: errors and 429s are always
//! logged.

mod writer;

use std::cell::RefCell;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::config::AccessLogSettings;
use crate::metrics;
use writer::{Message, Writer};

/// A per-thread buffer is handed to the writer when it holds this much.
pub const CHUNK: usize = 64 * 1024;
/// The longest a line waits in a buffer before the writer sweeps it out.
pub const FLUSH: Duration = Duration::from_secs(1);

/// Where lines go, fixed at start.
static DESTINATION: OnceLock<Option<String>> = OnceLock::new();
/// The writer, created on first use: with `-d` Pingora forks after start-up, and a thread
/// started before the fork would not exist in the daemon.
static WRITER: OnceLock<Option<Writer>> = OnceLock::new();

/// Lines buffered by one thread, waiting for the writer.
#[derive(Default)]
pub(crate) struct Pending {
    pub bytes: Vec<u8>,
    pub lines: u64,
}

/// One thread's buffer. Only its own thread and the writer's sweep ever lock it, so the lock is
/// uncontended on the request path.
#[derive(Default)]
pub(crate) struct Slot {
    pending: Mutex<Pending>,
}

impl Slot {
    /// Everything buffered so far, leaving the slot empty.
    pub(crate) fn take(&self) -> Pending {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *p)
    }
}

thread_local! {
    static LOCAL: RefCell<Option<Arc<Slot>>> = const { RefCell::new(None) };
}

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

/// Whether a request with this status should be logged under `settings`.
pub fn wanted(settings: &AccessLogSettings, status: u16) -> bool {
    if !settings.enabled || DESTINATION.get().is_none() {
        return false;
    }
    status >= 400 || settings.sample >= 1.0 || rand::random::<f64>() < settings.sample
}

/// Appends one line: `format` writes the line (without its newline) into this thread's buffer.
pub fn write_with(format: impl FnOnce(&mut Vec<u8>)) {
    let Some(writer) = WRITER.get_or_init(open_writer) else {
        return;
    };
    let slot = LOCAL.with(|l| {
        l.borrow_mut()
            .get_or_insert_with(|| writer.register())
            .clone()
    });
    let full = {
        let mut p = slot.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.bytes.capacity() == 0 {
            p.bytes.reserve(CHUNK + CHUNK / 4);
        }
        let before = p.bytes.len();
        format(&mut p.bytes);
        if p.bytes.len() == before {
            return;
        }
        p.bytes.push(b'\n');
        p.lines += 1;
        (p.bytes.len() >= CHUNK).then(|| std::mem::take(&mut *p))
    };
    if let Some(chunk) = full {
        writer.send(Message::Chunk(chunk));
    }
}

fn open_writer() -> Option<Writer> {
    let destination = DESTINATION.get()?;
    match Writer::start(destination.as_deref()) {
        Ok(w) => Some(w),
        Err(e) => {
            log::error!("access log: {e}; access logging disabled");
            None
        }
    }
}

/// Writes every buffered line and waits (up to `timeout`) for the writer to finish. Called once
/// the server has stopped serving.
pub fn shutdown(timeout: Duration) {
    if let Some(Some(w)) = WRITER.get() {
        w.flush(timeout);
    }
}

fn dropped(reason: &str, lines: u64) {
    metrics::access_log_dropped(reason, lines);
}
