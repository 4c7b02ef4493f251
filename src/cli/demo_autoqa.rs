//! The demo's AutoQA: a chat rubric with a rule on most criteria, chats whose transcripts
//! exercise every rule (a greeting said or not, slow first replies, customers who arrive
//! angry and leave thankful, a card number typed by an agent), each auto-scored, and a
//! reviewer's own reviews of half of them, so the agreement report has pairs.

use chrono::{DateTime, Duration, Utc};
use tonic::transport::Channel;

use super::bench_client::authed;
use super::demo::timestamp;
use super::demo_program::failed;
use crate::domain::random::SplitMix64;
use crate::proto::analytics::{self as apb, analytics_service_client::AnalyticsServiceClient};
use crate::proto::evaluation::{
    self as epb, evaluation_service_client::EvaluationServiceClient,
    submit_evaluation_request::InteractionRef,
};
use crate::proto::rubric::{
    self as rpb, auto_rule::Rule, rubric_service_client::RubricServiceClient,
};

const CHATS: usize = 40;
/// The reviewer whose own reviews AutoQA is compared with.
const REVIEWER: &str = "qa-anna";
const AGENTS: [&str; 6] = ["lena", "wen", "bilal", "carmen", "viktor", "goran"];

fn criterion(
    key: &str,
    name: &str,
    weight: u32,
    scale: (i32, i32),
    rule: Option<Rule>,
) -> rpb::Criterion {
    rpb::Criterion {
        key: key.into(),
        display_name: name.into(),
        weight,
        scale_min: scale.0,
        scale_max: scale.1,
        allow_not_applicable: true,
        auto: rule.map(|rule| rpb::AutoRule { rule: Some(rule) }),
        ..Default::default()
    }
}

fn phrases(phrases: &[&str], scope: rpb::AutoScope) -> Rule {
    Rule::Phrase(rpb::PhraseRule {
        phrases: phrases.iter().map(|p| (*p).to_owned()).collect(),
        scope: scope as i32,
        message_count: 1,
        expect: rpb::AutoExpect::Present as i32,
    })
}

fn rubric() -> rpb::RubricDraft {
    let mut pci = criterion(
        "pci",
        "No card number typed",
        0,
        (0, 1),
        Some(Rule::CardNumber(rpb::CardNumberRule {})),
    );
    pci.critical = rpb::CriticalScope::Evaluation as i32;
    rpb::RubricDraft {
        criteria: vec![
            criterion(
                "greeting",
                "Greets the customer",
                1,
                (0, 1),
                Some(phrases(
                    &["thank you for contacting", "hello", "hi there"],
                    rpb::AutoScope::FirstAgentMessages,
                )),
            ),
            criterion(
                "first_response",
                "Answers quickly",
                2,
                (1, 5),
                Some(Rule::ResponseTime(rpb::ResponseTimeRule {
                    target_seconds: 60,
                    limit_seconds: 300,
                })),
            ),
            criterion(
                "mood",
                "Leaves the customer happier",
                2,
                (1, 5),
                Some(Rule::SentimentShift(rpb::SentimentShiftRule {})),
            ),
            criterion(
                "closing",
                "Offers more help",
                1,
                (0, 1),
                Some(phrases(
                    &["anything else", "have a great day"],
                    rpb::AutoScope::LastAgentMessages,
                )),
            ),
            pci,
            criterion("empathy", "Shows empathy", 2, (1, 4), None),
        ],
        pass_threshold: Some(70.0),
        auto_score: false,
    }
}

fn message(role: epb::MessageRole, text: &str, at: DateTime<Utc>) -> epb::Message {
    epb::Message {
        role: role as i32,
        author_id: String::new(),
        text: text.into(),
        send_time: Some(timestamp(at)),
    }
}

/// One chat: which rules it trips depends on the draws.
fn transcript(random: &mut SplitMix64, start: DateTime<Utc>) -> (Vec<epb::Message>, bool) {
    use epb::MessageRole::{Agent, Customer};
    let draw = |random: &mut SplitMix64, below: u64| random.next_u64() % 100 < below;
    let angry = draw(random, 50);
    let greets = draw(random, 70);
    let closes = draw(random, 60);
    let typed_card = draw(random, 8);
    let first_reply = 15 + (random.next_u64() % 420) as i64;
    let mut at = start;
    let mut messages = vec![message(
        Customer,
        if angry {
            "This is terrible, I was charged twice and nobody answers. I am furious!"
        } else {
            "Hi, I would like to change the address on my order."
        },
        at,
    )];
    at += Duration::seconds(first_reply);
    messages.push(message(
        Agent,
        if greets {
            "Hello, thank you for contacting Acme! Let me look into it."
        } else {
            "Let me look into it."
        },
        at,
    ));
    at += Duration::seconds(40);
    messages.push(message(Customer, "It is order 51-2231.", at));
    at += Duration::seconds(30);
    messages.push(message(
        Agent,
        if typed_card {
            "I see the card 4111 1111 1111 1111 on file, I refunded the second charge."
        } else {
            "I found it and fixed it for you."
        },
        at,
    ));
    at += Duration::seconds(25);
    messages.push(message(
        Customer,
        if angry {
            "Thank you so much, that is great, you really helped!"
        } else {
            "OK."
        },
        at,
    ));
    at += Duration::seconds(20);
    messages.push(message(
        Agent,
        if closes {
            "Is there anything else I can do? Have a great day!"
        } else {
            "Done."
        },
        at,
    ));
    (messages, typed_card)
}

