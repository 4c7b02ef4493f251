//! The AutoQA engine: rates a criterion from an interaction's messages alone, with the
//! explanation of what decided it. A pure function of (messages, rule, scale): the same
//! transcript always gives the same rating. The rules' exact semantics are those of
//! AUTOQA.md (phrase, response_time, sentiment_shift, card_number); `external` rules are
//! asked of a scorer elsewhere and are not rated here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use super::interaction::{Message, MessageRole};
use super::validation::Violations;

/// Phrases one rule may list.
pub const MAX_PHRASES: usize = 50;
/// Characters of one phrase.
pub const MAX_PHRASE_CHARS: usize = 200;
/// First or last agent messages a phrase rule may read.
pub const MAX_MESSAGE_COUNT: u32 = 100;
/// Longest response_time limit: a week.
pub const MAX_LIMIT_SECONDS: u32 = 7 * 24 * 3600;

/// Which messages a phrase rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    FirstAgentMessages,
    LastAgentMessages,
    AllAgentMessages,
    AllCustomerMessages,
}

/// Whether a phrase rule wants its phrases said or not said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    Present,
    Absent,
}

/// How a criterion is rated automatically; stored with the rubric as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum AutoRule {
    Phrase {
        phrases: Vec<String>,
        scope: Scope,
        /// For the first or last agent messages; at least 1.
        message_count: u32,
        expect: Expect,
    },
    ResponseTime {
        target_seconds: u32,
        limit_seconds: u32,
    },
    SentimentShift,
    CardNumber,
    /// Rated by a scorer service run elsewhere, not by this engine.
    External {
        endpoint: String,
    },
}

impl AutoRule {
    /// Checks the rule's own fields; `path` names the rule (`….auto`). `allows_na`: the
    /// criterion allows N/A, which every rule may answer.
    pub fn validate(&self, allows_na: bool, path: &str, violations: &mut Violations) {
        if !allows_na {
            violations.add(
                path,
                "a criterion rated automatically must allow N/A (allow_not_applicable): a rule \
                 that does not apply answers N/A",
            );
        }
        match self {
            Self::Phrase {
                phrases,
                message_count,
                ..
            } => {
                let at = format!("{path}.phrase.phrases");
                if phrases.is_empty() || phrases.len() > MAX_PHRASES {
                    violations.add(
                        &at,
                        format!("must list 1..{MAX_PHRASES} phrases, got {}", phrases.len()),
                    );
                }
                for (index, phrase) in phrases.iter().enumerate() {
                    let chars = normalise(phrase).chars().count();
                    if chars == 0 || chars > MAX_PHRASE_CHARS {
                        violations.add(
                            format!("{at}[{index}]"),
                            format!("must hold 1..{MAX_PHRASE_CHARS} characters besides spaces"),
                        );
                    }
                }
                if *message_count > MAX_MESSAGE_COUNT {
                    violations.add(
                        format!("{path}.phrase.message_count"),
                        format!("must be 0..{MAX_MESSAGE_COUNT}, got {message_count}"),
                    );
                }
            }
            Self::ResponseTime {
                target_seconds,
                limit_seconds,
            } => {
                if limit_seconds <= target_seconds {
                    violations.add(
                        format!("{path}.response_time.limit_seconds"),
                        format!(
                            "must be greater than target_seconds ({limit_seconds} <= {target_seconds})"
                        ),
                    );
                } else if *limit_seconds > MAX_LIMIT_SECONDS {
                    violations.add(
                        format!("{path}.response_time.limit_seconds"),
                        format!("must be at most {MAX_LIMIT_SECONDS} (a week)"),
                    );
                }
            }
            Self::External { endpoint } => {
                let valid = url::Url::parse(endpoint).is_ok_and(|url| {
                    matches!(url.scheme(), "http" | "https") && url.host_str().is_some()
                });
                if !valid || endpoint.len() > 2048 {
                    violations.add(
                        format!("{path}.external.endpoint"),
                        "must be an http:// or https:// address of a scorer service",
                    );
                }
            }
            Self::SentimentShift | Self::CardNumber => {}
        }
    }
}

