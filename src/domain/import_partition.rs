//! Splitting an import batch into parts that can be written at the same time. Rows that
//! share an inline interaction key, an interaction id or a request id stay in one part,
//! so each part decides alone what the whole batch would have: which row of a key wins,
//! and which occurrence of a request id is stored.

use std::collections::HashMap;

use super::evaluation::{InteractionRef, NewEvaluation};

/// Positions of `rows` in at most `parts` parts, each in the order given and sharing no
/// interaction and no request id with another part. Parts are filled in turn, so
/// unrelated rows spread evenly; a part is never empty.
pub fn independent_parts(rows: &[&NewEvaluation], parts: usize) -> Vec<Vec<usize>> {
    let mut components = Components::new(rows.len());
    let mut first_with_key: HashMap<Key<'_>, usize> = HashMap::new();
    for (position, row) in rows.iter().enumerate() {
        let interaction = match &row.interaction {
            InteractionRef::Inline(input) => Key::Inline(&input.source, &input.external_id),
            InteractionRef::Id(id) => Key::Id(id.as_u128()),
        };
        let request = row.request_id.as_deref().map(Key::Request);
        for key in std::iter::once(interaction).chain(request) {
            match first_with_key.get(&key) {
                Some(&earlier) => components.join(earlier, position),
                None => {
                    first_with_key.insert(key, position);
                }
            }
        }
    }
    let parts = parts.max(1);
    let mut part_of_component: HashMap<usize, usize> = HashMap::new();
    let mut sizes = vec![0usize; parts];
    let mut assigned = Vec::with_capacity(rows.len());
    for position in 0..rows.len() {
        let root = components.root(position);
        let part = *part_of_component.entry(root).or_insert_with(|| {
            (0..parts)
                .min_by_key(|&part| sizes[part])
                .expect("at least one part")
        });
        sizes[part] += 1;
        assigned.push(part);
    }
    let mut split = vec![Vec::new(); parts];
    for (position, part) in assigned.into_iter().enumerate() {
        split[part].push(position);
    }
    split.retain(|part| !part.is_empty());
    split
}

#[derive(PartialEq, Eq, Hash)]
enum Key<'r> {
    Inline(&'r str, &'r str),
    Id(u128),
    Request(&'r str),
}

/// Union-find over row positions.
struct Components {
    parent: Vec<usize>,
}

impl Components {
    fn new(len: usize) -> Self {
        Self {
            parent: (0..len).collect(),
        }
    }

    fn root(&mut self, mut position: usize) -> usize {
        while self.parent[position] != position {
            self.parent[position] = self.parent[self.parent[position]];
            position = self.parent[position];
        }
        position
    }

    fn join(&mut self, a: usize, b: usize) {
        let (a, b) = (self.root(a), self.root(b));
        // The earlier row's root stays the root, so a component keeps the part its first
        // row chose.
        if a != b {
            let (keep, joined) = (a.min(b), a.max(b));
            self.parent[joined] = keep;
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::domain::evaluation::EvaluationKind;
    use crate::domain::interaction::InteractionInput;
    use crate::domain::scoring::ScoreOutcome;

    fn row(interaction: InteractionRef, request_id: Option<&str>) -> NewEvaluation {
        NewEvaluation {
            request_id: request_id.map(str::to_owned),
            fingerprint: Vec::new(),
            interaction,
            rubric_id: Uuid::nil(),
            rubric_version: 1,
            reviewer_id: "qa".into(),
            kind: EvaluationKind::Manual,
            ratings: Vec::new(),
            comment: String::new(),
            outcome: ScoreOutcome {
                score: None,
                section_scores: Vec::new(),
                criterion_scores: Vec::new(),
                critical_failed: false,
                passed: true,
            },
            review_time: None,
            interaction_keeps_agent: false,
            calibration_session_id: None,
        }
    }

    fn inline(external_id: &str) -> InteractionRef {
        InteractionRef::Inline(Box::new(InteractionInput {
            source: "zendesk".into(),
            external_id: external_id.into(),
            channel: "chat".into(),
            agent_id: "agent-1".into(),
            team_id: String::new(),
            region: String::new(),
            occur_time: None,
            csat: None,
            nps: None,
            messages: Vec::new(),
            attributes: Default::default(),
        }))
    }

    fn parts_of(rows: &[NewEvaluation], parts: usize) -> Vec<Vec<usize>> {
        independent_parts(&rows.iter().collect::<Vec<_>>(), parts)
    }

    #[test]
    fn unrelated_rows_alternate_between_the_parts_in_stream_order() {
        let rows: Vec<_> = (0..5)
            .map(|n| row(inline(&format!("T-{n}")), Some(&format!("r-{n}"))))
            .collect();
        assert_eq!(parts_of(&rows, 2), [vec![0, 2, 4], vec![1, 3]]);
    }

    #[test]
    fn rows_sharing_an_interaction_key_an_interaction_id_or_a_request_id_share_a_part() {
        let id = Uuid::now_v7();
        let rows = vec![
            row(inline("A"), Some("r-0")),
            row(inline("B"), Some("r-1")),
            row(inline("C"), Some("r-0")),
            row(InteractionRef::Id(id), None),
            row(inline("C"), None),
            row(InteractionRef::Id(id), Some("r-5")),
            row(inline("D"), Some("r-1")),
            row(inline("E"), None),
        ];
        let parts = parts_of(&rows, 2);
        let part_of = |position: usize| parts.iter().position(|part| part.contains(&position));
        for (a, b) in [(0, 2), (2, 4), (3, 5), (1, 6)] {
            assert_eq!(part_of(a), part_of(b), "rows {a} and {b}: {parts:?}");
        }
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), rows.len());
        for part in &parts {
            assert!(part.windows(2).all(|pair| pair[0] < pair[1]), "{parts:?}");
        }
    }

    #[test]
    fn rows_all_linked_make_one_part_and_no_empty_part_is_returned() {
        let rows: Vec<_> = (0..4)
            .map(|n| row(inline(&format!("T-{n}")), Some("same")))
            .collect();
        assert_eq!(parts_of(&rows, 2), [vec![0, 1, 2, 3]]);
        assert!(parts_of(&[], 2).is_empty());
    }
}
