//! Correlation of quality with customer satisfaction (SCORING.md, "CSAT correlation").

/// Pearson's r of paired samples; absent with fewer than 3 pairs or zero variance on
/// either side.
pub fn pearson(pairs: &[(f64, f64)]) -> Option<f64> {
    if pairs.len() < 3 {
        return None;
    }
    let n = pairs.len() as f64;
    let mean_x = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = pairs.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in pairs {
        let (dx, dy) = (x - mean_x, y - mean_y);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    Some((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// Ranks from 1, ties sharing the average of the ranks they span.
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end hold ranks start+1..=end; their mean:
        let rank = (start + 1 + end) as f64 / 2.0;
        for &index in &order[start..end] {
            ranks[index] = rank;
        }
        start = end;
    }
    ranks
}

/// Spearman's ρ: Pearson's r of the average ranks.
pub fn spearman(pairs: &[(f64, f64)]) -> Option<f64> {
    let xs: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let ys: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let ranked: Vec<(f64, f64)> = average_ranks(&xs)
        .into_iter()
        .zip(average_ranks(&ys))
        .collect();
    pearson(&ranked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_of_a_perfect_line_is_one_and_of_its_mirror_minus_one() {
        let up = [(1.0, 2.0), (2.0, 4.0), (3.0, 6.0), (4.0, 8.0)];
        assert!((pearson(&up).unwrap() - 1.0).abs() < 1e-12);
        let down: Vec<_> = up.iter().map(|(x, y)| (*x, -y)).collect();
        assert!((pearson(&down).unwrap() + 1.0).abs() < 1e-12);
    }

    #[test]
    fn pearson_matches_a_hand_computed_value() {
        // x = 1,2,3,4,5; y = 2,4,5,4,5: r = 6 / sqrt(10 * 6) = 0.7745966692414834
        let pairs = [(1.0, 2.0), (2.0, 4.0), (3.0, 5.0), (4.0, 4.0), (5.0, 5.0)];
        assert!((pearson(&pairs).unwrap() - 0.7745966692414834).abs() < 1e-12);
    }

    #[test]
    fn correlation_is_absent_with_under_3_pairs_or_zero_variance() {
        assert_eq!(pearson(&[(1.0, 1.0), (2.0, 2.0)]), None);
        assert_eq!(pearson(&[(1.0, 3.0), (2.0, 3.0), (3.0, 3.0)]), None);
        assert_eq!(spearman(&[(5.0, 1.0), (5.0, 2.0), (5.0, 3.0)]), None);
    }

    #[test]
    fn ties_share_the_average_rank() {
        assert_eq!(
            average_ranks(&[10.0, 20.0, 20.0, 30.0]),
            [1.0, 2.5, 2.5, 4.0]
        );
        assert_eq!(average_ranks(&[3.0, 1.0, 3.0, 3.0]), [3.0, 1.0, 3.0, 3.0]);
    }

    #[test]
    fn spearman_sees_a_monotonic_but_curved_relation_as_one() {
        let pairs = [
            (1.0, 1.0),
            (2.0, 8.0),
            (3.0, 27.0),
            (4.0, 64.0),
            (5.0, 125.0),
        ];
        assert!((spearman(&pairs).unwrap() - 1.0).abs() < 1e-12);
        assert!(pearson(&pairs).unwrap() < 1.0);
    }

    #[test]
    fn spearman_with_ties_matches_a_hand_computed_value() {
        // ranks x = 1, 2.5, 2.5, 4; ranks y = 1, 2, 3, 4
        let pairs = [(1.0, 10.0), (2.0, 20.0), (2.0, 30.0), (3.0, 40.0)];
        let expected = pearson(&[(1.0, 1.0), (2.5, 2.0), (2.5, 3.0), (4.0, 4.0)]).unwrap();
        assert!((spearman(&pairs).unwrap() - expected).abs() < 1e-12);
    }
}
