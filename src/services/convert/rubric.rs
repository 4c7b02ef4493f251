//! Rubric messages <-> domain.

use super::timestamp;
use crate::domain::{
    autoqa::{AutoRule, Expect, Scope},
    rubric::{
        Criterion, CriticalScope, DEFAULT_PASS_THRESHOLD, Rubric, RubricDraft, RubricState,
        RubricVersion,
    },
    validation::Violations,
};
use crate::proto::rubric as pb;

pub fn criterion_from_proto(
    criterion: pb::Criterion,
    path: &str,
    violations: &mut Violations,
) -> Criterion {
    let critical = match pb::CriticalScope::try_from(criterion.critical) {
        Ok(pb::CriticalScope::Unspecified | pb::CriticalScope::None) => CriticalScope::None,
        Ok(pb::CriticalScope::Evaluation) => CriticalScope::Evaluation,
        Ok(pb::CriticalScope::Section) => CriticalScope::Section,
        Err(_) => {
            violations.add(
                format!("{path}.critical"),
                format!("unknown critical scope {}", criterion.critical),
            );
            CriticalScope::None
        }
    };
    let auto = criterion
        .auto
        .map(|rule| auto_rule_from_proto(rule, &format!("{path}.auto"), violations));
    Criterion {
        key: criterion.key,
        display_name: criterion.display_name,
        description: criterion.description,
        section: criterion.section,
        weight: criterion.weight,
        scale_min: criterion.scale_min,
        scale_max: criterion.scale_max,
        allow_not_applicable: criterion.allow_not_applicable,
        critical,
        level_labels: criterion.level_labels,
        root_causes: criterion.root_causes,
        auto: auto.flatten(),
    }
}

/// An AutoQA rule; `None` (with a violation) when it names no rule or an unknown enum.
fn auto_rule_from_proto(
    rule: pb::AutoRule,
    path: &str,
    violations: &mut Violations,
) -> Option<AutoRule> {
    use pb::auto_rule::Rule;
    Some(match rule.rule {
        None => {
            violations.add(
                path,
                "set one rule: phrase, response_time, sentiment_shift, card_number or external",
            );
            return None;
        }
        Some(Rule::Phrase(phrase)) => {
            let scope = match pb::AutoScope::try_from(phrase.scope) {
                Ok(pb::AutoScope::Unspecified | pb::AutoScope::FirstAgentMessages) => {
                    Scope::FirstAgentMessages
                }
                Ok(pb::AutoScope::LastAgentMessages) => Scope::LastAgentMessages,
                Ok(pb::AutoScope::AllAgentMessages) => Scope::AllAgentMessages,
                Ok(pb::AutoScope::AllCustomerMessages) => Scope::AllCustomerMessages,
                Err(_) => {
                    violations.add(
                        format!("{path}.phrase.scope"),
                        format!("unknown scope {}", phrase.scope),
                    );
                    return None;
                }
            };
            let expect = match pb::AutoExpect::try_from(phrase.expect) {
                Ok(pb::AutoExpect::Unspecified | pb::AutoExpect::Present) => Expect::Present,
                Ok(pb::AutoExpect::Absent) => Expect::Absent,
                Err(_) => {
                    violations.add(
                        format!("{path}.phrase.expect"),
                        format!("unknown expectation {}", phrase.expect),
                    );
                    return None;
                }
            };
            AutoRule::Phrase {
                phrases: phrase.phrases,
                scope,
                message_count: phrase.message_count.max(1),
                expect,
            }
        }
        Some(Rule::ResponseTime(rule)) => AutoRule::ResponseTime {
            target_seconds: rule.target_seconds,
            limit_seconds: rule.limit_seconds,
        },
        Some(Rule::SentimentShift(_)) => AutoRule::SentimentShift,
        Some(Rule::CardNumber(_)) => AutoRule::CardNumber,
        Some(Rule::External(rule)) => AutoRule::External {
            endpoint: rule.endpoint,
        },
    })
}

