//! Support interactions (tickets, chats, calls): what reviews are about.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::validation::Violations;

pub const MAX_MESSAGES: usize = 2_000;
pub const MAX_TRANSCRIPT_BYTES: usize = 512 * 1024;
pub const MAX_ATTRIBUTES: usize = 64;
pub const MAX_ATTRIBUTE_KEY_LEN: usize = 64;
pub const MAX_ATTRIBUTE_VALUE_CHARS: usize = 1_024;
/// Ids and labels from helpdesks (`source`, `external_id`, `agent_id`, `team_id`,
/// `reviewer_id`, `channel`, `region`) are opaque: any UTF-8 of 1..256 bytes without
/// control characters (`"Zendesk"`, `"#1042"`, `"jane+qa@acme.com"`), stored and
/// returned byte for byte.
pub const MAX_ID_BYTES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageRole {
    Agent,
    Customer,
    System,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: MessageRole,
    pub author_id: String,
    pub text: String,
    pub send_time: Option<DateTime<Utc>>,
}

/// An interaction as a caller describes it; `(source, external_id)` identifies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InteractionInput {
    pub source: String,
    pub external_id: String,
    pub channel: String,
    pub agent_id: String,
    pub team_id: String,
    pub region: String,
    pub occur_time: Option<DateTime<Utc>>,
    pub csat: Option<i32>,
    pub nps: Option<i32>,
    pub messages: Vec<Message>,
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    pub id: Uuid,
    pub input: InteractionInput,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// An id or label from another system: 1..[`MAX_ID_BYTES`] bytes, no control character.
pub fn is_opaque_id(value: &str) -> bool {
    !value.is_empty() && value.len() <= MAX_ID_BYTES && !value.chars().any(char::is_control)
}

/// What an id field must be, for violation messages.
pub const OPAQUE_ID_RULE: &str = "must be 1..256 bytes of UTF-8 without control characters";

/// Checks a required id field, naming the rule when it is broken.
pub fn check_external_id(field: &str, value: &str, violations: &mut Violations) {
    check_id(violations, field.to_owned(), value, true);
}

/// Checks an optional id field (empty = not given).
pub fn check_optional_id(field: &str, value: &str, violations: &mut Violations) {
    check_id(violations, field.to_owned(), value, false);
}

fn check_id(violations: &mut Violations, field: String, value: &str, required: bool) {
    if value.is_empty() {
        if required {
            violations.add(field, "is required");
        }
    } else if !is_opaque_id(value) {
        violations.add(field, OPAQUE_ID_RULE);
    }
}

