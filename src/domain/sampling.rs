//! Sampling plans: which of each agent's interactions of a period get reviewed, and by
//! whom. Everything here is a function of its inputs and the plan's seed, so a run reads
//! the same every time.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::interaction::check_external_id;
use super::random::SplitMix64;
use super::validation::Violations;

pub const MAX_PER_AGENT: u32 = 1_000;
pub const MAX_REVIEWERS: usize = 100;
const MAX_FILTER_VALUES: usize = 1_000;
const MAX_DISPLAY_NAME_CHARS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Strategy {
    Random,
    StratifiedChannel,
    LowCsatFirst,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::StratifiedChannel => "stratified_channel",
            Self::LowCsatFirst => "low_csat_first",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Random, Self::StratifiedChannel, Self::LowCsatFirst]
            .into_iter()
            .find(|strategy| strategy.as_str() == value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Period {
    Week,
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Week => "week",
            Self::Month => "month",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Week, Self::Month]
            .into_iter()
            .find(|period| period.as_str() == value)
    }

    /// The UTC period holding `time`: a week from Monday 00:00, or a calendar month.
    pub fn containing(self, time: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let day = time.date_naive();
        let midnight = |day: NaiveDate| day.and_time(chrono::NaiveTime::MIN).and_utc();
        match self {
            Self::Week => {
                let monday = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
                (midnight(monday), midnight(monday) + Duration::days(7))
            }
            Self::Month => {
                let first = day.with_day(1).unwrap_or(day);
                let next = first
                    .checked_add_months(chrono::Months::new(1))
                    .unwrap_or(first);
                (midnight(first), midnight(next))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AssignmentState {
    Open,
    Done,
    Skipped,
}

impl AssignmentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Done => "done",
            Self::Skipped => "skipped",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Open, Self::Done, Self::Skipped]
            .into_iter()
            .find(|state| state.as_str() == value)
    }
}

/// Which interactions a plan samples from; an empty list places no condition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    pub channels: Vec<String>,
    pub team_ids: Vec<String>,
    pub agent_ids: Vec<String>,
    pub regions: Vec<String>,
    pub min_csat: Option<i32>,
    pub max_csat: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanInput {
    pub display_name: String,
    pub rubric_id: Uuid,
    pub filter: Filter,
    pub per_agent_count: u32,
    pub period: Period,
    pub strategy: Strategy,
    pub reviewer_ids: Vec<String>,
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewPlan {
    pub request_id: Option<String>,
    pub fingerprint: Vec<u8>,
    pub input: PlanInput,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub id: Uuid,
    pub input: PlanInput,
    pub create_time: DateTime<Utc>,
}

/// Checks what a plan needs besides its rubric.
pub fn check_plan(input: &PlanInput, violations: &mut Violations) {
    violations.check_length(
        "plan.display_name",
        input.display_name.trim(),
        1,
        MAX_DISPLAY_NAME_CHARS,
    );
    if !(1..=MAX_PER_AGENT).contains(&input.per_agent_count) {
        violations.add(
            "plan.per_agent_count",
            format!("must be 1..{MAX_PER_AGENT}, got {}", input.per_agent_count),
        );
    }
    if input.reviewer_ids.is_empty() || input.reviewer_ids.len() > MAX_REVIEWERS {
        violations.add(
            "plan.reviewer_ids",
            format!("must name 1..{MAX_REVIEWERS} reviewers"),
        );
    }
    for (index, reviewer) in input.reviewer_ids.iter().enumerate() {
        let field = format!("plan.reviewer_ids[{index}]");
        check_external_id(&field, reviewer, violations);
        if input.reviewer_ids[..index].contains(reviewer) {
            violations.add(field, format!("reviewer {reviewer:?} is listed twice"));
        }
    }
    let filter = &input.filter;
    for (name, values) in [
        ("channels", &filter.channels),
        ("team_ids", &filter.team_ids),
        ("agent_ids", &filter.agent_ids),
        ("regions", &filter.regions),
    ] {
        if values.len() > MAX_FILTER_VALUES {
            violations.add(
                format!("plan.filter.{name}"),
                format!("at most {MAX_FILTER_VALUES} values"),
            );
        }
        for (index, value) in values.iter().enumerate() {
            violations.check_length(&format!("plan.filter.{name}[{index}]"), value, 1, 256);
        }
    }
    for (name, csat) in [("min_csat", filter.min_csat), ("max_csat", filter.max_csat)] {
        if csat.is_some_and(|csat| !(1..=5).contains(&csat)) {
            violations.add(format!("plan.filter.{name}"), "must be 1..5");
        }
    }
    if let (Some(min), Some(max)) = (filter.min_csat, filter.max_csat)
        && min > max
    {
        violations.add("plan.filter.max_csat", "must not be below min_csat");
    }
}

/// An interaction handed to a reviewer by a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub id: Uuid,
    pub plan_id: Uuid,
    pub interaction_id: Uuid,
    pub agent_id: String,
    pub channel: String,
    pub reviewer_id: String,
    pub rubric_id: Uuid,
    pub period_start: DateTime<Utc>,
    pub state: AssignmentState,
    pub evaluation_id: Option<Uuid>,
    pub skip_reason: String,
    pub create_time: DateTime<Utc>,
    pub close_time: Option<DateTime<Utc>>,
}

