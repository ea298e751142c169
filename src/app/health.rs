//! The background service that runs the active health checks of the current upstream pools.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::state::SharedState;

/// Drives the health checks of the current generation's pools.
pub struct HealthChecker {
    state: Arc<SharedState>,
}

impl HealthChecker {
    pub fn new(state: Arc<SharedState>) -> Self {
        HealthChecker { state }
    }
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
                _ = tick.tick() => {
                    let generation = self.state.load();
                    let checks = generation.upstreams.values().map(|p| p.check_if_due());
                    futures::future::join_all(checks).await;
                }
            }
        }
    }
}
