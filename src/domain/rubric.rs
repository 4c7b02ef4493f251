//! Rubrics (scorecards): weighted criteria on integer scales, N/A, critical auto-fail,
//! and the rules a draft must follow before it can be stored or published.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::autoqa::AutoRule;
use super::validation::{Violations, is_slug};

pub const DEFAULT_PASS_THRESHOLD: f64 = 80.0;
pub const MAX_WEIGHT: u32 = 100;
pub const MAX_SCALE_SPAN: i64 = 100;
pub const MAX_CRITERIA: usize = 200;
pub const MAX_KEY_LEN: usize = 63;
pub const MAX_DISPLAY_NAME_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 4000;
pub const MAX_SECTION_CHARS: usize = 100;
pub const MAX_LABEL_CHARS: usize = 200;
pub const MAX_ROOT_CAUSES: usize = 50;
pub const MAX_ROOT_CAUSE_LEN: usize = 63;

/// What a failed critical criterion fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CriticalScope {
    None,
    /// The whole evaluation scores 0.
    Evaluation,
    /// The criterion's section scores 0.
    Section,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Criterion {
    pub key: String,
    pub display_name: String,
    pub description: String,
    pub section: String,
    pub weight: u32,
    pub scale_min: i32,
    pub scale_max: i32,
    pub allow_not_applicable: bool,
    pub critical: CriticalScope,
    pub level_labels: Vec<String>,
    pub root_causes: Vec<String>,
    /// Rated by AutoQA; absent from the JSON of criteria without a rule, so what was
    /// stored (and fingerprinted) before rules existed reads and compares as it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<AutoRule>,
}

/// The editable content of a rubric; a published version freezes one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RubricDraft {
    pub criteria: Vec<Criterion>,
    pub pass_threshold: f64,
    /// Left out of the JSON when false, so drafts (and fingerprints) from before it
    /// existed read and compare as they were.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_score: bool,
}

impl Default for RubricDraft {
    fn default() -> Self {
        Self {
            criteria: Vec::new(),
            pass_threshold: DEFAULT_PASS_THRESHOLD,
            auto_score: false,
        }
    }
}

/// Replaces some parts of a draft; `None` keeps the current part.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DraftPatch {
    pub criteria: Option<Vec<Criterion>>,
    pub pass_threshold: Option<f64>,
    pub auto_score: Option<bool>,
}