/// How many of a period's assignments one reviewer has for one agent in one state.
#[derive(Debug, Clone, PartialEq)]
pub struct CoverageCount {
    pub reviewer_id: String,
    pub agent_id: String,
    pub state: AssignmentState,
    pub count: u64,
}

/// Assignments of a reviewer or an agent, by state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Coverage {
    pub id: String,
    pub assigned: u64,
    pub done: u64,
    pub skipped: u64,
    pub open: u64,
}

impl Coverage {
    /// done / (assigned − skipped): how much of what is left to do is done.
    pub fn done_share(&self) -> Option<f64> {
        let due = self.assigned - self.skipped;
        (due > 0).then(|| self.done as f64 / due as f64)
    }

    fn add(&mut self, state: AssignmentState, count: u64) {
        self.assigned += count;
        match state {
            AssignmentState::Open => self.open += count,
            AssignmentState::Done => self.done += count,
            AssignmentState::Skipped => self.skipped += count,
        }
    }
}

/// The total, per reviewer and per agent (each sorted by id).
pub fn coverage(counts: &[CoverageCount]) -> (Coverage, Vec<Coverage>, Vec<Coverage>) {
    let mut total = Coverage::default();
    let mut reviewers: BTreeMap<&str, Coverage> = BTreeMap::new();
    let mut agents: BTreeMap<&str, Coverage> = BTreeMap::new();
    for count in counts {
        total.add(count.state, count.count);
        reviewers
            .entry(&count.reviewer_id)
            .or_default()
            .add(count.state, count.count);
        agents
            .entry(&count.agent_id)
            .or_default()
            .add(count.state, count.count);
    }
    let named = |map: BTreeMap<&str, Coverage>| {
        map.into_iter()
            .map(|(id, coverage)| Coverage {
                id: id.to_owned(),
                ..coverage
            })
            .collect()
    };
    (total, named(reviewers), named(agents))
}

/// An interaction that may be sampled.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub interaction_id: Uuid,
    pub agent_id: String,
    pub channel: String,
    pub csat: Option<i32>,
}

/// A sampled interaction and its reviewer.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    pub candidate: Candidate,
    pub reviewer_id: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sample {
    pub picks: Vec<Pick>,
    /// Agents given fewer than the quota, with how many of their interactions were
    /// eligible.
    pub short_agents: Vec<(String, u32)>,
}

