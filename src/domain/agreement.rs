//! Inter-rater reliability for reliability data laid out as units × coders,
//! where any cell may be missing.
//!
//! Computes Krippendorff's alpha at the nominal, ordinal and interval levels of
//! measurement, following Krippendorff, K. (2011), *Computing Krippendorff's
//! Alpha-Reliability*, Annenberg School for Communication, University of
//! Pennsylvania; the share of coder pairs that agree exactly; and a percentile
//! bootstrap interval for alpha obtained by resampling units.
//!
//! Each unit is given as the values its coders assigned to it, with missing
//! cells simply absent. Only pairable units — those holding at least two values
//! — say anything about agreement, so every other unit is ignored.

use super::random::SplitMix64;
use std::cmp::Ordering;

/// Level of measurement, which decides how much two differing values disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Values are unordered categories: any difference is a full disagreement.
    Nominal,
    /// Values are ranks: a difference weighs as much as the values lying
    /// between the two, as observed in the data.
    Ordinal,
    /// Values are on an interval scale: a difference weighs its square.
    Interval,
}

/// Number of resamples conventionally used for [`bootstrap_interval`].
pub const BOOTSTRAP_RESAMPLES: usize = 1_000;

/// Krippendorff's alpha, α = 1 − D_o / D_e, for `units` at `level`.
///
/// Returns `None` when there are fewer than two pairable values, when every
/// pairable value is the same (the expected disagreement D_e is zero), or when
/// the result is not finite (e.g. non-finite values at the interval level).
pub fn alpha(units: &[Vec<f64>], level: Level) -> Option<f64> {
    let data = Reliability::new(units);
    let weights = vec![1; data.units.len()];
    data.alpha(level, &weights, &mut Scratch::new(data.values.len()))
}

/// Share of agreeing pairs among all unordered coder pairs within pairable
/// units, or `None` when there are no such pairs.
pub fn exact_agreement(units: &[Vec<f64>]) -> Option<f64> {
    let data = Reliability::new(units);
    let (agreeing, pairs) = data
        .units
        .iter()
        .fold((0.0, 0.0), |(agreeing, pairs), unit| {
            let same: f64 = unit.counts.iter().map(|&(_, c)| c * (c - 1.0)).sum();
            (
                agreeing + same / 2.0,
                pairs + unit.size * (unit.size - 1.0) / 2.0,
            )
        });
    (pairs > 0.0).then(|| agreeing / pairs)
}

/// 95% percentile bootstrap interval `(low, high)` for alpha at `level`.
///
/// Draws `resamples` resamples of the pairable units with replacement, each as
/// large as the original, from a SplitMix64 generator seeded with `seed`, so
/// the same inputs always give the same interval. Resamples whose alpha is
/// undefined are dropped; the bounds are the nearest-rank 2.5th and 97.5th
/// percentiles of the rest. Returns `None` when alpha of the original data is
/// undefined or no resample yields a value.
pub fn bootstrap_interval(
    units: &[Vec<f64>],
    level: Level,
    resamples: usize,
    seed: u64,
) -> Option<(f64, f64)> {
    let data = Reliability::new(units);
    let unit_count = data.units.len();
    let mut scratch = Scratch::new(data.values.len());
    let mut weights = vec![1; unit_count];
    data.alpha(level, &weights, &mut scratch)?;

    let mut rng = SplitMix64::new(seed);
    let mut estimates = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        // Alpha does not depend on the order of units, so a resample is fully
        // described by how many times each unit was drawn.
        weights.fill(0);
        for _ in 0..unit_count {
            weights[rng.below(unit_count)] += 1;
        }
        if let Some(estimate) = data.alpha(level, &weights, &mut scratch) {
            estimates.push(estimate);
        }
    }
    if estimates.is_empty() {
        return None;
    }
    estimates.sort_by(f64::total_cmp);
    Some((
        nearest_rank(&estimates, 25, 1_000),
        nearest_rank(&estimates, 975, 1_000),
    ))
}

/// Nearest-rank percentile `numerator / denominator` of a non-empty sorted
/// slice; integer arithmetic keeps the rank exact where `p · N` would round.
fn nearest_rank(sorted: &[f64], numerator: usize, denominator: usize) -> f64 {
    let rank = (sorted.len() * numerator).div_ceil(denominator);
    sorted[rank.saturating_sub(1).min(sorted.len() - 1)]
}

/// Maps -0.0 to 0.0 so that values compare by bit pattern under total order.
fn normalise(value: f64) -> f64 {
    if value == 0.0 { 0.0 } else { value }
}