impl DraftPatch {
    pub fn apply_to(self, draft: &mut RubricDraft) {
        if let Some(criteria) = self.criteria {
            draft.criteria = criteria;
        }
        if let Some(pass_threshold) = self.pass_threshold {
            draft.pass_threshold = pass_threshold;
        }
        if let Some(auto_score) = self.auto_score {
            draft.auto_score = auto_score;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RubricState {
    Active,
    Archived,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rubric {
    pub id: Uuid,
    pub display_name: String,
    pub description: String,
    pub state: RubricState,
    /// 0 = never published.
    pub latest_version: u32,
    pub draft: RubricDraft,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// A published, immutable version of a rubric.
#[derive(Debug, Clone, PartialEq)]
pub struct RubricVersion {
    pub rubric_id: Uuid,
    pub version: u32,
    pub criteria: Vec<Criterion>,
    pub pass_threshold: f64,
    pub publish_time: DateTime<Utc>,
    /// Interactions upserted with messages are auto-scored against it while it is the
    /// rubric's latest version.
    pub auto_score: bool,
}

impl RubricVersion {
    /// Whether this version froze exactly `draft`.
    pub fn froze(&self, draft: &RubricDraft) -> bool {
        self.criteria == draft.criteria
            && self.pass_threshold == draft.pass_threshold
            && self.auto_score == draft.auto_score
    }
}

/// What `CreateRubric` asks for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewRubric {
    pub display_name: String,
    pub description: String,
    pub draft: RubricDraft,
}

impl NewRubric {
    pub fn validate(&self, path: &str, violations: &mut Violations) {
        violations.check_length(
            &format!("{path}.display_name"),
            &self.display_name,
            1,
            MAX_DISPLAY_NAME_CHARS,
        );
        violations.check_length(
            &format!("{path}.description"),
            &self.description,
            0,
            MAX_DESCRIPTION_CHARS,
        );
        validate_criteria(
            &self.draft.criteria,
            &format!("{path}.draft.criteria"),
            violations,
        );
        validate_pass_threshold(
            self.draft.pass_threshold,
            &format!("{path}.draft.pass_threshold"),
            violations,
        );
    }

    /// Identifies the content for AIP-155: a retry with the same request id must carry
    /// the same fingerprint.
    pub fn fingerprint(&self) -> Vec<u8> {
        use sha2::{Digest, Sha256};
        // Serializing plain structs with serde_json is deterministic: fields in
        // declaration order, no maps.
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        Sha256::digest(canonical).to_vec()
    }
}

/// Checks every criterion of a draft: key form and uniqueness, weight, scale, labels,
/// texts and root causes.
pub fn validate_criteria(criteria: &[Criterion], path: &str, violations: &mut Violations) {
    if criteria.len() > MAX_CRITERIA {
        violations.add(
            path,
            format!("at most {MAX_CRITERIA} criteria, got {}", criteria.len()),
        );
    }
    let mut seen_keys = HashSet::new();
    for (index, criterion) in criteria.iter().enumerate() {
        let at = format!("{path}[{index}]");
        if !is_slug(&criterion.key, MAX_KEY_LEN) {
            violations.add(
                format!("{at}.key"),
                "must match [a-z][a-z0-9_]{0,62}".to_owned(),
            );
        } else if !seen_keys.insert(criterion.key.as_str()) {
            violations.add(
                format!("{at}.key"),
                format!("duplicate key {:?}", criterion.key),
            );
        }
        violations.check_length(
            &format!("{at}.display_name"),
            &criterion.display_name,
            0,
            MAX_DISPLAY_NAME_CHARS,
        );
        violations.check_length(
            &format!("{at}.description"),
            &criterion.description,
            0,
            MAX_DESCRIPTION_CHARS,
        );
        violations.check_length(
            &format!("{at}.section"),
            &criterion.section,
            0,
            MAX_SECTION_CHARS,
        );
        if criterion.weight > MAX_WEIGHT {
            violations.add(
                format!("{at}.weight"),
                format!("must be 0..{MAX_WEIGHT}, got {}", criterion.weight),
            );
        }
        let span = i64::from(criterion.scale_max) - i64::from(criterion.scale_min);
        if span <= 0 {
            violations.add(
                format!("{at}.scale_max"),
                format!(
                    "must be greater than scale_min ({} <= {})",
                    criterion.scale_max, criterion.scale_min
                ),
            );
        } else if span > MAX_SCALE_SPAN {
            violations.add(
                format!("{at}.scale_max"),
                format!("scale_max - scale_min must be at most {MAX_SCALE_SPAN}, got {span}"),
            );
        } else if !criterion.level_labels.is_empty()
            && criterion.level_labels.len() as i64 != span + 1
        {
            violations.add(
                format!("{at}.level_labels"),
                format!(
                    "must be empty or one label per level ({}), got {}",
                    span + 1,
                    criterion.level_labels.len()
                ),
            );
        }
        for (label_index, label) in criterion.level_labels.iter().enumerate() {
            violations.check_length(
                &format!("{at}.level_labels[{label_index}]"),
                label,
                1,
                MAX_LABEL_CHARS,
            );
        }
        if criterion.root_causes.len() > MAX_ROOT_CAUSES {
            violations.add(
                format!("{at}.root_causes"),
                format!("at most {MAX_ROOT_CAUSES} root causes"),
            );
        }
        let mut seen_causes = HashSet::new();
        for (cause_index, cause) in criterion.root_causes.iter().enumerate() {
            let field = format!("{at}.root_causes[{cause_index}]");
            if !is_slug(cause, MAX_ROOT_CAUSE_LEN) {
                violations.add(field, "must match [a-z][a-z0-9_]{0,62}");
            } else if !seen_causes.insert(cause.as_str()) {
                violations.add(field, format!("duplicate root cause {cause:?}"));
            }
        }
        if let Some(rule) = &criterion.auto {
            rule.validate(
                criterion.allow_not_applicable,
                &format!("{at}.auto"),
                violations,
            );
        }
    }
}

pub fn validate_pass_threshold(pass_threshold: f64, path: &str, violations: &mut Violations) {
    if !(0.0..=100.0).contains(&pass_threshold) {
        violations.add(path, format!("must be 0..100, got {pass_threshold}"));
    }
}

impl Rubric {
    /// An archived rubric keeps its versions but takes no edits and no publishing.
    pub fn ensure_active(&self) -> crate::error::Result<()> {
        match self.state {
            RubricState::Active => Ok(()),
            RubricState::Archived => Err(crate::error::Error::FailedPrecondition(format!(
                "rubric {} is archived",
                self.id
            ))),
        }
    }
}

/// Why a draft cannot be published, if it cannot.
pub fn unpublishable_reason(draft: &RubricDraft) -> Option<&'static str> {
    if draft.criteria.iter().any(|c| c.weight > 0) {
        None
    } else {
        Some("a rubric needs at least one criterion with weight > 0 to be published")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn criterion(key: &str) -> Criterion {
        Criterion {
            key: key.to_owned(),
            display_name: key.to_owned(),
            description: String::new(),
            section: String::new(),
            weight: 1,
            scale_min: 0,
            scale_max: 4,
            allow_not_applicable: false,
            critical: CriticalScope::None,
            level_labels: Vec::new(),
            root_causes: Vec::new(),
            auto: None,
        }
    }

    fn violated_fields(criteria: &[Criterion]) -> Vec<String> {
        let mut violations = Violations::new();
        validate_criteria(criteria, "draft.criteria", &mut violations);
        violations.into_vec().into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn a_well_formed_draft_has_no_violations() {
        let mut binary = criterion("verify_identity");
        binary.scale_max = 1;
        binary.weight = 0;
        binary.critical = CriticalScope::Evaluation;
        binary.level_labels = vec!["no".into(), "yes".into()];
        binary.root_causes = vec!["skipped_check".into()];
        assert!(violated_fields(&[criterion("empathy"), binary]).is_empty());
    }

    #[test]
    fn every_violation_of_a_draft_is_named_at_once() {
        let mut bad_key = criterion("Bad-Key");
        bad_key.weight = 101;
        let mut empty_scale = criterion("empty_scale");
        empty_scale.scale_max = empty_scale.scale_min;
        let mut wide_scale = criterion("wide");
        wide_scale.scale_min = -1;
        wide_scale.scale_max = 100;
        let mut labels = criterion("labels");
        labels.level_labels = vec!["only one".into()];
        let fields = violated_fields(&[
            criterion("dup"),
            criterion("dup"),
            bad_key,
            empty_scale,
            wide_scale,
            labels,
        ]);
        assert_eq!(
            fields,
            [
                "draft.criteria[1].key",
                "draft.criteria[2].key",
                "draft.criteria[2].weight",
                "draft.criteria[3].scale_max",
                "draft.criteria[4].scale_max",
                "draft.criteria[5].level_labels",
            ]
        );
    }

    #[test]
    fn extreme_scales_do_not_overflow() {
        let mut extreme = criterion("extreme");
        extreme.scale_min = i32::MIN;
        extreme.scale_max = i32::MAX;
        assert_eq!(violated_fields(&[extreme]), ["draft.criteria[0].scale_max"]);
    }

    #[test]
    fn root_causes_must_be_unique_slugs() {
        let mut c = criterion("a");
        c.root_causes = vec!["slow".into(), "slow".into(), "Not A Slug".into()];
        assert_eq!(
            violated_fields(&[c]),
            [
                "draft.criteria[0].root_causes[1]",
                "draft.criteria[0].root_causes[2]"
            ]
        );
    }

    #[test]
    fn pass_threshold_outside_0_to_100_or_nan_is_refused() {
        for bad in [-0.1, 100.1, 120.0, f64::NAN, f64::INFINITY] {
            let mut violations = Violations::new();
            validate_pass_threshold(bad, "t", &mut violations);
            assert!(!violations.is_empty(), "{bad}");
        }
        let mut violations = Violations::new();
        validate_pass_threshold(0.0, "t", &mut violations);
        validate_pass_threshold(100.0, "t", &mut violations);
        assert!(violations.is_empty());
    }

    #[test]
    fn publishing_needs_a_criterion_with_positive_weight() {
        let mut informational = criterion("note");
        informational.weight = 0;
        let mut draft = RubricDraft {
            criteria: vec![informational],
            ..RubricDraft::default()
        };
        assert!(unpublishable_reason(&draft).is_some());
        assert!(unpublishable_reason(&RubricDraft::default()).is_some());
        draft.criteria.push(criterion("empathy"));
        assert_eq!(unpublishable_reason(&draft), None);
    }

    #[test]
    fn fingerprint_differs_when_content_differs() {
        let a = NewRubric {
            display_name: "Chat".into(),
            description: String::new(),
            draft: RubricDraft::default(),
        };
        let mut b = a.clone();
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.draft.pass_threshold = 70.0;
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn patch_replaces_only_the_parts_it_names() {
        let mut draft = RubricDraft {
            criteria: vec![criterion("a")],
            pass_threshold: 75.0,
            auto_score: false,
        };
        DraftPatch {
            criteria: None,
            pass_threshold: Some(90.0),
            auto_score: None,
        }
        .apply_to(&mut draft);
        assert_eq!(draft.criteria.len(), 1);
        assert_eq!(draft.pass_threshold, 90.0);
    }
}
