//! iqs.integration.v1.WebhookService over a WebhookStore, and the rendering of event
//! bodies (the resource in proto3 JSON, as the Connect API answers it).

use std::sync::Arc;

use prost::Message;
use tonic::{Request, Response, Status};

use super::convert::{dispute_to_proto, evaluation_to_proto, timestamp};
use crate::auth::principal;
use crate::connect::procedures::{Procedures, to_json};
use crate::domain::{
    evaluation::fingerprint_of,
    paging::PageTokens,
    validation::Violations,
    webhook::{self, Delivery, DeliveryState, SECRET_BYTES, Webhook, WebhookState},
};
use crate::error::{Error, Result};
use crate::proto::integration::{self as pb, webhook_service_server::WebhookService};
use crate::store::{NewWebhook, WebhookRenderer, WebhookStore, WebhookSubject};

pub struct WebhookApi {
    store: Arc<dyn WebhookStore>,
    tokens: Arc<PageTokens>,
    allow_private_targets: bool,
}

impl WebhookApi {
    pub fn new(
        store: Arc<dyn WebhookStore>,
        tokens: Arc<PageTokens>,
        allow_private_targets: bool,
    ) -> Self {
        Self {
            store,
            tokens,
            allow_private_targets,
        }
    }
}

fn webhook_to_proto(webhook: Webhook, secret: String) -> pb::Webhook {
    pb::Webhook {
        id: webhook.id.to_string(),
        url: webhook.url,
        event_types: webhook
            .event_types
            .iter()
            .map(|kind| kind.as_str().to_owned())
            .collect(),
        description: webhook.description,
        secret,
        state: match webhook.state {
            WebhookState::Active => pb::WebhookState::Active,
            WebhookState::Disabled => pb::WebhookState::Disabled,
        } as i32,
        create_time: Some(timestamp(webhook.create_time)),
        disabled_reason: webhook.disabled_reason,
    }
}

fn delivery_to_proto(delivery: Delivery) -> pb::WebhookDelivery {
    pb::WebhookDelivery {
        id: delivery.id.to_string(),
        webhook_id: delivery.webhook_id.to_string(),
        event_id: delivery.event_id,
        event_type: delivery.event_type,
        state: match delivery.state {
            DeliveryState::Pending => pb::WebhookDeliveryState::Pending,
            DeliveryState::Delivered => pb::WebhookDeliveryState::Delivered,
            DeliveryState::Failed => pb::WebhookDeliveryState::Failed,
        } as i32,
        attempts: i32::try_from(delivery.attempts).unwrap_or(i32::MAX),
        last_status_code: delivery.last_status.map_or(0, i32::from),
        last_latency_ms: delivery
            .last_latency
            .map_or(0.0, |latency| latency.as_secs_f64() * 1e3),
        last_error: delivery.last_error,
        create_time: Some(timestamp(delivery.create_time)),
        last_attempt_time: delivery.last_attempt_time.map(timestamp),
        next_attempt_time: (delivery.state == DeliveryState::Pending)
            .then(|| timestamp(delivery.next_attempt_time)),
        finish_time: delivery.finish_time.map(timestamp),
    }
}

/// A new signing secret.
fn new_secret() -> Result<String> {
    let mut key = [0u8; SECRET_BYTES];
    getrandom::fill(&mut key).map_err(|err| Error::Internal(format!("no randomness: {err}")))?;
    Ok(webhook::secret_of(&key))
}

#[tonic::async_trait]
impl WebhookService for WebhookApi {
    async fn create_webhook(
        &self,
        request: Request<pb::CreateWebhookRequest>,
    ) -> Result<Response<pb::Webhook>, Status> {
        let caller = principal(&request)?.clone();
        let request = request.into_inner();
        let mut violations = Violations::new();
        violations.check_request_id("request_id", &request.request_id);
        let input = match request.webhook {
            Some(wanted) => webhook::check_webhook(
                wanted.url.trim(),
                &wanted.event_types,
                &wanted.description,
                self.allow_private_targets,
                &mut violations,
            ),
            None => {
                violations.add("webhook", "is required");
                None
            }
        };
        let input = violations.finish_with(input)?;
        let new = NewWebhook {
            request_id: Some(request.request_id).filter(|id| !id.is_empty()),
            fingerprint: fingerprint_of(&input),
            input,
            secret: new_secret()?,
        };
        let (webhook, secret) = self.store.create_webhook(caller.tenant, new).await?;
        Ok(Response::new(webhook_to_proto(webhook, secret)))
    }

