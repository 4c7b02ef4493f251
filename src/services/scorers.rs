//! External AutoQA scorers (`iqs.autoqa.v1.ScorerService`, run elsewhere): each called
//! with a deadline, and left alone for a while after failing several times in a row (a
//! circuit breaker), so a slow or dead model server costs one deadline per call at most
//! and then nothing. A scorer that fails or is left alone makes its criteria N/A, with
//! the reason as the explanation.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::domain::autoqa::{AutoRating, AutoRule};
use crate::domain::rubric::RubricVersion;
use crate::proto::autoqa::{ScoreInteractionRequest, scorer_service_client::ScorerServiceClient};
use crate::proto::evaluation::Interaction;

/// Failures in a row after which a scorer is left alone.
pub const FAILURES_TO_OPEN: u32 = 5;
/// How long a scorer is left alone before one call tries it again.
pub const OPEN_FOR: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct Breaker {
    failures_in_a_row: u32,
    open_until: Option<Instant>,
}

pub struct ExternalScorers {
    timeout: Duration,
    channels: Mutex<HashMap<String, Channel>>,
    breakers: Mutex<HashMap<String, Breaker>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ExternalScorers {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            channels: Mutex::new(HashMap::new()),
            breakers: Mutex::new(HashMap::new()),
        }
    }

    fn channel(&self, endpoint: &str) -> Result<Channel, String> {
        if let Some(channel) = lock(&self.channels).get(endpoint) {
            return Ok(channel.clone());
        }
        let mut builder = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|err| format!("bad address: {err}"))?
            .connect_timeout(self.timeout);
        if endpoint.starts_with("https://") {
            builder = builder
                .tls_config(ClientTlsConfig::new().with_native_roots())
                .map_err(|err| format!("TLS: {err}"))?;
        }
        let channel = builder.connect_lazy();
        lock(&self.channels).insert(endpoint.to_owned(), channel.clone());
        Ok(channel)
    }

    /// Whether the scorer may be called now; an open breaker lets one call through once
    /// its time is up.
    fn allowed(&self, endpoint: &str) -> Result<(), String> {
        let mut breakers = lock(&self.breakers);
        let breaker = breakers.entry(endpoint.to_owned()).or_default();
        match breaker.open_until {
            Some(until) if Instant::now() < until => Err(format!(
                "failed {} times in a row; not asked again for {} s",
                breaker.failures_in_a_row,
                until.saturating_duration_since(Instant::now()).as_secs() + 1
            )),
            _ => Ok(()),
        }
    }

    fn record(&self, endpoint: &str, succeeded: bool) {
        let mut breakers = lock(&self.breakers);
        let breaker = breakers.entry(endpoint.to_owned()).or_default();
        if succeeded {
            *breaker = Breaker::default();
        } else {
            breaker.failures_in_a_row += 1;
            if breaker.failures_in_a_row >= FAILURES_TO_OPEN {
                breaker.open_until = Some(Instant::now() + OPEN_FOR);
            }
        }
    }

    /// The ratings of the criteria of `version` whose rule is external, by criterion key.
    pub async fn rate(
        &self,
        interaction: &Interaction,
        version: &RubricVersion,
        version_proto: &crate::proto::rubric::RubricVersion,
    ) -> HashMap<String, AutoRating> {
        let mut by_endpoint: HashMap<&str, Vec<&crate::domain::rubric::Criterion>> = HashMap::new();
        for criterion in &version.criteria {
            if let Some(AutoRule::External { endpoint }) = &criterion.auto {
                by_endpoint.entry(endpoint).or_default().push(criterion);
            }
        }
        let mut rated = HashMap::new();
        for (endpoint, criteria) in by_endpoint {
            let keys: Vec<String> = criteria.iter().map(|c| c.key.clone()).collect();
            match self.ask(endpoint, interaction, version_proto, &keys).await {
                Ok(answer) => {
                    for criterion in criteria {
                        let rating = answer
                            .iter()
                            .find(|rating| rating.criterion_key == criterion.key);
                        rated.insert(criterion.key.clone(), judged(endpoint, criterion, rating));
                    }
                }
                Err(reason) => {
                    for key in keys {
                        rated.insert(
                            key,
                            AutoRating {
                                value: None,
                                explanation: format!("external: the scorer at {endpoint} {reason}"),
                            },
                        );
                    }
                }
            }
        }
        rated
    }

    async fn ask(
        &self,
        endpoint: &str,
        interaction: &Interaction,
        version: &crate::proto::rubric::RubricVersion,
        keys: &[String],
    ) -> Result<Vec<crate::proto::evaluation::Rating>, String> {
        self.allowed(endpoint)?;
        let channel = self.channel(endpoint)?;
        let mut request = tonic::Request::new(ScoreInteractionRequest {
            interaction: Some(interaction.clone()),
            rubric_version: Some(version.clone()),
            criterion_keys: keys.to_vec(),
        });
        request.set_timeout(self.timeout);
        let answer = tokio::time::timeout(
            self.timeout,
            ScorerServiceClient::new(channel).score_interaction(request),
        )
        .await;
        let outcome = match answer {
            Ok(Ok(answer)) => Ok(answer.into_inner().ratings),
            // The channel ends a call past the deadline it was sent with as Cancelled.
            Ok(Err(status))
                if matches!(
                    status.code(),
                    tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
                ) =>
            {
                Err(format!(
                    "did not answer within {} ms",
                    self.timeout.as_millis()
                ))
            }
            Ok(Err(status)) => Err(format!("failed: {:?} {}", status.code(), status.message())),
            Err(_) => Err(format!(
                "did not answer within {} ms",
                self.timeout.as_millis()
            )),
        };
        self.record(endpoint, outcome.is_ok());
        outcome
    }
}

/// A scorer's rating of one criterion, kept only when it is on the criterion's scale.
fn judged(
    endpoint: &str,
    criterion: &crate::domain::rubric::Criterion,
    rating: Option<&crate::proto::evaluation::Rating>,
) -> AutoRating {
    let not_applicable = |why: String| AutoRating {
        value: None,
        explanation: format!("external: {why}"),
    };
    let Some(rating) = rating else {
        return not_applicable(format!("the scorer at {endpoint} did not rate it"));
    };
    let said = if rating.explanation.is_empty() {
        format!("rated by the scorer at {endpoint}")
    } else {
        rating.explanation.clone()
    };
    match rating.value {
        _ if rating.not_applicable => not_applicable(said),
        Some(value) if (criterion.scale_min..=criterion.scale_max).contains(&value) => AutoRating {
            value: Some(value),
            explanation: format!("external: {said}"),
        },
        Some(value) => not_applicable(format!(
            "the scorer at {endpoint} rated {value}, off the scale {}..{}",
            criterion.scale_min, criterion.scale_max
        )),
        None => not_applicable(format!("the scorer at {endpoint} gave no value")),
    }
}