/// A criterion's scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    pub min: i32,
    pub max: i32,
}

/// What the engine decided for one criterion: a value on the scale, or N/A, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoRating {
    pub value: Option<i32>,
    pub explanation: String,
}

impl AutoRating {
    pub fn rated(value: i32, explanation: String) -> Self {
        Self {
            value: Some(value),
            explanation,
        }
    }

    pub fn not_applicable(explanation: String) -> Self {
        Self {
            value: None,
            explanation,
        }
    }
}

/// The reviewer id of every evaluation AutoQA makes.
pub const AUTOQA_REVIEWER: &str = "autoqa";

/// The ratings of every criterion of `version` for `messages`: a criterion with a rule
/// is rated by it (an external one as `external` says, by criterion key, from a scorer
/// asked beforehand), one without is N/A. Errs with the keys of the criteria that have
/// no rule and do not allow N/A, which AutoQA cannot rate.
pub fn rate_version(
    version: &super::rubric::RubricVersion,
    messages: &[Message],
    external: &std::collections::HashMap<String, AutoRating>,
) -> Result<Vec<super::scoring::Rating>, Vec<String>> {
    let unratable: Vec<String> = version
        .criteria
        .iter()
        .filter(|criterion| criterion.auto.is_none() && !criterion.allow_not_applicable)
        .map(|criterion| criterion.key.clone())
        .collect();
    if !unratable.is_empty() {
        return Err(unratable);
    }
    Ok(version
        .criteria
        .iter()
        .map(|criterion| {
            let rated = match &criterion.auto {
                Some(AutoRule::External { .. }) if external.contains_key(&criterion.key) => {
                    external[&criterion.key].clone()
                }
                Some(rule) => rate(
                    rule,
                    Scale {
                        min: criterion.scale_min,
                        max: criterion.scale_max,
                    },
                    messages,
                ),
                None => AutoRating::not_applicable("no AutoQA rule for this criterion".into()),
            };
            super::scoring::Rating {
                criterion_key: criterion.key.clone(),
                value: rated.value,
                not_applicable: rated.value.is_none(),
                comment: String::new(),
                root_causes: Vec::new(),
                explanation: rated.explanation,
            }
        })
        .collect())
}

/// A message as the rules read it: its place in the request (from 1), its role, its
/// normalised text and its time.
#[derive(Debug, Clone)]
struct Said {
    number: usize,
    role: MessageRole,
    text: String,
    send_time: Option<DateTime<Utc>>,
}