/// Samples a period: up to `per_agent_count` of each agent's candidates by the plan's
/// strategy, assigned round-robin to the reviewers (never to the agent's own id).
/// `agents` are every agent of the period the plan's filter matches, so that one with
/// nothing left eligible is reported short too.
pub fn sample(
    plan: &Plan,
    period_start: DateTime<Utc>,
    mut candidates: Vec<Candidate>,
    agents: &BTreeSet<String>,
) -> Sample {
    // The order the store returned them in must not matter.
    candidates.sort_by(|a, b| {
        a.agent_id
            .cmp(&b.agent_id)
            .then(a.interaction_id.cmp(&b.interaction_id))
    });
    let mut by_agent: BTreeMap<String, Vec<Candidate>> = agents
        .iter()
        .map(|agent| (agent.clone(), Vec::new()))
        .collect();
    for candidate in candidates {
        by_agent
            .entry(candidate.agent_id.clone())
            .or_default()
            .push(candidate);
    }
    let quota = plan.input.per_agent_count as usize;
    let period = period_start.timestamp_micros().to_le_bytes();
    let mut chosen: Vec<(String, usize, Vec<Candidate>)> = by_agent
        .into_iter()
        .map(|(agent, eligible)| {
            let mut rng = SplitMix64::from_parts(&[
                &plan.input.seed.to_le_bytes(),
                plan.id.as_bytes(),
                &period,
                agent.as_bytes(),
            ]);
            let count = eligible.len();
            let picked = pick(plan.input.strategy, eligible, quota, &mut rng);
            (agent, count, picked)
        })
        .collect();
    // Agents who also review can go to fewer reviewers: handed out first, the others'
    // work then evens the loads out.
    chosen.sort_by_key(|(agent, _, _)| !plan.input.reviewer_ids.contains(agent));
    let mut reviewers = Rotation::new(&plan.input.reviewer_ids);
    let mut sample = Sample::default();
    for (agent, count, picked) in chosen {
        let mut assigned = 0;
        for candidate in picked {
            if let Some(reviewer_id) = reviewers.next_for(&agent) {
                sample.picks.push(Pick {
                    candidate,
                    reviewer_id,
                });
                assigned += 1;
            }
        }
        if assigned < quota {
            sample
                .short_agents
                .push((agent, u32::try_from(count).unwrap_or(u32::MAX)));
        }
    }
    sample.short_agents.sort();
    sample
}

/// The replacement for a skipped assignment among the agent's remaining candidates: the
/// plan's strategy would have picked it next (for a stratified plan, from the skipped
/// interaction's channel when it has one left).
pub fn replacement(
    plan: &Plan,
    skipped: Uuid,
    skipped_channel: &str,
    mut candidates: Vec<Candidate>,
) -> Option<Candidate> {
    candidates.sort_by_key(|candidate| candidate.interaction_id);
    let mut rng = SplitMix64::from_parts(&[&plan.input.seed.to_le_bytes(), skipped.as_bytes()]);
    if plan.input.strategy == Strategy::StratifiedChannel
        && candidates.iter().any(|c| c.channel == skipped_channel)
    {
        candidates.retain(|c| c.channel == skipped_channel);
    }
    let strategy = match plan.input.strategy {
        Strategy::LowCsatFirst => Strategy::LowCsatFirst,
        _ => Strategy::Random,
    };
    pick(strategy, candidates, 1, &mut rng).into_iter().next()
}

/// Up to `quota` of one agent's candidates (sorted by id) by `strategy`.
fn pick(
    strategy: Strategy,
    mut eligible: Vec<Candidate>,
    quota: usize,
    rng: &mut SplitMix64,
) -> Vec<Candidate> {
    match strategy {
        Strategy::Random => {
            rng.shuffle(&mut eligible);
            eligible.truncate(quota);
            eligible
        }
        Strategy::LowCsatFirst => {
            rng.shuffle(&mut eligible);
            // Stable: equal CSAT keeps the shuffled order, so ties are random.
            eligible.sort_by_key(|candidate| candidate.csat.unwrap_or(i32::MAX));
            eligible.truncate(quota);
            eligible
        }
        Strategy::StratifiedChannel => {
            let mut channels: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
            for candidate in eligible {
                channels
                    .entry(candidate.channel.clone())
                    .or_default()
                    .push(candidate);
            }
            let volumes: Vec<(String, usize)> = channels
                .iter()
                .map(|(channel, items)| (channel.clone(), items.len()))
                .collect();
            let shares = largest_remainder(&volumes, quota);
            let mut picked = Vec::new();
            for (channel, share) in shares {
                let mut items = channels.remove(&channel).unwrap_or_default();
                rng.shuffle(&mut items);
                items.truncate(share);
                picked.extend(items);
            }
            picked
        }
    }
}

