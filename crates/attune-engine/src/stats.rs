//! The frequentist analysis of GrowthBook's stats engine (`gbstats` 0.8.0), formula for formula:
//! `ProportionStatistic`, `SampleMeanStatistic`, `RegressionAdjustedStatistic` (CUPED, theta from
//! the pooled arms), `TwoSidedTTest` (relative lift, delta-method variance, Welch–Satterthwaite
//! degrees of freedom), `SequentialTwoSidedTTest` (always-valid intervals, tuning 5 000) and
//! `check_srm`. `scripts/ci-gbstats.sh` checks the results against gbstats itself.

use statrs::distribution::{ChiSquared, ContinuousCDF, StudentsT};

/// gbstats' default sequential tuning parameter.
pub const SEQUENTIAL_TUNING: f64 = 5000.0;
/// The significance level (95 % intervals).
pub const ALPHA: f64 = 0.05;

/// `ProportionStatistic` (`proportion`) or `SampleMeanStatistic`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    /// Units (people).
    pub n: f64,
    /// Sum of values.
    pub sum: f64,
    /// Sum of squared values (for a proportion, equal to `sum`).
    pub sum_squares: f64,
    /// Whether values are 0/1.
    pub proportion: bool,
}

impl Moments {
    /// The mean.
    pub fn mean(&self) -> f64 {
        if self.n == 0.0 { 0.0 } else { self.sum / self.n }
    }

    /// The variance (p(1 − p) for a proportion, the sample variance otherwise).
    pub fn variance(&self) -> f64 {
        if self.proportion {
            let m = self.mean();
            m * (1.0 - m)
        } else if self.n <= 1.0 {
            0.0
        } else {
            (self.sum_squares - self.sum * self.sum / self.n) / (self.n - 1.0)
        }
    }

    fn joint(a: &Moments, b: &Moments) -> Moments {
        Moments {
            n: a.n + b.n,
            sum: a.sum + b.sum,
            sum_squares: a.sum_squares + b.sum_squares,
            proportion: a.proportion,
        }
    }
}

/// A statistic under test: plain, or regression adjusted with its theta.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Statistic {
    /// Proportion or sample mean.
    Plain(Moments),
    /// `RegressionAdjustedStatistic`.
    Adjusted {
        /// Post-exposure values.
        post: Moments,
        /// Pre-exposure covariate.
        pre: Moments,
        /// Σ post × pre.
        post_pre_sum_of_products: f64,
        /// The adjustment.
        theta: f64,
    },
}

impl From<Moments> for Statistic {
    fn from(m: Moments) -> Statistic {
        Statistic::Plain(m)
    }
}

fn covariance(n: f64, post: &Moments, pre: &Moments, products: f64) -> f64 {
    if n <= 1.0 { 0.0 } else { (products - post.sum * pre.sum / n) / (n - 1.0) }
}

impl Statistic {
    fn n(&self) -> f64 {
        match self {
            Statistic::Plain(m) => m.n,
            Statistic::Adjusted { post, .. } => post.n,
        }
    }

    fn mean(&self) -> f64 {
        match self {
            Statistic::Plain(m) => m.mean(),
            Statistic::Adjusted { post, pre, theta, .. } => post.mean() - theta * pre.mean(),
        }
    }

    fn unadjusted_mean(&self) -> f64 {
        match self {
            Statistic::Plain(m) => m.mean(),
            Statistic::Adjusted { post, .. } => post.mean(),
        }
    }

    fn variance(&self) -> f64 {
        match self {
            Statistic::Plain(m) => m.variance(),
            Statistic::Adjusted { post, pre, post_pre_sum_of_products, theta } => {
                if post.n <= 1.0 {
                    return 0.0;
                }
                let cov = covariance(post.n, post, pre, *post_pre_sum_of_products);
                post.variance() + theta * theta * pre.variance() - 2.0 * theta * cov
            }
        }
    }
}

/// gbstats' `compute_theta` and the statistics it makes: CUPED-adjusted when the pooled pre and
/// post values vary, else the plain post statistics (as gbstats reverts).
pub fn regression_adjusted(a: (Moments, Moments, f64), b: (Moments, Moments, f64)) -> (Statistic, Statistic) {
    let n = a.0.n + b.0.n;
    let post = Moments::joint(&a.0, &b.0);
    let pre = Moments::joint(&a.1, &b.1);
    let theta = if pre.variance() == 0.0 || post.variance() == 0.0 {
        0.0
    } else {
        covariance(n, &post, &pre, a.2 + b.2) / pre.variance()
    };
    if theta == 0.0 {
        return (Statistic::Plain(a.0), Statistic::Plain(b.0));
    }
    let adjusted = |(post, pre, products): (Moments, Moments, f64)| Statistic::Adjusted {
        post,
        pre,
        post_pre_sum_of_products: products,
        theta,
    };
    (adjusted(a), adjusted(b))
}

/// A test's result on the relative lift of `b` over `a`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestResult {
    /// The relative lift, (mean b − mean a) / mean a.
    pub expected: f64,
    /// The interval.
    pub ci: (f64, f64),
    /// The p-value.
    pub p_value: f64,
    /// The lift's standard error.
    pub stddev: f64,
}

