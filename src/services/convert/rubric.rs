//! Rubric messages <-> domain.

use super::timestamp;
use crate::domain::{
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
    }
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