/// Pairable units indexed over the distinct values they contain, so that any
/// resample can be evaluated without revisiting the raw values.
struct Reliability {
    /// Distinct pairable values in ascending total order.
    values: Vec<f64>,
    units: Vec<Unit>,
}

struct Unit {
    /// `(index into values, how many coders gave it)`, one entry per distinct
    /// value in the unit.
    counts: Vec<(usize, f64)>,
    /// m_u, the number of values in the unit.
    size: f64,
    /// The unit's share of Σ_ck o_ck δ²_ck at the nominal level; it does not
    /// depend on the other units, so it is computed once.
    nominal: f64,
    /// As `nominal`, at the interval level.
    interval: f64,
}

impl Reliability {
    fn new(units: &[Vec<f64>]) -> Self {
        let pairable = || units.iter().filter(|unit| unit.len() >= 2);
        let mut values: Vec<f64> = pairable()
            .flat_map(|unit| unit.iter().map(|&v| normalise(v)))
            .collect();
        values.sort_by(f64::total_cmp);
        values.dedup_by(|a, b| a.total_cmp(b) == Ordering::Equal);

        let units = pairable()
            .map(|unit| {
                let mut indices: Vec<usize> = unit
                    .iter()
                    .map(|&v| {
                        let v = normalise(v);
                        values
                            .binary_search_by(|probe| probe.total_cmp(&v))
                            .expect("every pairable value was collected")
                    })
                    .collect();
                indices.sort_unstable();
                let mut counts: Vec<(usize, f64)> = Vec::new();
                for index in indices {
                    match counts.last_mut() {
                        Some((last, count)) if *last == index => *count += 1.0,
                        _ => counts.push((index, 1.0)),
                    }
                }
                let size = unit.len() as f64;
                let nominal =
                    counts.iter().map(|&(_, c)| c * (size - c)).sum::<f64>() / (size - 1.0);
                let interval = unit_disagreement(&counts, size, &values);
                Unit {
                    counts,
                    size,
                    nominal,
                    interval,
                }
            })
            .collect();
        Self { values, units }
    }

    /// Alpha over the units taken `weights[u]` times each.
    fn alpha(&self, level: Level, weights: &[usize], scratch: &mut Scratch) -> Option<f64> {
        let Scratch { marginals, ranks } = scratch;
        marginals.fill(0.0);
        for (unit, &weight) in self.units.iter().zip(weights) {
            for &(index, count) in &unit.counts {
                marginals[index] += weight as f64 * count;
            }
        }
        let n: f64 = marginals.iter().sum();
        // With a single value present every δ² is zero, so D_e = 0 regardless
        // of level; checking this exactly avoids dividing by rounding noise.
        let present = marginals.iter().filter(|&&m| m > 0.0).count();
        if n < 2.0 || present < 2 {
            return None;
        }

        let weighted = |share: fn(&Unit) -> f64| -> f64 {
            self.units
                .iter()
                .zip(weights)
                .filter(|&(_, &weight)| weight > 0)
                .map(|(unit, &weight)| weight as f64 * share(unit))
                .sum()
        };
        // Both sums are the definitions' Σ_ck o_ck δ²_ck and Σ_ck n_c n_k δ²_ck;
        // the 1/n and 1/(n(n−1)) factors are applied once at the end.
        let (observed, expected) = match level {
            Level::Nominal => {
                let squares: f64 = marginals.iter().map(|m| m * m).sum();
                (weighted(|unit| unit.nominal), n * n - squares)
            }
            Level::Interval => (
                weighted(|unit| unit.interval),
                total_disagreement(marginals, &self.values, n),
            ),
            Level::Ordinal => {
                // The ordinal δ²_ck = (Σ_{g=c..k} n_g − (n_c + n_k)/2)² equals
                // (z_k − z_c)² with z_g the mid-rank of g among all pairable
                // values, so ordinal data is interval data on these ranks. The
                // ranks depend on the marginals, hence on the resample.
                let mut below = 0.0;
                for (rank, &m) in ranks.iter_mut().zip(marginals.iter()) {
                    *rank = below + m / 2.0;
                    below += m;
                }
                let observed = self
                    .units
                    .iter()
                    .zip(weights)
                    .filter(|&(_, &weight)| weight > 0)
                    .map(|(unit, &weight)| {
                        weight as f64 * unit_disagreement(&unit.counts, unit.size, ranks)
                    })
                    .sum();
                (observed, total_disagreement(marginals, ranks, n))
            }
        };
        if expected > 0.0 {
            let alpha = 1.0 - (n - 1.0) * observed / expected;
            alpha.is_finite().then_some(alpha)
        } else {
            None
        }
    }
}