/// NFKC, lower case, runs of whitespace as one space.
pub fn normalise(text: &str) -> String {
    let lowered: String = text.nfkc().collect::<String>().to_lowercase();
    lowered.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The messages in the order the rules read them: by send time, then by their place in
/// the request (a message without a time comes before the timed ones).
fn transcript(messages: &[Message]) -> Vec<Said> {
    let mut said: Vec<Said> = messages
        .iter()
        .enumerate()
        .map(|(index, message)| Said {
            number: index + 1,
            role: message.role,
            text: normalise(&message.text),
            send_time: message.send_time,
        })
        .collect();
    said.sort_by_key(|message| (message.send_time, message.number));
    said
}

/// Rates one criterion of `messages` by `rule` on `scale`.
pub fn rate(rule: &AutoRule, scale: Scale, messages: &[Message]) -> AutoRating {
    let said = transcript(messages);
    match rule {
        AutoRule::Phrase {
            phrases,
            scope,
            message_count,
            expect,
        } => phrase(&said, phrases, *scope, *message_count, *expect, scale),
        AutoRule::ResponseTime {
            target_seconds,
            limit_seconds,
        } => response_time(&said, *target_seconds, *limit_seconds, scale),
        AutoRule::SentimentShift => sentiment_shift(&said, scale),
        AutoRule::CardNumber => card_number(&said, scale),
        AutoRule::External { endpoint } => AutoRating::not_applicable(format!(
            "external: rated by the scorer at {endpoint}, not by this engine"
        )),
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
}

/// Where `phrase` (normalised) occurs in `text` with a word boundary on both sides.
fn find_phrase(text: &str, phrase: &str) -> Option<usize> {
    if phrase.is_empty() {
        return None;
    }
    let mut from = 0;
    while let Some(found) = text[from..].find(phrase) {
        let start = from + found;
        let end = start + phrase.len();
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        if before.is_none_or(|c| !is_word_char(c)) && after.is_none_or(|c| !is_word_char(c)) {
            return Some(start);
        }
        from = start + text[start..].chars().next().map_or(1, char::len_utf8);
    }
    None
}

/// A short quote of `text` around `at`, for explanations.
fn quote(text: &str, at: usize, len: usize) -> String {
    const CONTEXT: usize = 24;
    let start = text[..at]
        .char_indices()
        .rev()
        .nth(CONTEXT - 1)
        .map_or(0, |(index, _)| index);
    let end = text[at + len..]
        .char_indices()
        .nth(CONTEXT)
        .map_or(text.len(), |(index, _)| at + len + index);
    let prefix = if start > 0 { "…" } else { "" };
    let suffix = if end < text.len() { "…" } else { "" };
    format!("{prefix}{}{suffix}", &text[start..end])
}

fn phrase(
    said: &[Said],
    phrases: &[String],
    scope: Scope,
    message_count: u32,
    expect: Expect,
    scale: Scale,
) -> AutoRating {
    let count = message_count.max(1) as usize;
    let agent: Vec<&Said> = said
        .iter()
        .filter(|m| m.role == MessageRole::Agent)
        .collect();
    let (in_scope, described): (Vec<&Said>, String) = match scope {
        Scope::FirstAgentMessages => (
            agent.iter().take(count).copied().collect(),
            format!("the first {count} agent message(s)"),
        ),
        Scope::LastAgentMessages => (
            agent[agent.len().saturating_sub(count)..].to_vec(),
            format!("the last {count} agent message(s)"),
        ),
        Scope::AllAgentMessages => (agent, "the agent's messages".to_owned()),
        Scope::AllCustomerMessages => (
            said.iter()
                .filter(|m| m.role == MessageRole::Customer)
                .collect(),
            "the customer's messages".to_owned(),
        ),
    };
    if in_scope.is_empty() {
        return AutoRating::not_applicable(format!("phrase: no message in {described}"));
    }
    let normalised: Vec<String> = phrases.iter().map(|p| normalise(p)).collect();
    let found = in_scope.iter().find_map(|message| {
        normalised
            .iter()
            .find_map(|phrase| find_phrase(&message.text, phrase).map(|at| (message, phrase, at)))
    });
    let (best, worst) = match expect {
        Expect::Present => (scale.max, scale.min),
        Expect::Absent => (scale.min, scale.max),
    };
    match found {
        Some((message, phrase, at)) => AutoRating::rated(
            best,
            format!(
                "phrase: {phrase:?} in message {}: \"{}\"",
                message.number,
                quote(&message.text, at, phrase.len())
            ),
        ),
        None => AutoRating::rated(
            worst,
            format!("phrase: none of {normalised:?} in {described}"),
        ),
    }
}

/// Rounds half away from zero, as AUTOQA.md asks, and keeps the value on the scale.
fn on_scale(exact: f64, scale: Scale) -> i32 {
    (exact.round() as i32).clamp(scale.min, scale.max)
}

fn response_time(said: &[Said], target: u32, limit: u32, scale: Scale) -> AutoRating {
    let Some(first_customer) = said.iter().position(|m| m.role == MessageRole::Customer) else {
        return AutoRating::not_applicable("response_time: no customer message".into());
    };
    let Some(reply) = said[first_customer + 1..]
        .iter()
        .find(|m| m.role == MessageRole::Agent)
    else {
        return AutoRating::not_applicable(
            "response_time: no agent message after the customer's first".into(),
        );
    };
    let asked = &said[first_customer];
    let (Some(asked_at), Some(replied_at)) = (asked.send_time, reply.send_time) else {
        return AutoRating::not_applicable(format!(
            "response_time: message {} or {} has no send_time",
            asked.number, reply.number
        ));
    };
    let seconds = (replied_at - asked_at).num_milliseconds() as f64 / 1000.0;
    let (target, limit) = (f64::from(target), f64::from(limit));
    let value = if seconds <= target {
        scale.max
    } else if seconds >= limit {
        scale.min
    } else {
        let span = f64::from(scale.max - scale.min);
        on_scale(
            f64::from(scale.max) - (seconds - target) / (limit - target) * span,
            scale,
        )
    };
    AutoRating::rated(
        value,
        format!(
            "response_time: message {} answered message {} after {seconds} s (target {target} s, limit {limit} s)",
            reply.number, asked.number
        ),
    )
}

/// VADER's compound score of `text` (from −1, most negative, to 1), as the published
/// vaderSentiment 3.3.2 computes it (`domain/vader.rs`).
pub fn compound(text: &str) -> f64 {
    super::vader::compound(text)
}

fn sentiment_shift(said: &[Said], scale: Scale) -> AutoRating {
    let customer: Vec<&Said> = said
        .iter()
        .filter(|m| m.role == MessageRole::Customer)
        .collect();
    if customer.len() < 2 {
        return AutoRating::not_applicable(format!(
            "sentiment_shift: {} customer message(s), 2 needed",
            customer.len()
        ));
    }
    let split = customer.len().div_ceil(2);
    let join = |messages: &[&Said]| {
        messages
            .iter()
            .map(|m| m.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let first = compound(&join(&customer[..split]));
    let last = compound(&join(&customer[split..]));
    let shift = last - first;
    let span = f64::from(scale.max - scale.min);
    let value = on_scale(f64::from(scale.min) + (shift + 2.0) / 4.0 * span, scale);
    AutoRating::rated(
        value,
        format!(
            "sentiment_shift: customer compound {first:.4} in messages {}–{}, {last:.4} in messages {}–{} (shift {shift:+.4})",
            customer[0].number,
            customer[split - 1].number,
            customer[split].number,
            customer[customer.len() - 1].number
        ),
    )
}

/// Runs of 13..=19 digits (a single space or hyphen allowed between two digits) that are
/// maximal: no digit run or digit-separator-digit continues them.
fn digit_runs(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut runs = Vec::new();
    let mut index = 0;
    while index < chars.len() {
        if !chars[index].is_ascii_digit() {
            index += 1;
            continue;
        }
        let mut digits = String::new();
        let mut at = index;
        loop {
            digits.push(chars[at]);
            if at + 1 < chars.len() && chars[at + 1].is_ascii_digit() {
                at += 1;
            } else if at + 2 < chars.len()
                && matches!(chars[at + 1], ' ' | '-')
                && chars[at + 2].is_ascii_digit()
            {
                at += 2;
            } else {
                break;
            }
        }
        runs.push(digits);
        index = at + 1;
    }
    runs.into_iter()
        .filter(|digits| (13..=19).contains(&digits.len()))
        .collect()
}

/// The Luhn check of a string of ASCII digits.
pub fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(index, byte)| {
            let digit = u32::from(byte - b'0');
            if index % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn masked(digits: &str) -> String {
    let keep = 4.min(digits.len());
    format!(
        "{}{}",
        "•".repeat(digits.len() - keep),
        &digits[digits.len() - keep..]
    )
}

fn card_number(said: &[Said], scale: Scale) -> AutoRating {
    let found = said
        .iter()
        .filter(|m| m.role == MessageRole::Agent)
        .find_map(|message| {
            digit_runs(&message.text)
                .into_iter()
                .find(|digits| luhn(digits))
                .map(|digits| (message.number, digits))
        });
    match found {
        Some((number, digits)) => AutoRating::rated(
            scale.min,
            format!(
                "card_number: message {number} holds a card number {} (passes the Luhn check)",
                masked(&digits)
            ),
        ),
        None => AutoRating::rated(
            scale.max,
            "card_number: no card number in the agent's messages".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const FIVE: Scale = Scale { min: 1, max: 5 };
    const BINARY: Scale = Scale { min: 0, max: 1 };

    fn message(role: MessageRole, text: &str, second: Option<i64>) -> Message {
        Message {
            role,
            author_id: String::new(),
            text: text.into(),
            send_time: second.map(|s| Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()),
        }
    }

    fn agent(text: &str, second: i64) -> Message {
        message(MessageRole::Agent, text, Some(second))
    }

    fn customer(text: &str, second: i64) -> Message {
        message(MessageRole::Customer, text, Some(second))
    }

    fn greeting(scope: Scope, expect: Expect) -> AutoRule {
        AutoRule::Phrase {
            phrases: vec!["Thank you for contacting".into(), "hello".into()],
            scope,
            message_count: 1,
            expect,
        }
    }

    #[test]
    fn text_is_compared_after_nfkc_lower_case_and_collapsed_whitespace() {
        assert_eq!(normalise("  Ｈｅｌｌｏ\t\tTHERE\n"), "hello there");
        assert_eq!(normalise("ﬁne"), "fine", "ligatures decompose under NFKC");
    }

    #[test]
    fn a_phrase_matches_only_on_word_boundaries() {
        assert_eq!(find_phrase("hello there", "hello"), Some(0));
        assert_eq!(find_phrase("othello said hello", "hello"), Some(13));
        assert_eq!(find_phrase("hellothere", "hello"), None);
        assert_eq!(find_phrase("say hello!", "hello"), Some(4));
        assert_eq!(find_phrase("héllo", "llo"), None, "é is a letter");
    }

    #[test]
    fn a_greeting_in_the_first_agent_message_rates_the_top_of_the_scale() {
        let messages = [
            customer("my order is late", 0),
            agent("HELLO, thank  you for contacting Acme!", 30),
            agent("let me check", 60),
        ];
        let rated = rate(
            &greeting(Scope::FirstAgentMessages, Expect::Present),
            BINARY,
            &messages,
        );
        assert_eq!(rated.value, Some(1));
        assert!(
            rated.explanation.contains("message 2"),
            "{}",
            rated.explanation
        );
        assert!(
            rated.explanation.contains("thank you for contacting"),
            "{}",
            rated.explanation
        );

        let without = [customer("late order", 0), agent("let me check", 5)];
        let rated = rate(
            &greeting(Scope::FirstAgentMessages, Expect::Present),
            BINARY,
            &without,
        );
        assert_eq!(rated.value, Some(0));
        // ABSENT turns it round: a forbidden phrase said is the bottom of the scale.
        let rated = rate(
            &greeting(Scope::FirstAgentMessages, Expect::Absent),
            FIVE,
            &messages,
        );
        assert_eq!(rated.value, Some(1));
        let rated = rate(
            &greeting(Scope::AllCustomerMessages, Expect::Present),
            FIVE,
            &[agent("hi", 0)],
        );
        assert_eq!(rated.value, None, "no message in scope is N/A");
    }

    #[test]
    fn messages_are_read_in_send_time_order_then_request_order() {
        // The greeting is sent first although it comes second in the request.
        let messages = [agent("let me check", 60), agent("hello!", 10)];
        let rated = rate(
            &greeting(Scope::FirstAgentMessages, Expect::Present),
            BINARY,
            &messages,
        );
        assert_eq!(rated.value, Some(1));
        let rated = rate(
            &greeting(Scope::LastAgentMessages, Expect::Present),
            BINARY,
            &messages,
        );
        assert_eq!(rated.value, Some(0));
    }

    #[test]
    fn response_time_is_linear_between_target_and_limit_rounded_half_away_from_zero() {
        let rule = AutoRule::ResponseTime {
            target_seconds: 60,
            limit_seconds: 300,
        };
        let at = |reply: i64| rate(&rule, FIVE, &[customer("help", 0), agent("hi", reply)]).value;
        assert_eq!(at(30), Some(5));
        assert_eq!(at(60), Some(5));
        assert_eq!(at(300), Some(1));
        assert_eq!(at(1000), Some(1));
        // 5 − (t − 60)/240·4: t = 90 → 4.5 → 5 (half away from zero); t = 180 → 3.
        assert_eq!(at(90), Some(5));
        assert_eq!(at(91), Some(4));
        assert_eq!(at(180), Some(3));
        let rated = rate(&rule, FIVE, &[customer("help", 0), agent("hi", 95)]);
        assert!(
            rated.explanation.contains("after 95 s"),
            "{}",
            rated.explanation
        );
        assert_eq!(rate(&rule, FIVE, &[agent("hi", 0)]).value, None);
        assert_eq!(
            rate(&rule, FIVE, &[agent("hi", 0), customer("?", 5)]).value,
            None
        );
        let untimed = [customer("help", 0), message(MessageRole::Agent, "hi", None)];
        assert_eq!(
            rate(&rule, FIVE, &untimed).value,
            None,
            "a missing send_time is N/A"
        );
    }

    #[test]
    fn an_angry_customer_who_ends_thankful_shifts_sentiment_up() {
        let messages = [
            customer("This is terrible, I am furious and angry!", 0),
            agent("I am sorry, let me fix it", 10),
            customer("still broken, awful", 20),
            customer("ok that works", 30),
            customer("Thank you so much, you are great!", 40),
        ];
        let rated = rate(&AutoRule::SentimentShift, FIVE, &messages);
        assert!(rated.value.unwrap() >= 4, "{rated:?}");
        assert!(
            rated.explanation.contains("messages 1–3"),
            "{}",
            rated.explanation
        );
        let flat = [customer("hello", 0), customer("hello", 1)];
        assert_eq!(
            rate(&AutoRule::SentimentShift, FIVE, &flat).value,
            Some(3),
            "no shift is the middle"
        );
        assert_eq!(
            rate(&AutoRule::SentimentShift, FIVE, &flat[..1]).value,
            None
        );
        // The compound score is VADER's: a known sentence.
        assert!(compound("VADER is smart, handsome, and funny.") > 0.8);
        assert!(compound("This is terrible") < -0.4);
    }

    #[test]
    fn a_card_number_typed_by_the_agent_is_found_masked_and_luhn_checked() {
        let rule = AutoRule::CardNumber;
        let typed = [
            customer("my card is 4111 1111 1111 1111", 0),
            agent("confirming 4111-1111-1111-1111 now", 5),
        ];
        let rated = rate(&rule, FIVE, &typed);
        assert_eq!(rated.value, Some(1));
        assert!(
            rated.explanation.contains("••••••••••••1111"),
            "{}",
            rated.explanation
        );
        assert!(
            !rated.explanation.contains("4111"),
            "never the whole number"
        );
        // Only the agent's messages count.
        assert_eq!(rate(&rule, FIVE, &typed[..1]).value, Some(5));
        // A run that fails Luhn, one too long, or two separators in a row is no card.
        for text in [
            "ref 4111 1111 1111 1112",
            "id 41111111111111110000",
            "4111 - 1111 1111 1111",
            "order 123456789012",
        ] {
            assert_eq!(
                rate(&rule, FIVE, &[agent(text, 0)]).value,
                Some(5),
                "{text}"
            );
        }
        assert!(luhn("79927398713"));
        assert!(!luhn("79927398710"));
        assert_eq!(
            digit_runs("a 5555-5555-5555-4444 b"),
            vec!["5555555555554444"]
        );
    }
}
