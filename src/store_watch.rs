//! Watches the store while the server runs: health follows it (every service needs the
//! database, so all turn NOT_SERVING while it cannot answer, and SERVING again once it
//! does), and the projector's lag and the pool's connections become metrics.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use opentelemetry::{KeyValue, global};
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::config::{ServiceKind, ServiceSet};
use crate::services::grpc_service_names;
use crate::store::Store;

pub struct StoreWatch {
    pub store: Arc<dyn Store>,
    pub health: HealthReporter,
    pub services: ServiceSet,
    pub interval: Duration,
}

/// Connections in use and idle, read whenever metrics are collected.
pub fn observe_pool(store: Arc<dyn Store>) {
    // Registered with the meter provider, which keeps calling it: the handle itself
    // is not needed.
    let _gauge = global::meter("iqs")
        .u64_observable_gauge("iqs.db.connections")
        .with_description(
            "Connections of the database pool, by state (used, idle), and its maximum",
        )
        .with_callback(move |observer| {
            let usage = store.pool_usage();
            observer.observe(
                u64::from(usage.open.saturating_sub(usage.idle)),
                &[KeyValue::new("state", "used")],
            );
            observer.observe(u64::from(usage.idle), &[KeyValue::new("state", "idle")]);
            observer.observe(u64::from(usage.max), &[KeyValue::new("state", "max")]);
        })
        .build();
}

impl StoreWatch {
    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let meter = global::meter("iqs");
        let lag_events = meter
            .u64_gauge("iqs.projector.lag.events")
            .with_description("Outbox events not yet applied to the rollups")
            .build();
        let lag_seconds = meter
            .f64_gauge("iqs.projector.lag.seconds")
            .with_unit("s")
            .with_description("Age of the oldest outbox event not yet applied")
            .build();
        let projects = self.services.contains(ServiceKind::Analytics);
        let mut serving = true;
        loop {
            let answered = matches!(
                tokio::time::timeout(
                    self.interval.max(Duration::from_millis(100)),
                    self.store.ping()
                )
                .await,
                Ok(Ok(()))
            );
            if answered != serving {
                serving = answered;
                if serving {
                    tracing::info!("the database answers again: serving");
                } else {
                    tracing::warn!(
                        "the database does not answer: health NOT_SERVING until it does"
                    );
                }
                self.set_all(if serving {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                })
                .await;
            }
            if serving && projects {
                if let Ok(pending) = self.store.pending_events().await {
                    lag_events.record(pending, &[]);
                }
                if let Ok(as_of) = self.store.as_of().await {
                    let seconds = (Utc::now() - as_of).num_milliseconds().max(0) as f64 / 1000.0;
                    lag_seconds.record(seconds, &[]);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = stop.changed() => return,
            }
        }
    }

    async fn set_all(&self, status: ServingStatus) {
        self.health.set_service_status("", status).await;
        for name in self.services.iter().flat_map(grpc_service_names) {
            self.health.set_service_status(*name, status).await;
        }
    }
}