/// Splits `quota` (at most the total) across groups in proportion to their volume:
/// each gets the floor of its exact share, and what is left goes one by one to the
/// largest remainders (ties: larger volume, then name). In the groups' order.
pub fn largest_remainder(volumes: &[(String, usize)], quota: usize) -> Vec<(String, usize)> {
    let total: usize = volumes.iter().map(|(_, volume)| volume).sum();
    if total == 0 {
        return volumes.iter().map(|(name, _)| (name.clone(), 0)).collect();
    }
    let quota = quota.min(total);
    let mut shares: Vec<(String, usize, usize, usize)> = volumes
        .iter()
        .map(|(name, volume)| {
            let exact = quota * volume;
            (name.clone(), exact / total, exact % total, *volume)
        })
        .collect();
    let given: usize = shares.iter().map(|share| share.1).sum();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|&a, &b| {
        shares[b]
            .2
            .cmp(&shares[a].2)
            .then(shares[b].3.cmp(&shares[a].3))
            .then(shares[a].0.cmp(&shares[b].0))
    });
    for &index in order.iter().take(quota - given) {
        shares[index].1 += 1;
    }
    shares
        .into_iter()
        .map(|(name, share, _, _)| (name, share))
        .collect()
}

/// Hands out reviewers: the least loaded one that is not the agent, starting after the
/// last one given, so equal loads go round-robin and loads differ by at most one.
struct Rotation<'a> {
    reviewers: &'a [String],
    loads: Vec<usize>,
    next: usize,
}

impl<'a> Rotation<'a> {
    fn new(reviewers: &'a [String]) -> Self {
        Self {
            reviewers,
            loads: vec![0; reviewers.len()],
            next: 0,
        }
    }

    fn next_for(&mut self, agent: &str) -> Option<String> {
        let count = self.reviewers.len();
        let chosen = (0..count)
            .map(|offset| (self.next + offset) % count)
            .filter(|&index| self.reviewers[index] != agent)
            .min_by_key(|&index| self.loads[index])?;
        self.loads[chosen] += 1;
        self.next = (chosen + 1) % count;
        Some(self.reviewers[chosen].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::Strategy;
    use super::*;
    use proptest::prelude::{prop_assert, prop_assert_eq, proptest};

    fn plan(strategy: Strategy, quota: u32, reviewers: &[&str]) -> Plan {
        Plan {
            id: Uuid::from_u128(7),
            input: PlanInput {
                display_name: "weekly".into(),
                rubric_id: Uuid::from_u128(1),
                filter: Filter::default(),
                per_agent_count: quota,
                period: Period::Week,
                strategy,
                reviewer_ids: reviewers.iter().map(|r| r.to_string()).collect(),
                seed: 42,
            },
            create_time: DateTime::from_timestamp(0, 0).unwrap(),
        }
    }

    fn candidates(agent: &str, channels: &[(&str, usize)], first: u128) -> Vec<Candidate> {
        let mut id = first;
        let mut all = Vec::new();
        for (channel, count) in channels {
            for _ in 0..*count {
                id += 1;
                all.push(Candidate {
                    interaction_id: Uuid::from_u128(id),
                    agent_id: agent.into(),
                    channel: channel.to_string(),
                    csat: Some(((id % 5) + 1) as i32),
                });
            }
        }
        all
    }

    fn start() -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_547_200, 0).unwrap()
    }

