//! The access log's writer thread: takes full chunks from the request threads, sweeps the
//! per-thread buffers every flush interval, and writes each batch with one `write_all`.

use std::fs::File;
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{dropped, Pending, Slot, FLUSH};
use crate::metrics;

/// Chunks waiting for the writer (64 KiB each: 4 MiB in all) before new ones are dropped.
const QUEUE: usize = 64;

pub(super) enum Message {
    Chunk(Pending),
    /// Write everything buffered, then answer.
    Flush(SyncSender<()>),
}

pub(super) struct Writer {
    tx: SyncSender<Message>,
    slots: Arc<Mutex<Vec<Arc<Slot>>>>,
}

enum Out {
    Stdout,
    File(File),
}

/// The destination, and when a failed write was last reported (at most one line per minute).
struct Sink {
    out: Out,
    warned: Option<Instant>,
}

impl Out {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Out::Stdout => std::io::stdout().lock().write_all(bytes),
            Out::File(f) => f.write_all(bytes),
        }
    }
}

impl Writer {
    pub(super) fn start(path: Option<&str>) -> Result<Writer, String> {
        let out = match path {
            Some(p) => Out::File(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| format!("{p}: {e}"))?,
            ),
            None => Out::Stdout,
        };
        let (tx, rx) = sync_channel::<Message>(QUEUE);
        let slots: Arc<Mutex<Vec<Arc<Slot>>>> = Arc::default();
        let sweep_slots = slots.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || run(Sink { out, warned: None }, &rx, &sweep_slots))
            .map_err(|e| format!("writer thread: {e}"))?;
        Ok(Writer { tx, slots })
    }

    /// A new buffer for the calling thread (once per thread).
    pub(super) fn register(&self) -> Arc<Slot> {
        let slot = Arc::new(Slot::default());
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(slot.clone());
        slot
    }

    /// Hands a full chunk over without waiting; a chunk that does not fit is counted.
    pub(super) fn send(&self, msg: Message) {
        let lines = match &msg {
            Message::Chunk(p) => p.lines,
            Message::Flush(_) => 0,
        };
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => dropped("queue_full", lines),
            Err(TrySendError::Disconnected(_)) => dropped("writer_gone", lines),
        }
    }

    pub(super) fn flush(&self, timeout: Duration) {
        let (ack_tx, ack_rx) = sync_channel(1);
        if self.tx.send(Message::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv_timeout(timeout);
        }
    }
}

fn run(mut out: Sink, rx: &Receiver<Message>, slots: &Mutex<Vec<Arc<Slot>>>) {
    let mut next_sweep = Instant::now() + FLUSH;
    loop {
        let wait = next_sweep.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Message::Chunk(p)) => emit(&mut out, &p.bytes, p.lines),
            Ok(Message::Flush(ack)) => {
                while let Ok(Message::Chunk(p)) = rx.try_recv() {
                    emit(&mut out, &p.bytes, p.lines);
                }
                sweep(&mut out, slots);
                let _ = ack.send(());
            }
            Err(RecvTimeoutError::Timeout) => {
                sweep(&mut out, slots);
                next_sweep = Instant::now() + FLUSH;
            }
            Err(RecvTimeoutError::Disconnected) => {
                sweep(&mut out, slots);
                return;
            }
        }
    }
}

/// Writes what every thread has buffered. Lines of different threads are put in timestamp
/// order (each line starts with its `ts`), so a sequence of requests served by different
/// threads reads in the order it happened.
fn sweep(out: &mut Sink, slots: &Mutex<Vec<Arc<Slot>>>) {
    let taken: Vec<Pending> = {
        let slots = slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .iter()
            .map(|s| s.take())
            .filter(|p| p.lines > 0)
            .collect()
    };
    match taken.as_slice() {
        [] => {}
        [one] => emit(out, &one.bytes, one.lines),
        several => {
            let lines: u64 = several.iter().map(|p| p.lines).sum();
            emit(out, &merge_by_time(several), lines);
        }
    }
}

/// The lines of several buffers, ordered by their leading timestamp (stable).
fn merge_by_time(buffers: &[Pending]) -> Vec<u8> {
    let mut lines: Vec<&[u8]> = buffers
        .iter()
        .flat_map(|p| p.bytes.split_inclusive(|b| *b == b'\n'))
        .collect();
    lines.sort_by_key(|l| &l[..l.len().min(40)]);
    lines.concat()
}

fn emit(sink: &mut Sink, bytes: &[u8], lines: u64) {
    if let Err(e) = sink.out.write_all(bytes) {
        metrics::access_log_write_error();
        dropped("write_error", lines);
        if sink
            .warned
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            log::warn!("access log: a write failed ({e}); {lines} lines lost (counted in tollgate_access_log_dropped_total)");
            sink.warned = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_lines_of_several_threads_in_time_order() {
        let a = Pending {
            bytes: b"{\"ts\":\"2026-01-01T00:00:00.000001Z\",\"n\":1}\n{\"ts\":\"2026-01-01T00:00:00.000004Z\",\"n\":4}\n".to_vec(),
            lines: 2,
        };
        let b = Pending {
            bytes: b"{\"ts\":\"2026-01-01T00:00:00.000002Z\",\"n\":2}\n".to_vec(),
            lines: 1,
        };
        let merged = String::from_utf8(merge_by_time(&[a, b])).unwrap();
        let order: Vec<&str> = merged
            .lines()
            .map(|l| &l[l.len() - 2..l.len() - 1])
            .collect();
        assert_eq!(order, ["1", "2", "4"]);
    }
}
