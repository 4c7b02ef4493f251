//! AutoQA's automatic mode: every interaction upserted with messages is auto-scored
//! against the latest version of each of its tenant's rubrics that asks for it
//! (`auto_score`), through `AutoScoreInteraction`, so the evaluation is the same as a
//! caller would get: one per transcript, revised when the transcript changes.
//!
//! The worker reads interactions in update order from a cursor kept in the store, and
//! reads only up to `SETTLE` ago, so that an upsert whose transaction is still
//! committing is not passed over. An interaction is scored at least once; scoring is
//! idempotent, so replicas running the worker side by side, or a worker restarted
//! before saving its cursor, score nothing twice.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use tokio::sync::watch;
use tonic::Request;

use crate::auth::Principal;
use crate::domain::access::Role;
use crate::error::Result;
use crate::projector::Failures;
use crate::proto::evaluation::{
    AutoScoreInteractionRequest, evaluation_service_server::EvaluationService,
};
use crate::services::evaluation::EvaluationApi;
use crate::store::{AutoQaCursor, AutoQaReads};

/// How long after an interaction's update time it is read.
pub const SETTLE: Duration = Duration::from_millis(250);
/// How often the worker looks for upserts when the last look found none.
const POLL: Duration = Duration::from_millis(100);
/// Interactions read per pass.
const BATCH: u32 = 500;
/// Interactions scored at once: each is a few round trips to the database, so one at a
/// time falls behind a helpdesk's upserts.
const IN_FLIGHT: usize = 8;

pub struct AutoQaWorker {
    pub store: Arc<dyn AutoQaReads>,
    pub api: Arc<EvaluationApi>,
}

impl AutoQaWorker {
    pub async fn run(self, mut stopped: watch::Receiver<bool>) {
        // A store that is busy or down for a moment is said at debug level, as the
        // projector says it.
        let mut failures = Failures::default();
        loop {
            if *stopped.borrow() {
                return;
            }
            let scored = match self.pass().await {
                Ok(scored) => {
                    failures.ended("autoqa reads upserted interactions again");
                    scored
                }
                Err(err) => {
                    failures.failed(&err, "autoqa cannot read upserted interactions; retrying");
                    0
                }
            };
            if scored > 0 {
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                _ = stopped.changed() => {}
            }
        }
    }

    /// Scores the interactions upserted since the cursor; how many it read.
    async fn pass(&self) -> Result<usize> {
        let settled = Utc::now() - SETTLE;
        let rubrics = self.store.auto_scored_rubrics().await?;
        let cursor = self.store.autoqa_cursor().await?;
        if rubrics.is_empty() {
            // Nothing asks for scoring: what is upserted until something does is not
            // scored later.
            if cursor.time < settled - chrono::Duration::seconds(1) {
                self.store
                    .save_autoqa_cursor(AutoQaCursor {
                        time: settled,
                        tenant: cursor.tenant,
                        interaction_id: cursor.interaction_id,
                    })
                    .await?;
            }
            return Ok(0);
        }
        let changed = self
            .store
            .interactions_changed(cursor, settled, BATCH)
            .await?;
        use futures_util::StreamExt as _;
        let work: Vec<_> = changed
            .iter()
            .flat_map(|interaction| {
                rubrics
                    .iter()
                    .filter(|(tenant, ..)| *tenant == interaction.tenant)
                    .map(|(tenant, rubric_id, version)| {
                        self.score(*tenant, interaction.interaction_id, *rubric_id, *version)
                    })
            })
            .collect();
        futures_util::stream::iter(work)
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<()>>()
            .await;
        // The cursor moves only past a batch scored whole.
        if let Some(last) = changed.last() {
            self.store.save_autoqa_cursor(*last).await?;
        }
        Ok(changed.len())
    }

    async fn score(
        &self,
        tenant: crate::domain::tenant::TenantId,
        interaction_id: uuid::Uuid,
        rubric_id: uuid::Uuid,
        version: u32,
    ) {
        let mut request = Request::new(AutoScoreInteractionRequest {
            interaction_id: interaction_id.to_string(),
            rubric_id: rubric_id.to_string(),
            rubric_version: version,
        });
        request.extensions_mut().insert(Principal {
            tenant,
            role: Role::Service,
            agent_id: None,
            reviewer_id: None,
            key_id: None,
        });
        if let Err(status) = self.api.auto_score_interaction(request).await {
            // A rubric AutoQA cannot rate, say: the interaction is left to people.
            tracing::debug!(
                %interaction_id,
                %rubric_id,
                code = ?status.code(),
                message = status.message(),
                "autoqa did not score an interaction"
            );
        }
    }
}