impl InteractionInput {
    pub fn validate(&self, path: &str, violations: &mut Violations) {
        check_id(violations, format!("{path}.source"), &self.source, true);
        check_id(
            violations,
            format!("{path}.external_id"),
            &self.external_id,
            true,
        );
        check_id(violations, format!("{path}.channel"), &self.channel, true);
        check_id(violations, format!("{path}.agent_id"), &self.agent_id, true);
        check_id(violations, format!("{path}.team_id"), &self.team_id, false);
        check_id(violations, format!("{path}.region"), &self.region, false);
        if let Some(csat) = self.csat
            && !(1..=5).contains(&csat)
        {
            violations.add(format!("{path}.csat"), format!("must be 1..5, got {csat}"));
        }
        if let Some(nps) = self.nps
            && !(0..=10).contains(&nps)
        {
            violations.add(format!("{path}.nps"), format!("must be 0..10, got {nps}"));
        }
        if self.messages.len() > MAX_MESSAGES {
            violations.add(
                format!("{path}.messages"),
                format!(
                    "at most {MAX_MESSAGES} messages, got {}",
                    self.messages.len()
                ),
            );
        }
        let transcript_bytes: usize = self.messages.iter().map(|m| m.text.len()).sum();
        if transcript_bytes > MAX_TRANSCRIPT_BYTES {
            violations.add(
                format!("{path}.messages"),
                format!(
                    "at most {MAX_TRANSCRIPT_BYTES} bytes of text in all, got {transcript_bytes}"
                ),
            );
        }
        for (index, message) in self.messages.iter().enumerate().take(MAX_MESSAGES) {
            check_id(
                violations,
                format!("{path}.messages[{index}].author_id"),
                &message.author_id,
                false,
            );
            violations.check_text(&format!("{path}.messages[{index}].text"), &message.text);
        }
        if self.attributes.len() > MAX_ATTRIBUTES {
            violations.add(
                format!("{path}.attributes"),
                format!(
                    "at most {MAX_ATTRIBUTES} attributes, got {}",
                    self.attributes.len()
                ),
            );
        }
        for (key, value) in &self.attributes {
            if !super::validation::is_slug(key, MAX_ATTRIBUTE_KEY_LEN) {
                violations.add(
                    format!("{path}.attributes[{key:?}]"),
                    "keys must match [a-z][a-z0-9_]{0,63}",
                );
            }
            violations.check_length(
                &format!("{path}.attributes[{key:?}]"),
                value,
                0,
                MAX_ATTRIBUTE_VALUE_CHARS,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn input() -> InteractionInput {
        InteractionInput {
            source: "zendesk".into(),
            external_id: "ZD-1042".into(),
            channel: "chat".into(),
            agent_id: "agent-7".into(),
            team_id: "tier1".into(),
            region: "eu-west".into(),
            occur_time: None,
            csat: Some(4),
            nps: Some(9),
            messages: vec![Message {
                role: MessageRole::Customer,
                author_id: "cust-1".into(),
                text: "My order is late".into(),
                send_time: None,
            }],
            attributes: BTreeMap::from([("priority".into(), "high".into())]),
        }
    }

    fn violated(input: &InteractionInput) -> Vec<String> {
        let mut violations = Violations::new();
        input.validate("interaction", &mut violations);
        violations.into_vec().into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn a_well_formed_interaction_has_no_violations() {
        assert!(violated(&input()).is_empty());
    }

    #[test]
    fn helpdesk_ids_are_opaque_utf8_of_1_to_256_bytes_without_control_characters() {
        for id in [
            "Zendesk",
            "#1042",
            "jane+qa@acme.com",
            "Équipe Nord",
            "客服 7",
            "a;b\"c",
        ] {
            assert!(is_opaque_id(id), "{id:?}");
        }
        let longest = "é".repeat(MAX_ID_BYTES / 2);
        assert!(is_opaque_id(&longest));
        for id in [
            "",
            "tab\there",
            "\u{7f}",
            "\u{85}next-line",
            &format!("{longest}x"),
        ] {
            assert!(!is_opaque_id(id), "{id:?}");
        }
    }

    #[test]
    fn every_bad_field_of_an_interaction_is_named() {
        let mut bad = input();
        bad.source = String::new();
        bad.external_id = "line\nbreak".into();
        bad.channel = "c".repeat(MAX_ID_BYTES + 1);
        bad.agent_id = String::new();
        bad.csat = Some(6);
        bad.nps = Some(11);
        bad.attributes.insert("Bad Key".into(), "x".repeat(2000));
        assert_eq!(
            violated(&bad),
            [
                "interaction.source",
                "interaction.external_id",
                "interaction.channel",
                "interaction.agent_id",
                "interaction.csat",
                "interaction.nps",
                "interaction.attributes[\"Bad Key\"]",
                "interaction.attributes[\"Bad Key\"]",
            ]
        );
    }

    #[test]
    fn csat_and_nps_bounds_are_inclusive() {
        let mut edge = input();
        for (csat, nps) in [(1, 0), (5, 10)] {
            edge.csat = Some(csat);
            edge.nps = Some(nps);
            assert!(violated(&edge).is_empty());
        }
        edge.csat = Some(0);
        edge.nps = Some(-1);
        assert_eq!(violated(&edge), ["interaction.csat", "interaction.nps"]);
    }

    #[test]
    fn transcripts_are_bounded_in_messages_and_bytes() {
        let mut long = input();
        long.messages = vec![long.messages[0].clone(); MAX_MESSAGES + 1];
        assert_eq!(violated(&long), ["interaction.messages"]);
        let mut big = input();
        big.messages[0].text = "x".repeat(MAX_TRANSCRIPT_BYTES + 1);
        assert_eq!(violated(&big), ["interaction.messages"]);
    }

    #[test]
    fn team_and_region_are_optional() {
        let mut minimal = input();
        minimal.team_id.clear();
        minimal.region.clear();
        assert!(violated(&minimal).is_empty());
    }
}
