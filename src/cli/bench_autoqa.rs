//! `iqs bench autoqa`: how fast the AutoQA engine rates transcripts on one core, beside
//! the bare JSON parse of the same transcripts (the least any scorer of them pays).

use std::time::Instant;

use chrono::{TimeZone, Utc};
use clap::Args;
use serde::Serialize;

use crate::domain::autoqa::{self, AutoRule, Expect, Scale, Scope};
use crate::domain::interaction::{Message, MessageRole};
use crate::domain::random::SplitMix64;

#[derive(Debug, Args)]
pub struct AutoqaArgs {
    /// Transcripts rated per repetition.
    #[arg(long, default_value_t = 10_000)]
    interactions: usize,
    /// Messages per transcript.
    #[arg(long, default_value_t = 20)]
    messages: usize,
    /// Print one JSON object instead of a line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct AutoqaReport {
    scenario: &'static str,
    interactions: usize,
    messages: usize,
    /// Transcripts parsed from JSON and rated by every rule, per second, on one core.
    rated_per_second: f64,
    /// Transcripts only parsed from JSON, per second.
    parsed_per_second: f64,
    /// Ratings that were N/A (a sanity check that the rules ran on real input).
    not_applicable: usize,
}

const AGENT_LINES: &[&str] = &[
    "Hello, thank you for contacting Acme support, my name is Sam.",
    "I am sorry to hear that, let me check your order right away.",
    "Could you confirm the email address on the account?",
    "I have refunded the shipping cost to your card.",
    "Is there anything else I can help you with today?",
    "Thanks for your patience, have a great day!",
    "I confirmed the card 4111 1111 1111 1111 for the refund.",
];
const CUSTOMER_LINES: &[&str] = &[
    "My order is late again and nobody answers, this is terrible!",
    "I am really frustrated, I paid for express shipping.",
    "It is jane@example.com",
    "OK, that helps.",
    "Thank you so much, you were very helpful :)",
    "Still nothing arrived, awful service.",
];

/// Deterministic transcripts of `messages` messages each, as JSON.
fn transcripts(count: usize, messages: usize) -> Vec<String> {
    let mut random = SplitMix64::new(20_261_130);
    (0..count)
        .map(|_| {
            let mut second = 0;
            let transcript: Vec<Message> = (0..messages)
                .map(|index| {
                    second += 5 + (random.next_u64() % 120) as i64;
                    let (role, lines) = if index % 2 == 0 {
                        (MessageRole::Customer, CUSTOMER_LINES)
                    } else {
                        (MessageRole::Agent, AGENT_LINES)
                    };
                    Message {
                        role,
                        author_id: String::new(),
                        text: lines[(random.next_u64() % lines.len() as u64) as usize].to_owned(),
                        send_time: Utc.timestamp_opt(1_764_000_000 + second, 0).single(),
                    }
                })
                .collect();
            serde_json::to_string(&transcript).expect("messages serialize")
        })
        .collect()
}

/// The rules of a typical chat scorecard.
fn scorecard() -> Vec<(AutoRule, Scale)> {
    let phrase = |phrases: &[&str], scope, expect| AutoRule::Phrase {
        phrases: phrases.iter().map(|p| (*p).to_owned()).collect(),
        scope,
        message_count: 1,
        expect,
    };
    vec![
        (
            phrase(
                &["thank you for contacting", "hello", "hi there"],
                Scope::FirstAgentMessages,
                Expect::Present,
            ),
            Scale { min: 0, max: 1 },
        ),
        (
            phrase(
                &["anything else", "have a great day"],
                Scope::LastAgentMessages,
                Expect::Present,
            ),
            Scale { min: 0, max: 1 },
        ),
        (
            phrase(
                &["calm down", "not my problem"],
                Scope::AllAgentMessages,
                Expect::Absent,
            ),
            Scale { min: 0, max: 1 },
        ),
        (
            AutoRule::ResponseTime {
                target_seconds: 60,
                limit_seconds: 300,
            },
            Scale { min: 1, max: 5 },
        ),
        (AutoRule::SentimentShift, Scale { min: 1, max: 5 }),
        (AutoRule::CardNumber, Scale { min: 0, max: 1 }),
    ]
}

pub fn autoqa(args: AutoqaArgs) -> Result<(), String> {
    let inputs = transcripts(args.interactions.max(1), args.messages.max(1));
    let rules = scorecard();
    let parse = |json: &str| -> Result<Vec<Message>, String> {
        serde_json::from_str(json).map_err(|err| err.to_string())
    };
    // Warm the lexicon and the allocator before timing.
    for json in inputs.iter().take(100) {
        let messages = parse(json)?;
        for (rule, scale) in &rules {
            autoqa::rate(rule, *scale, &messages);
        }
    }
    let started = Instant::now();
    let mut parsed = 0usize;
    for json in &inputs {
        parsed += parse(json)?.len();
    }
    let parse_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut not_applicable = 0usize;
    for json in &inputs {
        let messages = parse(json)?;
        for (rule, scale) in &rules {
            not_applicable += usize::from(autoqa::rate(rule, *scale, &messages).value.is_none());
        }
    }
    let rate_seconds = started.elapsed().as_secs_f64();
    std::hint::black_box(parsed);
    let report = AutoqaReport {
        scenario: "autoqa",
        interactions: inputs.len(),
        messages: args.messages,
        rated_per_second: inputs.len() as f64 / rate_seconds,
        parsed_per_second: inputs.len() as f64 / parse_seconds,
        not_applicable,
    };
    if args.json {
        say!(
            "{}",
            serde_json::to_string(&report).map_err(|err| err.to_string())?
        );
    } else {
        say!(
            "AutoQA engine, one core: {:.0} transcripts of {} messages rated per second by {} rules \
             ({:.0}/s only parsed from JSON, {:.2}× the parse's time); {} ratings N/A",
            report.rated_per_second,
            report.messages,
            rules.len(),
            report.parsed_per_second,
            report.parsed_per_second / report.rated_per_second,
            report.not_applicable
        );
    }
    Ok(())
}
