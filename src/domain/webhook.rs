//! Webhooks: event types, what a subscription may point at, Standard Webhooks signing,
//! the retry schedule and the body of an event. No IO: resolving a host and sending are
//! the delivery worker's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use super::validation::Violations;

/// Prefix of a signing secret, as the Standard Webhooks libraries expect it.
pub const SECRET_PREFIX: &str = "whsec_";
/// Bytes of key behind a secret (the specification asks for 24 to 64).
pub const SECRET_BYTES: usize = 32;
pub const MAX_URL_BYTES: usize = 2048;
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
/// Subscriptions per tenant: each costs a delivery per event.
pub const MAX_WEBHOOKS_PER_TENANT: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "evaluation.created")]
    EvaluationCreated,
    #[serde(rename = "evaluation.revised")]
    EvaluationRevised,
    #[serde(rename = "evaluation.deleted")]
    EvaluationDeleted,
    #[serde(rename = "dispute.opened")]
    DisputeOpened,
    #[serde(rename = "dispute.resolved")]
    DisputeResolved,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        Self::EvaluationCreated,
        Self::EvaluationRevised,
        Self::EvaluationDeleted,
        Self::DisputeOpened,
        Self::DisputeResolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EvaluationCreated => "evaluation.created",
            Self::EvaluationRevised => "evaluation.revised",
            Self::EvaluationDeleted => "evaluation.deleted",
            Self::DisputeOpened => "dispute.opened",
            Self::DisputeResolved => "dispute.resolved",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == value)
    }

    /// The event an evaluation outbox event stands for (`submitted`, `revised`,
    /// `deleted`).
    pub fn of_outbox(event_type: &str) -> Option<Self> {
        match event_type {
            "submitted" => Some(Self::EvaluationCreated),
            "revised" => Some(Self::EvaluationRevised),
            "deleted" => Some(Self::EvaluationDeleted),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookState {
    Active,
    Disabled,
}

impl WebhookState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "active" => Some(Self::Active),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }
}

/// A subscription as stored (its secret apart).
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    pub event_types: Vec<EventType>,
    pub description: String,
    pub state: WebhookState,
    pub disabled_reason: String,
    pub create_time: DateTime<Utc>,
}

/// A subscription checked for content, to be stored with its new secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookInput {
    pub url: String,
    pub event_types: Vec<EventType>,
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One event owed to one subscription, with what its attempts so far came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub event_id: String,
    pub event_type: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_latency: Option<Duration>,
    pub last_error: String,
    pub create_time: DateTime<Utc>,
    pub last_attempt_time: Option<DateTime<Utc>>,
    pub next_attempt_time: DateTime<Utc>,
    pub finish_time: Option<DateTime<Utc>>,
}

/// Checks a subscription; `allow_private` lets it use plain http and loopback or private
/// addresses (`webhook_allow_private_targets`).
pub fn check_webhook(
    url: &str,
    event_types: &[String],
    description: &str,
    allow_private: bool,
    violations: &mut Violations,
) -> Option<WebhookInput> {
    let before = violations.as_slice().len();
    if let Err(problem) = check_url(url, allow_private) {
        violations.add("webhook.url", problem);
    }
    let mut kinds = Vec::new();
    if event_types.is_empty() {
        violations.add(
            "webhook.event_types",
            format!("name at least one of {}", all_event_types()),
        );
    }
    for (index, name) in event_types.iter().enumerate() {
        match EventType::parse(name) {
            Some(kind) if kinds.contains(&kind) => violations.add(
                format!("webhook.event_types[{index}]"),
                format!("{name:?} is named twice"),
            ),
            Some(kind) => kinds.push(kind),
            None => violations.add(
                format!("webhook.event_types[{index}]"),
                format!(
                    "{name:?} is not an event type: one of {}",
                    all_event_types()
                ),
            ),
        }
    }
    violations.check_length("webhook.description", description, 0, MAX_DESCRIPTION_CHARS);
    (violations.as_slice().len() == before).then(|| WebhookInput {
        url: url.to_owned(),
        event_types: kinds,
        description: description.to_owned(),
    })
}