/// Σ_ck o_ck δ²_ck contributed by one unit, with δ²_ck = (x_c − x_k)².
///
/// Summing over pairs of the unit's distinct values keeps a unanimous unit at
/// exactly zero, so perfect agreement yields exactly 1.
fn unit_disagreement(counts: &[(usize, f64)], size: f64, positions: &[f64]) -> f64 {
    let mut sum = 0.0;
    for (i, &(c, n_c)) in counts.iter().enumerate() {
        for &(k, n_k) in &counts[i + 1..] {
            let d = positions[c] - positions[k];
            sum += n_c * n_k * d * d;
        }
    }
    2.0 * sum / (size - 1.0)
}

/// Σ_ck n_c n_k (x_c − x_k)², via the identity 2n Σ_c n_c (x_c − x̄)²; this is
/// linear in the number of distinct values, which matters for real-valued
/// scores where nearly every value is distinct, and centring avoids the
/// cancellation of the raw-moment form.
fn total_disagreement(marginals: &[f64], positions: &[f64], n: f64) -> f64 {
    let mean = marginals
        .iter()
        .zip(positions)
        .filter(|&(&m, _)| m > 0.0)
        .map(|(&m, &x)| m * x)
        .sum::<f64>()
        / n;
    let spread: f64 = marginals
        .iter()
        .zip(positions)
        .filter(|&(&m, _)| m > 0.0)
        .map(|(&m, &x)| m * (x - mean) * (x - mean))
        .sum();
    2.0 * n * spread
}

/// Buffers reused across resamples so that a bootstrap allocates once.
struct Scratch {
    /// n_c, the coincidence marginals per distinct value.
    marginals: Vec<f64>,
    /// Mid-ranks of the distinct values, used at the ordinal level.
    ranks: Vec<f64>,
}