    #[test]
    fn a_week_starts_on_monday_and_a_month_on_the_first() {
        let wednesday = DateTime::parse_from_rfc3339("2026-12-02T15:30:00Z")
            .unwrap()
            .to_utc();
        let (start, end) = Period::Week.containing(wednesday);
        assert_eq!(start.to_rfc3339(), "2026-11-30T00:00:00+00:00");
        assert_eq!(end.to_rfc3339(), "2026-12-07T00:00:00+00:00");
        let (start, end) = Period::Month.containing(wednesday);
        assert_eq!(start.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(end.to_rfc3339(), "2027-01-01T00:00:00+00:00");
    }

    #[test]
    fn largest_remainder_splits_a_quota_by_volume() {
        let volumes = [
            ("chat".to_string(), 50),
            ("email".to_string(), 30),
            ("voice".to_string(), 20),
        ];
        // 7 × (0.5, 0.3, 0.2) = 3.5, 2.1, 1.4 → floors 3, 2, 1; the one left goes to chat.
        assert_eq!(
            largest_remainder(&volumes, 7),
            [
                ("chat".to_string(), 4),
                ("email".to_string(), 2),
                ("voice".to_string(), 1)
            ]
        );
        assert_eq!(
            largest_remainder(&volumes, 1000)
                .iter()
                .map(|s| s.1)
                .sum::<usize>(),
            100
        );
    }

    #[test]
    fn the_same_plan_seed_and_period_give_the_same_sample_in_any_input_order() {
        let plan = plan(Strategy::Random, 3, &["r1", "r2"]);
        let mut all = candidates("a", &[("chat", 10)], 0);
        all.extend(candidates("b", &[("chat", 10)], 100));
        let first = sample(&plan, start(), all.clone(), &BTreeSet::new());
        all.reverse();
        assert_eq!(sample(&plan, start(), all.clone(), &BTreeSet::new()), first);
        let next_week = sample(&plan, start() + Duration::days(7), all, &BTreeSet::new());
        assert_ne!(next_week.picks, first.picks);
    }

    #[test]
    fn stratified_sampling_follows_the_agents_channel_volumes() {
        let plan = plan(Strategy::StratifiedChannel, 10, &["r1"]);
        let all = candidates("a", &[("chat", 60), ("email", 30), ("voice", 10)], 0);
        let picked = sample(&plan, start(), all, &BTreeSet::new()).picks;
        let count = |channel: &str| {
            picked
                .iter()
                .filter(|p| p.candidate.channel == channel)
                .count()
        };
        assert_eq!((count("chat"), count("email"), count("voice")), (6, 3, 1));
    }

    #[test]
    fn low_csat_first_takes_the_lowest_scores() {
        let plan = plan(Strategy::LowCsatFirst, 4, &["r1"]);
        let picked = sample(
            &plan,
            start(),
            candidates("a", &[("chat", 20)], 0),
            &BTreeSet::new(),
        )
        .picks;
        assert!(
            picked.iter().all(|p| p.candidate.csat == Some(1)),
            "{picked:?}"
        );
    }

    #[test]
    fn agents_short_of_the_quota_are_listed_with_their_count() {
        let plan = plan(Strategy::Random, 5, &["r1"]);
        let mut all = candidates("a", &[("chat", 2)], 0);
        all.extend(candidates("b", &[("chat", 9)], 100));
        let seen: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
        let sample = sample(&plan, start(), all, &seen);
        assert_eq!(sample.picks.len(), 7);
        assert_eq!(
            sample.short_agents,
            [("a".to_string(), 2), ("c".to_string(), 0)],
            "c had interactions, none of them eligible"
        );
    }

    #[test]
    fn a_reviewer_never_gets_their_own_interactions() {
        let plan = plan(Strategy::Random, 4, &["a", "b"]);
        let mut all = candidates("a", &[("chat", 6)], 0);
        all.extend(candidates("b", &[("chat", 6)], 100));
        let picks = sample(&plan, start(), all, &BTreeSet::new()).picks;
        assert_eq!(picks.len(), 8);
        assert!(picks.iter().all(|p| p.reviewer_id != p.candidate.agent_id));
    }

    #[test]
    fn a_replacement_comes_from_the_skipped_channel_when_stratified() {
        let plan = plan(Strategy::StratifiedChannel, 1, &["r1"]);
        let rest = candidates("a", &[("chat", 5), ("email", 5)], 0);
        let chosen = replacement(&plan, Uuid::from_u128(99), "email", rest.clone()).unwrap();
        assert_eq!(chosen.channel, "email");
        assert_eq!(
            replacement(&plan, Uuid::from_u128(99), "email", rest),
            Some(chosen)
        );
        assert_eq!(
            replacement(&plan, Uuid::from_u128(99), "chat", Vec::new()),
            None
        );
    }

    proptest! {
        #[test]
        fn reviewer_loads_differ_by_at_most_one(
            agents in proptest::collection::vec(1usize..30, 1..20),
            reviewers in 1usize..8,
            quota in 1u32..12,
        ) {
            let names: Vec<String> = (0..reviewers).map(|r| format!("rev-{r}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let plan = plan(Strategy::Random, quota, &refs);
            let mut all = Vec::new();
            for (index, count) in agents.iter().enumerate() {
                all.extend(candidates(&format!("agent-{index}"), &[("chat", *count)], index as u128 * 1_000));
            }
            let picks = sample(&plan, start(), all, &BTreeSet::new()).picks;
            let mut loads = vec![0usize; reviewers];
            for pick in &picks {
                loads[names.iter().position(|n| *n == pick.reviewer_id).unwrap()] += 1;
            }
            let (min, max) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
            prop_assert!(max - min <= 1, "{loads:?}");
            let expected: usize = agents.iter().map(|c| (*c).min(quota as usize)).sum();
            prop_assert_eq!(picks.len(), expected);
        }
    }
}