fn all_event_types() -> String {
    EventType::ALL
        .iter()
        .map(|kind| kind.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether deliveries may be sent to `url`, as far as it can be told without resolving
/// its host (the worker checks the addresses the host resolves to on every attempt).
pub fn check_url(url: &str, allow_private: bool) -> Result<url::Url, String> {
    if url.len() > MAX_URL_BYTES {
        return Err(format!("must be at most {MAX_URL_BYTES} bytes"));
    }
    if url.chars().any(char::is_control) {
        return Err("must not contain control characters (NUL, newlines, …)".to_owned());
    }
    let parsed = url::Url::parse(url).map_err(|err| format!("is not a URL: {err}"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_private => {}
        "http" => {
            return Err(
                "must be https (plain http only where the server allows private targets)"
                    .to_owned(),
            );
        }
        other => return Err(format!("must be https, not {other}")),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry a user name or password".to_owned());
    }
    if parsed.fragment().is_some() {
        return Err("must not have a fragment".to_owned());
    }
    match parsed.host() {
        None => return Err("must name a host".to_owned()),
        Some(url::Host::Ipv4(ip)) => check_address(IpAddr::V4(ip), allow_private)?,
        Some(url::Host::Ipv6(ip)) => check_address(IpAddr::V6(ip), allow_private)?,
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if !allow_private
                && (name == "localhost"
                    || name.ends_with(".localhost")
                    || name.ends_with(".internal")
                    || name.ends_with(".local"))
            {
                return Err(format!("{name} is a private host name"));
            }
        }
    }
    Ok(parsed)
}

/// Refuses an address a delivery must not reach: loopback, private, link-local (the
/// cloud metadata services live there), shared, unspecified, multicast or reserved.
pub fn check_address(address: IpAddr, allow_private: bool) -> Result<(), String> {
    match forbidden_kind(address) {
        Some(kind) if !allow_private || kind == "unspecified" || kind == "multicast" => Err(
            format!("{address} is a {kind} address, which webhooks may not reach"),
        ),
        _ => Ok(()),
    }
}

fn forbidden_kind(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(ip) => forbidden_v4(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(ip),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast() || a >= 240 || a == 0 {
        Some("reserved")
    } else if a == 192 && b == 0 && ip.octets()[2] == 0 {
        Some("IETF protocol")
    } else if a == 198 && (b == 18 || b == 19) {
        Some("benchmarking")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if first & 0xfe00 == 0xfc00 {
        Some("unique local (private)")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if first == 0x64 && ip.segments()[1] == 0xff9b {
        // NAT64 reaches IPv4 addresses, private ones included.
        Some("NAT64")
    } else {
        None
    }
}

/// A new signing secret: `whsec_` and the base64 of `key`.
pub fn secret_of(key: &[u8]) -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The key behind a secret.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
        .ok()
}

/// The `webhook-signature` header: `v1,` and the base64 HMAC-SHA256 of
/// `{id}.{timestamp}.{body}` under the secret's key.
pub fn signature(key: &[u8], event_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(event_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The body of an event: `{"id", "type", "timestamp", "data"}`, `data` being the proto3
/// JSON of the resource as given.
pub fn event_body(
    event_id: &str,
    event_type: EventType,
    time: DateTime<Utc>,
    data: &serde_json::value::RawValue,
) -> String {
    #[derive(Serialize)]
    struct Body<'a> {
        id: &'a str,
        #[serde(rename = "type")]
        event_type: &'a str,
        timestamp: String,
        data: &'a serde_json::value::RawValue,
    }
    serde_json::to_string(&Body {
        id: event_id,
        event_type: event_type.as_str(),
        timestamp: time.to_rfc3339_opts(SecondsFormat::Micros, true),
        data,
    })
    .expect("an event body serializes")
}

/// How the retries of a failed delivery are spaced.
#[derive(Debug, Clone, Copy)]
pub struct RetrySchedule {
    /// Before the second attempt; doubled for each one after.
    pub first: Duration,
    /// The longest wait between two attempts.
    pub longest: Duration,
    /// After this long since the event, a failed attempt is the last.
    pub give_up_after: Duration,
}

impl RetrySchedule {
    /// When to try again after `attempts` failed attempts, or `None` to give up. `jitter`
    /// in [0, 1) spreads retries of many deliveries over ±25% of the wait.
    pub fn next_attempt(
        &self,
        attempts: u32,
        created: DateTime<Utc>,
        now: DateTime<Utc>,
        jitter: f64,
    ) -> Option<DateTime<Utc>> {
        let doublings = attempts.saturating_sub(1).min(30);
        let wait = self
            .first
            .saturating_mul(1u32 << doublings)
            .min(self.longest)
            .mul_f64(0.75 + 0.5 * jitter.clamp(0.0, 1.0));
        let next = now + chrono::Duration::from_std(wait).ok()?;
        let deadline = created + chrono::Duration::from_std(self.give_up_after).ok()?;
        (next <= deadline).then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification's reference libraries.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_secret_round_trips_to_its_key() {
        let key = [7u8; SECRET_BYTES];
        let secret = secret_of(&key);
        assert!(secret.starts_with("whsec_"));
        assert_eq!(secret_key(&secret).unwrap(), key);
    }

    #[test]
    fn private_loopback_link_local_and_metadata_addresses_are_refused_unless_allowed() {
        for address in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "224.0.0.1",
        ] {
            let ip: IpAddr = address.parse().unwrap();
            assert!(check_address(ip, false).is_err(), "{address}");
        }
        assert!(check_address("127.0.0.1".parse().unwrap(), true).is_ok());
        assert!(check_address("0.0.0.0".parse().unwrap(), true).is_err());
        for address in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"] {
            assert!(check_address(address.parse().unwrap(), false).is_ok());
        }
    }

    #[test]
    fn urls_must_be_https_without_credentials_unless_private_targets_are_allowed() {
        assert!(check_url("https://hooks.example.com/iqs", false).is_ok());
        assert!(check_url("http://hooks.example.com/iqs", false).is_err());
        assert!(check_url("http://127.0.0.1:8080/iqs", true).is_ok());
        assert!(check_url("https://127.0.0.1/iqs", false).is_err());
        assert!(check_url("https://[::1]/iqs", false).is_err());
        assert!(check_url("https://localhost/iqs", false).is_err());
        assert!(check_url("https://user:pw@hooks.example.com/", false).is_err());
        assert!(check_url("ftp://hooks.example.com/", true).is_err());
        assert!(check_url("hooks.example.com", false).is_err());
        assert!(check_url("https://hooks.example.com/\0x", false).is_err());
        assert!(check_url("https://hooks.example.com/\r\nx", false).is_err());
    }

    #[test]
    fn every_violated_field_of_a_subscription_is_named() {
        let mut violations = Violations::new();
        let checked = check_webhook(
            "http://10.0.0.1/x",
            &[
                "evaluation.created".into(),
                "nope".into(),
                "evaluation.created".into(),
            ],
            &"d".repeat(MAX_DESCRIPTION_CHARS + 1),
            false,
            &mut violations,
        );
        assert!(checked.is_none());
        let fields: Vec<&str> = violations
            .as_slice()
            .iter()
            .map(|violation| violation.field.as_str())
            .collect();
        assert_eq!(
            fields,
            [
                "webhook.url",
                "webhook.event_types[1]",
                "webhook.event_types[2]",
                "webhook.description"
            ]
        );
    }

    #[test]
    fn retries_double_up_to_the_longest_wait_and_stop_after_the_period() {
        let schedule = RetrySchedule {
            first: Duration::from_secs(5),
            longest: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(3 * 86_400),
        };
        let created = Utc::now();
        let wait = |attempts, jitter| {
            (schedule
                .next_attempt(attempts, created, created, jitter)
                .unwrap()
                - created)
                .num_milliseconds()
        };
        assert_eq!(wait(1, 0.5), 5_000);
        assert_eq!(wait(2, 0.5), 10_000);
        assert_eq!(wait(3, 0.5), 20_000);
        assert_eq!(wait(20, 0.5), 3_600_000);
        assert_eq!(wait(1, 0.0), 3_750);
        assert_eq!(wait(1, 0.999_999), 6_249);
        let late = created + chrono::Duration::days(3);
        assert_eq!(schedule.next_attempt(40, created, late, 0.5), None);
    }

    #[test]
    fn an_event_body_carries_id_type_timestamp_and_the_resource() {
        let data = serde_json::value::RawValue::from_string(r#"{"id":"e1"}"#.into()).unwrap();
        let time = DateTime::parse_from_rfc3339("2026-11-30T10:00:00.5Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            event_body("msg_1", EventType::EvaluationCreated, time, &data),
            r#"{"id":"msg_1","type":"evaluation.created","timestamp":"2026-11-30T10:00:00.500000Z","data":{"id":"e1"}}"#
        );
    }
}
