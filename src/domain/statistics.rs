//! Correlation of quality with customer satisfaction (SCORING.md, "CSAT correlation"),
//! and Welch's t-test for whether coaching changed an agent's scores.

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

/// Welch's unequal-variances t-test of two samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WelchTest {
    /// (mean of `after` − mean of `before`) / its standard error.
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub degrees_of_freedom: f64,
    /// Two-sided.
    pub p_value: f64,
}

/// Welch's t-test of `after` against `before`; absent under 2 values on a side or when
/// neither side varies (the standard error is then 0).
pub fn welch_t_test(before: &[f64], after: &[f64]) -> Option<WelchTest> {
    if before.len() < 2 || after.len() < 2 {
        return None;
    }
    let (mean_b, var_b) = mean_and_variance(before);
    let (mean_a, var_a) = mean_and_variance(after);
    let (se_b, se_a) = (var_b / before.len() as f64, var_a / after.len() as f64);
    let se = se_b + se_a;
    if se <= 0.0 {
        return None;
    }
    let t = (mean_a - mean_b) / se.sqrt();
    let degrees_of_freedom = se * se
        / (se_b * se_b / (before.len() - 1) as f64 + se_a * se_a / (after.len() - 1) as f64);
    let p_value = student_t_two_sided(t, degrees_of_freedom);
    Some(WelchTest {
        t,
        degrees_of_freedom,
        p_value,
    })
}

/// The mean and the unbiased sample variance.
fn mean_and_variance(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let squares = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>();
    (mean, squares / (n - 1.0))
}

/// P(|T| ≥ |t|) for Student's t with `df` degrees of freedom: I_{df/(df+t²)}(df/2, 1/2).
pub fn student_t_two_sided(t: f64, df: f64) -> f64 {
    if t.is_infinite() {
        return 0.0;
    }
    regularized_incomplete_beta(df / (df + t * t), df / 2.0, 0.5).clamp(0.0, 1.0)
}

/// I_x(a, b) by the continued fraction of Numerical Recipes (`betacf`), using the
/// symmetry I_x(a, b) = 1 − I_{1−x}(b, a) where the fraction converges slowly.
fn regularized_incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_continued_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_continued_fraction(1.0 - x, b, a) / b
    }
}

fn beta_continued_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms: about 15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEFFICIENTS[0];
    for (index, coefficient) in COEFFICIENTS.iter().enumerate().skip(1) {
        sum += coefficient / (x + index as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
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

    #[test]
    fn welch_matches_scipy_on_unequal_samples() {
        // scipy.stats.ttest_ind(after, before, equal_var=False)
        let before = [62.0, 70.0, 55.0, 68.0, 60.0];
        let after = [75.0, 80.0, 72.0, 90.0, 78.0, 85.0];
        let test = welch_t_test(&before, &after).unwrap();
        assert!((test.t - 4.438_980_226_870_295).abs() < 1e-9, "{test:?}");
        assert!(
            (test.degrees_of_freedom - 8.870_236_142_546_895).abs() < 1e-9,
            "{test:?}"
        );
        assert!(
            (test.p_value - 0.001_684_843_255_986_331_4).abs() < 1e-9,
            "{test:?}"
        );
    }

    #[test]
    fn welch_is_absent_under_two_values_a_side_or_without_variance() {
        assert_eq!(welch_t_test(&[1.0], &[2.0, 3.0]), None);
        assert_eq!(welch_t_test(&[5.0, 5.0], &[7.0, 7.0, 7.0]), None);
        assert!(welch_t_test(&[5.0, 5.0], &[6.0, 8.0]).is_some());
    }

    #[test]
    fn the_t_distribution_tail_matches_known_values() {
        // Two-sided p of t = 2.0 with 10 df, and of t = 1.96 with a large df (≈ normal).
        assert!((student_t_two_sided(2.0, 10.0) - 0.073_388_034_770_740_37).abs() < 1e-10);
        assert!((student_t_two_sided(1.959_963_984_540_054, 1e7) - 0.05).abs() < 1e-6);
        assert_eq!(student_t_two_sided(0.0, 3.0), 1.0);
    }
}