/// Seeds the AutoQA rubric, its chats and their automated evaluations, and a reviewer's
/// reviews of half of them; returns the summary line.
pub async fn seed_autoqa(
    channel: Channel,
    seed: u64,
    now: DateTime<Utc>,
) -> Result<String, String> {
    let channel = authed(channel, None);
    let mut rubrics = RubricServiceClient::new(channel.clone());
    let rubric = rubrics
        .create_rubric(rpb::CreateRubricRequest {
            request_id: format!("demo-{seed}-autoqa-rubric"),
            rubric: Some(rpb::Rubric {
                display_name: "Chat AutoQA".into(),
                description: "Rated from the transcript by AutoQA".into(),
                draft: Some(rubric()),
                ..Default::default()
            }),
        })
        .await
        .map_err(failed("create the AutoQA rubric"))?
        .into_inner();
    rubrics
        .publish_rubric(rpb::PublishRubricRequest {
            id: rubric.id.clone(),
        })
        .await
        .map_err(failed("publish the AutoQA rubric"))?;

    let mut evaluations = EvaluationServiceClient::new(channel.clone());
    let mut random = SplitMix64::new(seed ^ 0xA070_0A00);
    let (mut typed_cards, mut slow) = (0, 0);
    for index in 0..CHATS {
        let start =
            now - Duration::days(1 + (index as i64 % 14)) - Duration::minutes(7 * index as i64);
        let (messages, typed_card) = transcript(&mut random, start);
        typed_cards += usize::from(typed_card);
        let interaction = evaluations
            .upsert_interaction(epb::UpsertInteractionRequest {
                interaction: Some(epb::Interaction {
                    source: "demo-autoqa".into(),
                    external_id: format!("chat-{index}"),
                    channel: "chat".into(),
                    agent_id: AGENTS[index % AGENTS.len()].into(),
                    team_id: "support-emea".into(),
                    region: "emea".into(),
                    occur_time: Some(timestamp(start)),
                    messages,
                    ..Default::default()
                }),
            })
            .await
            .map_err(failed("upsert an AutoQA chat"))?
            .into_inner();
        let automated = evaluations
            .auto_score_interaction(epb::AutoScoreInteractionRequest {
                interaction_id: interaction.id.clone(),
                rubric_id: rubric.id.clone(),
                rubric_version: 0,
            })
            .await
            .map_err(failed("auto-score a chat"))?
            .into_inner();
        let machine = |key: &str| {
            automated
                .ratings
                .iter()
                .find(|rating| rating.criterion_key == key)
                .and_then(|rating| rating.value)
        };
        slow += usize::from(machine("first_response").is_some_and(|value| value <= 2));
        if index % 2 == 1 {
            continue;
        }
        // The reviewer mostly sees what the rules see, and sometimes judges otherwise.
        let mut disagree = |value: Option<i32>, scale: (i32, i32)| -> Option<i32> {
            value.map(|value| {
                if random.next_u64() % 100 < 20 {
                    (value + if value > scale.0 { -1 } else { 1 }).clamp(scale.0, scale.1)
                } else {
                    value
                }
            })
        };
        let mut ratings = Vec::new();
        for (key, scale) in [
            ("greeting", (0, 1)),
            ("first_response", (1, 5)),
            ("mood", (1, 5)),
            ("closing", (0, 1)),
            ("pci", (0, 1)),
        ] {
            let value = disagree(machine(key), scale);
            ratings.push(epb::Rating {
                criterion_key: key.into(),
                value,
                not_applicable: value.is_none(),
                ..Default::default()
            });
        }
        ratings.push(epb::Rating {
            criterion_key: "empathy".into(),
            value: Some(2 + (random.next_u64() % 3) as i32),
            ..Default::default()
        });
        evaluations
            .submit_evaluation(epb::SubmitEvaluationRequest {
                request_id: format!("demo-{seed}-autoqa-review-{index}"),
                interaction_ref: Some(InteractionRef::InteractionId(interaction.id)),
                rubric_id: rubric.id.clone(),
                reviewer_id: REVIEWER.into(),
                kind: epb::EvaluationKind::Manual as i32,
                ratings,
                ..Default::default()
            })
            .await
            .map_err(failed("review an AutoQA chat"))?;
    }
    let report = AnalyticsServiceClient::new(channel)
        .get_auto_qa_agreement(apb::GetAutoQaAgreementRequest {
            rubric_id: rubric.id.clone(),
            time_range: None,
        })
        .await
        .map_err(failed("read the AutoQA agreement"))?
        .into_inner();
    let agreement: Vec<String> = report
        .criteria
        .iter()
        .map(|criterion| {
            format!(
                "{} κ {}",
                criterion.criterion_key,
                criterion
                    .cohen_kappa
                    .map_or_else(|| "–".to_owned(), |kappa| format!("{kappa:.2}"))
            )
        })
        .collect();
    Ok(format!(
        "  autoqa:                rubric {} (\"Chat AutoQA\"): {CHATS} chats auto-scored ({typed_cards} with a card number typed, \
         {slow} answered after 3.5 min or more); against {REVIEWER} on {} of them: {}",
        rubric.id,
        CHATS / 2,
        agreement.join(", ")
    ))
}
