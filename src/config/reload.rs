//! Hot reload: SIGHUP, or an edit of the file, swaps in a new snapshot without a restart.
//!
//! The new file is validated in full first; a file that fails keeps the running configuration
//! and counts `tollgate_config_reloads_total{result="failure"}`. The file is polled (metadata
//! every `poll`, content hash only when that changes), which follows editors that write a temp
//! file and rename it and Kubernetes ConfigMap symlink swaps alike, with no inotify subtleties.
//!
//! The keys file (`keys_file`) is polled the same way. When it alone changed (an edit of it, or
//! a SIGHUP while the config file's bytes are those in force), only the key table is rebuilt and
//! the rest of the snapshot is kept; the old table is dropped once the new one is in force, so
//! at most two tables are ever held.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use sha2::{Digest, Sha256};

use super::{load_file, reload_keys, Snapshot};
use crate::metrics;

/// Something that can take a validated snapshot into service.
pub trait ApplyConfig: Send + Sync + 'static {
    /// Swaps `snapshot` in; returns the new generation number, or why it was refused.
    fn apply(&self, snapshot: Snapshot) -> Result<u64, String>;
    /// The content hash of the snapshot in force.
    fn current_hash(&self) -> [u8; 32];
    /// The snapshot in force.
    fn current_snapshot(&self) -> Arc<Snapshot>;
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

    /// Whether the config file's bytes are those in force.
    fn config_unchanged(&self) -> bool {
        std::fs::read(&self.path).is_ok_and(|bytes| {
            let hash: [u8; 32] = Sha256::digest(&bytes).into();
            hash == self.target.current_hash()
        })
    }

    fn reload(&self, trigger: Trigger) {
        // A touch, or a rewrite with the same bytes, is not a change; a SIGHUP then re-reads
        // the keys file alone.
        if self.config_unchanged() {
            if trigger == Trigger::Signal {
                self.reload_keys(trigger);
            }
            return;
        }
        let why = match trigger {
            Trigger::Signal => "SIGHUP",
            Trigger::FileChange => "file change",
        };
        self.put_in_force(why, load_file(&self.path));
    }

    /// The keys file of the snapshot in force.
    fn current_keys_file(&self) -> Option<PathBuf> {
        let current = self.target.current_snapshot();
        current.keys_file.as_ref().map(|f| f.path.clone())
    }

    /// Rebuilds the key table alone. On a file change, a keys file with the bytes in force
    /// is no change.
    fn reload_keys(&self, trigger: Trigger) {
        let current = self.target.current_snapshot();
        if current.keys_file.is_none() {
            // A SIGHUP without a keys file: the whole config, as ever.
            drop(current);
            return self.put_in_force("SIGHUP", load_file(&self.path));
        }
        let next = reload_keys(&current);
        let unchanged = matches!(&next, Ok(Some(n)) if n.keys_file == current.keys_file);
        // The old table stays referenced by the generation in force only.
        drop(current);
        if unchanged && trigger == Trigger::FileChange {
            return;
        }
        match next {
            Ok(Some(snapshot)) => {
                let why = match trigger {
                    Trigger::Signal => "SIGHUP, keys file",
                    Trigger::FileChange => "keys file change",
                };
                self.put_in_force(why, Ok(snapshot));
            }
            Ok(None) => {}
            Err(e) => self.put_in_force("keys file", Err(e)),
        }
    }

    fn put_in_force(&self, why: &str, loaded: Result<Snapshot, super::ConfigError>) {
        match loaded {
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
        let mut keys_path = self.current_keys_file();
        let mut last_keys = keys_path.as_deref().and_then(stamp);
        loop {
            tokio::select! {
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    last = stamp(&self.path);
                    last_keys = keys_path.as_deref().and_then(stamp);
                    self.reload(Trigger::Signal);
                }
                _ = tick.tick() => {
                    let now = stamp(&self.path);
                    let now_keys = keys_path.as_deref().and_then(stamp);
                    if now.is_some() && now != last {
                        last = now;
                        last_keys = now_keys;
                        self.reload(Trigger::FileChange);
                    } else if now_keys.is_some() && now_keys != last_keys {
                        last_keys = now_keys;
                        self.reload_keys(Trigger::FileChange);
                    }
                }
            }
            // A reload may have named another keys file.
            let path = self.current_keys_file();
            if path != keys_path {
                last_keys = path.as_deref().and_then(stamp);
                keys_path = path;
            }
        }
    }
}