impl Scratch {
    fn new(distinct: usize) -> Self {
        Self {
            marginals: vec![0.0; distinct],
            ranks: vec![0.0; distinct],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEVELS: [Level; 3] = [Level::Nominal, Level::Ordinal, Level::Interval];

    /// Reliability data written as in the paper: one row per coder, one column
    /// per unit, "." for a missing cell.
    fn from_coder_rows(rows: &[&str]) -> Vec<Vec<f64>> {
        let cells: Vec<Vec<Option<f64>>> = rows
            .iter()
            .map(|row| {
                row.split_whitespace()
                    .map(|cell| (cell != ".").then(|| cell.parse().unwrap()))
                    .collect()
            })
            .collect();
        (0..cells[0].len())
            .map(|unit| cells.iter().filter_map(|row| row[unit]).collect())
            .collect()
    }

    fn krippendorff_2011_example() -> Vec<Vec<f64>> {
        from_coder_rows(&[
            "1 2 3 3 2 1 4 1 2 . . .",
            "1 2 3 3 2 2 4 1 2 5 . 3",
            ". 3 3 3 2 3 4 2 2 5 1 .",
            "1 2 3 3 2 4 4 1 2 5 1 .",
        ])
    }

    fn assert_close(actual: Option<f64>, expected: f64, tolerance: f64) {
        let actual = actual.expect("alpha should be defined");
        assert!(
            (actual - expected).abs() <= tolerance,
            "got {actual}, expected {expected} ± {tolerance}"
        );
    }

    #[test]
    fn krippendorffs_reference_example_gives_nominal_0_743_ordinal_0_815_interval_0_849() {
        let units = krippendorff_2011_example();
        assert_close(alpha(&units, Level::Nominal), 0.743, 1e-3);
        assert_close(alpha(&units, Level::Ordinal), 0.815, 1e-3);
        assert_close(alpha(&units, Level::Interval), 0.849, 1e-3);
    }

    #[test]
    fn reference_example_matches_the_krippendorff_python_package_to_full_precision() {
        let units = krippendorff_2011_example();
        assert_close(alpha(&units, Level::Nominal), 0.743_421_052_631_579, 1e-12);
        assert_close(
            alpha(&units, Level::Ordinal),
            0.815_387_503_754_881_4,
            1e-12,
        );
        assert_close(
            alpha(&units, Level::Interval),
            0.849_107_142_857_142_8,
            1e-12,
        );
    }

    #[test]
    fn perfect_agreement_gives_exactly_one_at_every_level() {
        let integers = vec![
            vec![1.0, 1.0, 1.0],
            vec![2.0, 2.0],
            vec![3.0, 3.0, 3.0, 3.0],
            vec![5.0, 5.0],
            vec![4.0],
        ];
        let reals = vec![vec![0.1, 0.1, 0.1], vec![0.7, 0.7], vec![0.35, 0.35, 0.35]];
        for level in LEVELS {
            assert_eq!(alpha(&integers, level), Some(1.0), "{level:?}");
            assert_eq!(alpha(&reals, level), Some(1.0), "{level:?}");
        }
    }

    #[test]
    fn units_with_a_single_value_are_ignored_as_missing_data() {
        let reference = krippendorff_2011_example();
        let mut padded = reference.clone();
        padded.retain(|unit| unit.len() >= 2);
        padded.extend([vec![9.0], vec![], vec![-3.0], vec![0.5]]);
        for level in LEVELS {
            assert_eq!(alpha(&padded, level), alpha(&reference, level), "{level:?}");
            assert_eq!(
                bootstrap_interval(&padded, level, 200, 7),
                bootstrap_interval(&reference, level, 200, 7),
                "{level:?}"
            );
        }
        assert_eq!(exact_agreement(&padded), exact_agreement(&reference));
    }

    #[test]
    fn fewer_than_two_pairable_values_gives_none() {
        let cases: [Vec<Vec<f64>>; 3] = [
            vec![],
            vec![vec![1.0]],
            vec![vec![1.0], vec![], vec![2.0], vec![3.0]],
        ];
        for units in &cases {
            for level in LEVELS {
                assert_eq!(alpha(units, level), None, "{units:?} {level:?}");
                assert_eq!(bootstrap_interval(units, level, 100, 1), None);
            }
            assert_eq!(exact_agreement(units), None);
        }
    }

    #[test]
    fn all_pairable_values_identical_gives_none_because_expected_disagreement_is_zero() {
        // The lone 4.0 is not pairable, so it does not rescue D_e.
        let units = vec![vec![3.0, 3.0], vec![3.0, 3.0, 3.0], vec![4.0]];
        for level in LEVELS {
            assert_eq!(alpha(&units, level), None, "{level:?}");
            assert_eq!(bootstrap_interval(&units, level, 100, 1), None);
        }
    }

    #[test]
    fn negative_zero_is_the_same_value_as_zero() {
        let units = vec![vec![0.0, -0.0], vec![1.0, 1.0]];
        for level in LEVELS {
            assert_eq!(alpha(&units, level), Some(1.0), "{level:?}");
        }
        assert_eq!(exact_agreement(&[vec![-0.0, 0.0]]), Some(1.0));
    }

    #[test]
    fn exact_agreement_counts_agreeing_pairs_within_units() {
        // Pairs: {1,1,2} → 1 of 3 agree; {3,3} → 1 of 1; {2,5} → 0 of 1;
        // the lone 4 forms no pair. Hence 2 of 5.
        let units = vec![
            vec![1.0, 1.0, 2.0],
            vec![3.0, 3.0],
            vec![4.0],
            vec![2.0, 5.0],
        ];
        assert_eq!(exact_agreement(&units), Some(0.4));
    }

    #[test]
    fn exact_agreement_on_the_reference_example() {
        // Disagreeing pairs are in units 2 (3 of 6), 6 (6 of 6) and 8 (3 of 6);
        // 55 pairs in all, so 43 agree.
        let units = krippendorff_2011_example();
        assert_close(exact_agreement(&units), 43.0 / 55.0, 1e-15);
    }

    #[test]
    fn bootstrap_interval_is_deterministic_for_a_seed() {
        let units = krippendorff_2011_example();
        for level in LEVELS {
            let first = bootstrap_interval(&units, level, BOOTSTRAP_RESAMPLES, 42);
            let second = bootstrap_interval(&units, level, BOOTSTRAP_RESAMPLES, 42);
            assert!(first.is_some());
            assert_eq!(first, second, "{level:?}");
        }
        assert_ne!(
            bootstrap_interval(&units, Level::Interval, BOOTSTRAP_RESAMPLES, 1),
            bootstrap_interval(&units, Level::Interval, BOOTSTRAP_RESAMPLES, 2),
        );
    }

    #[test]
    fn bootstrap_interval_is_ordered_and_contains_the_point_estimate_for_the_reference_data() {
        let units = krippendorff_2011_example();
        for level in LEVELS {
            let estimate = alpha(&units, level).unwrap();
            for seed in [0, 1, 2024] {
                let (low, high) = bootstrap_interval(&units, level, BOOTSTRAP_RESAMPLES, seed)
                    .expect("interval should be defined");
                assert!(low <= high, "{level:?}: {low} > {high}");
                assert!(
                    low <= estimate && estimate <= high,
                    "{level:?}: {estimate} outside [{low}, {high}]"
                );
                assert!(high <= 1.0, "{level:?}: alpha cannot exceed 1, got {high}");
            }
        }
    }

    #[test]
    fn bootstrap_with_no_resamples_gives_none() {
        let units = krippendorff_2011_example();
        assert_eq!(bootstrap_interval(&units, Level::Nominal, 0, 1), None);
    }

    #[test]
    fn nearest_rank_percentiles_pick_the_ceiling_rank() {
        let sorted: Vec<f64> = (1..=1_000).map(f64::from).collect();
        assert_eq!(nearest_rank(&sorted, 25, 1_000), 25.0);
        assert_eq!(nearest_rank(&sorted, 975, 1_000), 975.0);
        let sorted: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(nearest_rank(&sorted, 25, 1_000), 1.0);
        assert_eq!(nearest_rank(&sorted, 975, 1_000), 10.0);
        assert_eq!(nearest_rank(&[3.5], 25, 1_000), 3.5);
        assert_eq!(nearest_rank(&[3.5], 975, 1_000), 3.5);
    }

    #[test]
    fn splitmix64_reproduces_the_published_sequence_for_seed_zero() {
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(rng.next_u64(), 0x06C4_5D18_8009_454F);
    }

    /// Alpha straight from the pairwise form of the definitions, sharing no
    /// code with the implementation under test.
    fn pairwise_alpha(units: &[Vec<f64>], level: Level) -> Option<f64> {
        let pairable: Vec<&Vec<f64>> = units.iter().filter(|unit| unit.len() >= 2).collect();
        let all: Vec<f64> = pairable
            .iter()
            .flat_map(|unit| unit.iter().copied())
            .collect();
        let n = all.len() as f64;
        if all.len() < 2 {
            return None;
        }
        let frequency = |v: f64| all.iter().filter(|&&g| g == v).count() as f64;
        let delta = |a: f64, b: f64| -> f64 {
            match level {
                Level::Nominal => f64::from(u8::from(a != b)),
                Level::Interval => (a - b) * (a - b),
                Level::Ordinal => {
                    let (low, high) = if a <= b { (a, b) } else { (b, a) };
                    let between = all.iter().filter(|&&g| low <= g && g <= high).count() as f64;
                    let d = between - (frequency(a) + frequency(b)) / 2.0;
                    d * d
                }
            }
        };
        let mut observed = 0.0;
        for unit in &pairable {
            let mut within = 0.0;
            for (i, &a) in unit.iter().enumerate() {
                for (j, &b) in unit.iter().enumerate() {
                    if i != j {
                        within += delta(a, b);
                    }
                }
            }
            observed += within / (unit.len() as f64 - 1.0);
        }
        let mut expected = 0.0;
        for (i, &a) in all.iter().enumerate() {
            for (j, &b) in all.iter().enumerate() {
                if i != j {
                    expected += delta(a, b);
                }
            }
        }
        let observed = observed / n;
        let expected = expected / (n * (n - 1.0));
        (expected != 0.0).then(|| 1.0 - observed / expected)
    }

    #[test]
    fn alpha_matches_the_pairwise_definition_on_random_matrices_with_missing_cells() {
        let mut rng = SplitMix64::new(0x5EED);
        let mut defined = 0;
        for trial in 0..300 {
            let unit_count = 1 + rng.below(15);
            let coder_count = 1 + rng.below(6);
            // Narrow value ranges and heavy missingness make the undefined
            // cases (no pairs, one value) turn up too.
            let value_range = 1 + rng.below(6) as u64;
            let missing_per_ten = rng.below(7);
            let units: Vec<Vec<f64>> = (0..unit_count)
                .map(|_| {
                    (0..coder_count)
                        .filter_map(|_| {
                            let value = (rng.next_u64() % value_range) as f64;
                            (rng.below(10) >= missing_per_ten).then_some(value)
                        })
                        .collect()
                })
                .collect();
            for level in LEVELS {
                match (alpha(&units, level), pairwise_alpha(&units, level)) {
                    (Some(actual), Some(expected)) => {
                        defined += 1;
                        assert!(
                            (actual - expected).abs() < 1e-9,
                            "trial {trial} {level:?}: {actual} vs {expected} for {units:?}"
                        );
                    }
                    (None, None) => {}
                    (actual, expected) => {
                        panic!("trial {trial} {level:?}: {actual:?} vs {expected:?} for {units:?}")
                    }
                }
            }
        }
        assert!(defined >= 450, "only {defined} defined cases exercised");
    }
}