struct Relative {
    point: f64,
    variance: f64,
    dof: f64,
    n: f64,
}

/// `TTest`'s relative point estimate, delta-method variance and Welch–Satterthwaite degrees of
/// freedom; `None` where gbstats answers its default output (a zero baseline, a zero variance).
fn relative(a: &Statistic, b: &Statistic) -> Option<Relative> {
    let (ua, ub) = (a.unadjusted_mean(), b.unadjusted_mean());
    let (va, vb) = (a.variance(), b.variance());
    let (na, nb) = (a.n(), b.n());
    if a.mean() == 0.0 || ua == 0.0 || va <= 0.0 || vb <= 0.0 {
        return None;
    }
    let point = (b.mean() - a.mean()) / ua;
    let variance = vb / (ua.powi(2) * nb) + va * ub.powi(2) / (ua.powi(4) * na);
    let dof =
        (vb / nb + va / na).powi(2) / (vb.powi(2) / (nb.powi(2) * (nb - 1.0)) + va.powi(2) / (na.powi(2) * (na - 1.0)));
    (variance.is_finite() && dof.is_finite()).then_some(Relative { point, variance, dof, n: na + nb })
}

/// `TwoSidedTTest(a, b).compute_result()`.
pub fn two_sided(a: &Statistic, b: &Statistic) -> Option<TestResult> {
    let r = relative(a, b)?;
    let t = StudentsT::new(0.0, 1.0, r.dof).ok()?;
    let se = r.variance.sqrt();
    let critical = r.point / se;
    let p_value = 2.0 * (1.0 - t.cdf(critical.abs()));
    let width = t.inverse_cdf(1.0 - ALPHA / 2.0) * se;
    Some(TestResult { expected: r.point, ci: (r.point - width, r.point + width), p_value, stddev: se })
}

/// `SequentialTwoSidedTTest(a, b, SequentialConfig(sequential_tuning_parameter)).compute_result()`:
/// intervals valid however often one looks.
pub fn sequential(a: &Statistic, b: &Statistic, tuning: f64) -> Option<TestResult> {
    let r = relative(a, b)?;
    let rho = ((-2.0 * ALPHA.ln() + (-2.0 * ALPHA.ln() + 1.0).ln()) / tuning).sqrt();
    let n = r.n;
    let s2 = r.variance * n;
    let width = s2.sqrt()
        * ((2.0 * (n * rho.powi(2) + 1.0)) * ((n * rho.powi(2) + 1.0).sqrt() / ALPHA).ln() / (n * rho).powi(2)).sqrt();
    let st2 = r.point.powi(2) * n / r.variance;
    let tr2p1 = n * rho.powi(2) + 1.0;
    let evalue = (rho.powi(2) * st2 / (2.0 * tr2p1)).exp() / tr2p1.sqrt();
    Some(TestResult {
        expected: r.point,
        ci: (r.point - width, r.point + width),
        p_value: (1.0 / evalue).min(1.0),
        stddev: r.variance.sqrt(),
    })
}

/// `check_srm(users, weights)`: the chi-square p-value of the observed split.
pub fn srm_p_value(users: &[u64], weights: &[f64]) -> f64 {
    let total: u64 = users.iter().sum();
    if total == 0 || users.len() < 2 {
        return 1.0;
    }
    let total_weight: f64 = weights.iter().sum();
    let mut x = 0.0;
    for (o, w) in users.iter().zip(weights) {
        if *w <= 0.0 {
            continue;
        }
        let e = w / total_weight * total as f64;
        x += (*o as f64 - e).powi(2) / e;
    }
    ChiSquared::new((users.len() - 1) as f64).map_or(1.0, |c| c.sf(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prop(n: f64, sum: f64) -> Statistic {
        Statistic::Plain(Moments { n, sum, sum_squares: sum, proportion: true })
    }

    /// gbstats 0.8.0: `TwoSidedTTest(ProportionStatistic(n=1000, sum=100),
    /// ProportionStatistic(n=1000, sum=120)).compute_result()`.
    #[test]
    fn matches_gbstats_known_value() {
        let r = two_sided(&prop(1000.0, 100.0), &prop(1000.0, 120.0)).unwrap();
        assert!((r.expected - 0.1999999999999999).abs() < 1e-9);
        assert!((r.ci.0 - -0.10076797484835626).abs() < 1e-9, "{r:?}");
        assert!((r.ci.1 - 0.500767974848356).abs() < 1e-9, "{r:?}");
        assert!((r.p_value - 0.19235020701505579).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn degenerate_inputs_give_none() {
        assert!(two_sided(&prop(1000.0, 0.0), &prop(1000.0, 10.0)).is_none());
        assert!(sequential(&prop(0.0, 0.0), &prop(10.0, 1.0), SEQUENTIAL_TUNING).is_none());
        assert_eq!(srm_p_value(&[0, 0], &[0.5, 0.5]), 1.0);
        assert!(srm_p_value(&[1000, 1300], &[0.5, 0.5]) < 0.001);
    }
}