fn auto_rule_to_proto(rule: AutoRule) -> pb::AutoRule {
    use pb::auto_rule::Rule;
    let rule = match rule {
        AutoRule::Phrase {
            phrases,
            scope,
            message_count,
            expect,
        } => Rule::Phrase(pb::PhraseRule {
            phrases,
            scope: match scope {
                Scope::FirstAgentMessages => pb::AutoScope::FirstAgentMessages,
                Scope::LastAgentMessages => pb::AutoScope::LastAgentMessages,
                Scope::AllAgentMessages => pb::AutoScope::AllAgentMessages,
                Scope::AllCustomerMessages => pb::AutoScope::AllCustomerMessages,
            } as i32,
            message_count,
            expect: match expect {
                Expect::Present => pb::AutoExpect::Present,
                Expect::Absent => pb::AutoExpect::Absent,
            } as i32,
        }),
        AutoRule::ResponseTime {
            target_seconds,
            limit_seconds,
        } => Rule::ResponseTime(pb::ResponseTimeRule {
            target_seconds,
            limit_seconds,
        }),
        AutoRule::SentimentShift => Rule::SentimentShift(pb::SentimentShiftRule {}),
        AutoRule::CardNumber => Rule::CardNumber(pb::CardNumberRule {}),
        AutoRule::External { endpoint } => Rule::External(pb::ExternalRule { endpoint }),
    };
    pb::AutoRule { rule: Some(rule) }
}

pub fn criteria_from_proto(
    criteria: Vec<pb::Criterion>,
    path: &str,
    violations: &mut Violations,
) -> Vec<Criterion> {
    criteria
        .into_iter()
        .enumerate()
        .map(|(index, criterion)| {
            criterion_from_proto(criterion, &format!("{path}[{index}]"), violations)
        })
        .collect()
}

pub fn draft_from_proto(
    draft: pb::RubricDraft,
    path: &str,
    violations: &mut Violations,
) -> RubricDraft {
    RubricDraft {
        criteria: criteria_from_proto(draft.criteria, &format!("{path}.criteria"), violations),
        pass_threshold: draft.pass_threshold.unwrap_or(DEFAULT_PASS_THRESHOLD),
        auto_score: draft.auto_score,
    }
}

pub fn criterion_to_proto(criterion: Criterion) -> pb::Criterion {
    let critical = match criterion.critical {
        CriticalScope::None => pb::CriticalScope::None,
        CriticalScope::Evaluation => pb::CriticalScope::Evaluation,
        CriticalScope::Section => pb::CriticalScope::Section,
    };
    pb::Criterion {
        key: criterion.key,
        display_name: criterion.display_name,
        description: criterion.description,
        section: criterion.section,
        weight: criterion.weight,
        scale_min: criterion.scale_min,
        scale_max: criterion.scale_max,
        allow_not_applicable: criterion.allow_not_applicable,
        critical: critical as i32,
        level_labels: criterion.level_labels,
        root_causes: criterion.root_causes,
        auto: criterion.auto.map(auto_rule_to_proto),
    }
}

pub fn rubric_to_proto(rubric: Rubric) -> pb::Rubric {
    let state = match rubric.state {
        RubricState::Active => pb::RubricState::Active,
        RubricState::Archived => pb::RubricState::Archived,
    };
    pb::Rubric {
        id: rubric.id.to_string(),
        display_name: rubric.display_name,
        description: rubric.description,
        state: state as i32,
        latest_version: rubric.latest_version,
        draft: Some(pb::RubricDraft {
            criteria: rubric
                .draft
                .criteria
                .into_iter()
                .map(criterion_to_proto)
                .collect(),
            pass_threshold: Some(rubric.draft.pass_threshold),
            auto_score: rubric.draft.auto_score,
        }),
        create_time: Some(timestamp(rubric.create_time)),
        update_time: Some(timestamp(rubric.update_time)),
    }
}

pub fn version_to_proto(version: RubricVersion) -> pb::RubricVersion {
    pb::RubricVersion {
        rubric_id: version.rubric_id.to_string(),
        version: version.version,
        criteria: version
            .criteria
            .into_iter()
            .map(criterion_to_proto)
            .collect(),
        pass_threshold: version.pass_threshold,
        publish_time: Some(timestamp(version.publish_time)),
        auto_score: version.auto_score,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_critical_scope_means_none_and_unknown_is_a_violation() {
        let mut violations = Violations::new();
        let criterion = criterion_from_proto(
            pb::Criterion {
                critical: 0,
                ..Default::default()
            },
            "c",
            &mut violations,
        );
        assert_eq!(criterion.critical, CriticalScope::None);
        criterion_from_proto(
            pb::Criterion {
                critical: 42,
                ..Default::default()
            },
            "c",
            &mut violations,
        );
        assert_eq!(violations.as_slice()[0].field, "c.critical");
    }

    #[test]
    fn absent_pass_threshold_defaults_to_80() {
        let draft = draft_from_proto(pb::RubricDraft::default(), "d", &mut Violations::new());
        assert_eq!(draft.pass_threshold, 80.0);
    }
}