    async fn list_webhooks(
        &self,
        request: Request<pb::ListWebhooksRequest>,
    ) -> Result<Response<pb::ListWebhooksResponse>, Status> {
        let caller = principal(&request)?.clone();
        let request = request.into_inner();
        let mut violations = Violations::new();
        let filters = "webhooks";
        let (limit, before) = self.tokens.id_page(
            caller.tenant,
            request.page_size,
            &request.page_token,
            filters,
            &mut violations,
        );
        violations.finish(())?;
        let webhooks = self
            .store
            .list_webhooks(caller.tenant, before, limit + 1)
            .await?;
        let (webhooks, next_page_token) =
            self.tokens
                .finish_page(caller.tenant, webhooks, limit, filters, |last| {
                    last.id.to_string()
                });
        Ok(Response::new(pb::ListWebhooksResponse {
            webhooks: webhooks
                .into_iter()
                .map(|webhook| webhook_to_proto(webhook, String::new()))
                .collect(),
            next_page_token,
        }))
    }

    async fn delete_webhook(
        &self,
        request: Request<pb::DeleteWebhookRequest>,
    ) -> Result<Response<pb::Webhook>, Status> {
        let caller = principal(&request)?.clone();
        let mut violations = Violations::new();
        let id = violations.require_uuid("id", &request.get_ref().id);
        let id = violations.finish_with(id)?;
        let deleted = self.store.delete_webhook(caller.tenant, id).await?;
        Ok(Response::new(webhook_to_proto(deleted, String::new())))
    }

    async fn list_webhook_deliveries(
        &self,
        request: Request<pb::ListWebhookDeliveriesRequest>,
    ) -> Result<Response<pb::ListWebhookDeliveriesResponse>, Status> {
        let caller = principal(&request)?.clone();
        let request = request.into_inner();
        let mut violations = Violations::new();
        let webhook_id = violations.require_uuid("webhook_id", &request.webhook_id);
        let filters = format!("deliveries;{}", request.webhook_id);
        let (limit, before) = self.tokens.id_page(
            caller.tenant,
            request.page_size,
            &request.page_token,
            &filters,
            &mut violations,
        );
        let webhook_id = violations.finish_with(webhook_id)?;
        let deliveries = self
            .store
            .list_webhook_deliveries(caller.tenant, webhook_id, before, limit + 1)
            .await?;
        let (deliveries, next_page_token) =
            self.tokens
                .finish_page(caller.tenant, deliveries, limit, &filters, |last| {
                    last.id.to_string()
                });
        Ok(Response::new(pb::ListWebhookDeliveriesResponse {
            deliveries: deliveries.into_iter().map(delivery_to_proto).collect(),
            next_page_token,
        }))
    }
}

/// Renders a resource as the Connect API answers it: proto3 JSON with every field.
pub struct ProtoJsonRenderer {
    procedures: Procedures,
}

impl Default for ProtoJsonRenderer {
    fn default() -> Self {
        Self {
            procedures: Procedures::served(),
        }
    }
}

impl ProtoJsonRenderer {
    fn render(&self, full_name: &str, encoded: &[u8]) -> Result<Box<serde_json::value::RawValue>> {
        let descriptor = self
            .procedures
            .message(full_name)
            .ok_or_else(|| Error::Internal(format!("no descriptor of {full_name}")))?;
        let json = to_json(&descriptor, encoded).map_err(Error::Internal)?;
        serde_json::value::to_raw_value(&json)
            .map_err(|err| Error::Internal(format!("cannot encode JSON: {err}")))
    }
}

impl WebhookRenderer for ProtoJsonRenderer {
    fn data(&self, subject: &WebhookSubject) -> Result<Box<serde_json::value::RawValue>> {
        match subject {
            WebhookSubject::Evaluation(evaluation) => self.render(
                "iqs.evaluation.v1.Evaluation",
                &evaluation_to_proto(evaluation.clone()).encode_to_vec(),
            ),
            WebhookSubject::Dispute(dispute) => self.render(
                "iqs.evaluation.v1.Dispute",
                &dispute_to_proto(dispute.clone()).encode_to_vec(),
            ),
        }
    }
}
