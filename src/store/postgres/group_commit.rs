//! Group commit of submissions. Each call is queued with a channel for its answer; a few
//! writer tasks each take every submission queued at that moment (at most
//! `MAX_GROUP`) and store them together (`SubmissionWriter::submit_group`). Nothing ever
//! waits for company: a writer that finds one submission stores it at once, so a lone
//! call costs what it did without grouping. Under load, the submissions that arrive while
//! every writer is busy form the next groups. A call is answered only after the commit
//! that stored it.

use std::sync::{Arc, OnceLock};

use tokio::sync::{Mutex, mpsc, oneshot};

use super::submissions::SubmissionWriter;
use crate::domain::{
    evaluation::{Evaluation, NewEvaluation},
    tenant::TenantId,
};
use crate::error::{Error, Result};

/// Submissions stored by one transaction at most.
const MAX_GROUP: usize = 64;
/// Transactions of grouped submissions in flight at once: as many as this machine has
/// cores, at least four. Groups form only when every writer is busy. One writer made the
/// largest groups and spent the least database CPU per submission under a saturating
/// closed loop (16 callers, 2 cores), but it made the write path one queue: at a moderate
/// open-loop rate each call waited for the group ahead of it. SubmitEvaluation p99 at 200
/// submissions/s was 96 ms with one writer, against 10 ms before grouping (BENCHMARKS.md
/// "Webhooks", two runs on a machine about twice as fast the first time). With four,
/// calls at a moderate rate are stored at once, as without grouping, and a saturating
/// load still forms groups.
fn writers() -> usize {
    std::thread::available_parallelism().map_or(4, |cores| cores.get().max(4))
}

struct Queued {
    tenant: TenantId,
    submission: NewEvaluation,
    answer: oneshot::Sender<Result<Evaluation>>,
}

#[derive(Debug, Clone)]
pub(super) struct SubmissionQueue {
    writer: SubmissionWriter,
    /// Started on the first submission; the writer tasks end with the last store.
    queue: Arc<OnceLock<mpsc::UnboundedSender<Queued>>>,
}

impl SubmissionQueue {
    pub(super) fn new(writer: SubmissionWriter) -> Self {
        Self {
            writer,
            queue: Arc::default(),
        }
    }

    pub(super) fn writer(&self) -> &SubmissionWriter {
        &self.writer
    }

    /// Stores `submission`, with whatever other submissions are waiting, and answers once
    /// the transaction holding it has committed.
    pub(super) async fn submit(
        &self,
        tenant: TenantId,
        submission: NewEvaluation,
    ) -> Result<Evaluation> {
        let queue = self.queue.get_or_init(|| {
            let (queue, queued) = mpsc::unbounded_channel();
            let queued = Arc::new(Mutex::new(queued));
            for _ in 0..writers() {
                tokio::spawn(write_groups(self.writer.clone(), queued.clone()));
            }
            queue
        });
        let (answer, answered) = oneshot::channel();
        queue
            .send(Queued {
                tenant,
                submission,
                answer,
            })
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

fn stopped() -> Error {
    Error::Internal("the submission writer has stopped".into())
}

async fn write_groups(
    writer: SubmissionWriter,
    queued: Arc<Mutex<mpsc::UnboundedReceiver<Queued>>>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    loop {
        if queued.lock().await.recv_many(&mut group, MAX_GROUP).await == 0 {
            return;
        }
        // A caller that went away (its deadline passed, or it was cancelled) while
        // queued is not written: its call answered that nothing was stored.
        group.retain(|queued: &Queued| !queued.answer.is_closed());
        if group.is_empty() {
            continue;
        }
        if group.len() == 1 {
            // Alone, a call that goes away mid-write rolls its transaction back, as a
            // call did before grouping.
            let Queued {
                tenant,
                submission,
                mut answer,
            } = group.pop().expect("one submission");
            tokio::select! {
                outcome = writer.submit_alone(tenant, submission, || true) => {
                    let _ = answer.send(outcome);
                }
                () = answer.closed() => {}
            }
            continue;
        }
        let (submissions, answers): (Vec<_>, Vec<_>) = group
            .drain(..)
            .map(|queued| ((queued.tenant, queued.submission), queued.answer))
            .unzip();
        let span = tracing::debug_span!("db.submit_group", size = submissions.len());
        let waiting = |index: usize| !answers[index].is_closed();
        let outcomes =
            tracing::Instrument::instrument(writer.submit_group(submissions, &waiting), span).await;
        for (answer, outcome) in answers.into_iter().zip(outcomes) {
            // A caller that went away after its submission was committed is not waiting:
            // what was stored stays stored, as for a call whose answer was lost (a retry
            // with its request id answers the stored evaluation).
            let _ = answer.send(outcome);
        }
    }
}
