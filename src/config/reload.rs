//! Hot reload: SIGHUP, or an edit of the file, swaps in a new snapshot without a restart.
//!
//! The new file is validated in full first; a file that fails keeps the running configuration
//! and counts `tollgate_config_reloads_total{result="failure"}`. The file is polled (metadata
//! every `poll`, content hash only when that changes), which follows editors that write a temp
//! file and rename it and Kubernetes ConfigMap symlink swaps alike, with no inotify subtleties.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use sha2::{Digest, Sha256};

use super::{load_file, Snapshot};
use crate::metrics;

/// Something that can take a validated snapshot into service.
pub trait ApplyConfig: Send + Sync + 'static {
    /// Swaps `snapshot` in; returns the new generation number, or why it was refused.
    fn apply(&self, snapshot: Snapshot) -> Result<u64, String>;
    /// The content hash of the snapshot in force.
    fn current_hash(&self) -> [u8; 32];
}

pub struct Reloader<A: ApplyConfig> {
    path: PathBuf,
    target: Arc<A>,
    poll: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Signal,
    FileChange,
}

/// Cheap change detector: the metadata of the file the path resolves to (symlinks followed).
/// The certificate watcher polls certificate files with it too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
}

pub fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        ino: m.ino(),
    })
}

impl<A: ApplyConfig> Reloader<A> {
    pub fn new(path: PathBuf, target: Arc<A>, poll: Duration) -> Self {
        Reloader { path, target, poll }
    }

    fn reload(&self, trigger: Trigger) {
        if trigger == Trigger::FileChange {
            // A touch, or a rewrite with the same bytes, is not a change.
            let Ok(bytes) = std::fs::read(&self.path) else {
                return;
            };
            let hash: [u8; 32] = Sha256::digest(&bytes).into();
            if hash == self.target.current_hash() {
                return;
            }
        }
        let why = match trigger {
            Trigger::Signal => "SIGHUP",
            Trigger::FileChange => "file change",
        };
        match load_file(&self.path) {
            Ok(snapshot) => match self.target.apply(snapshot) {
                Ok(generation) => {
                    metrics::config_reload(true, generation);
                    log::info!(
                        "configuration reloaded ({why}): {} is now generation {generation}",
                        self.path.display()
                    );
                }
                Err(reason) => {
                    metrics::config_reload(false, 0);
                    log::error!(
                        "configuration reload ({why}) refused, keeping the running configuration: {}: {reason}",
                        self.path.display()
                    );
                }
            },
            Err(e) => {
                metrics::config_reload(false, 0);
                log::error!(
                    "configuration reload ({why}) failed, keeping the running configuration: {e}"
                );
            }
        }
    }
}

#[async_trait]
impl<A: ApplyConfig> BackgroundService for Reloader<A> {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        // Replaces the SIG_IGN installed at the top of main: from here on SIGHUP means reload.
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                log::error!("cannot install the SIGHUP handler, reload on file change only: {e}");
                None
            }
        };
        let mut tick = tokio::time::interval(self.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = stamp(&self.path);
        loop {
            tokio::select! {
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    last = stamp(&self.path);
                    self.reload(Trigger::Signal);
                }
                _ = tick.tick() => {
                    let now = stamp(&self.path);
                    if now.is_some() && now != last {
                        last = now;
                        self.reload(Trigger::FileChange);
                    }
                }
            }
        }
    }
}
