//! Off-policy evaluation (OPE): what would a new policy's click rate have been on traffic that
//! another policy (the logging or behaviour policy) served? The estimators are the ones of Open
//! Bandit Pipeline (obp 0.5.7, `obp.ope.estimators`), on the same inputs and with the same
//! definitions, so `scripts/ci-obp.sh` can check Attune's numbers against obp's to 1e-6:
//!
//! - [`ips`]: inverse propensity scoring, `mean(w_i r_i)` with `w_i = π_e(a_i | x_i, k_i) / p_i`
//!   (no weight clipping, obp's default).
//! - [`snips`]: self-normalized IPS, `Σ w_i r_i / Σ w_i`.
//! - [`direct_method`]: `mean(Σ_a π_e(a | x_i, k_i) q̂(x_i, a, k_i))`, the reward model alone.
//! - [`doubly_robust`]: the direct method plus the IPS-weighted residual of the reward model,
//!   `mean(Σ_a π_e q̂ + w_i (r_i − q̂(x_i, a_i, k_i)))`.
//!
//! A round is one logged impression: context `x_i`, the action `a_i` the logging policy showed
//! at position `k_i`, its reward `r_i` (a click) and its propensity `p_i`. The evaluated policy
//! is given as an [`ActionDist`]: for every round and position a probability distribution over
//! the actions (obp's `action_dist`, shape `n_rounds × n_actions × len_list`).
//!
//! Intervals are 95% normal approximations (obp bootstraps instead; the two agree closely at
//! these sample sizes, and `scripts/obp_check.py` prints both): `value ± 1.96·se` with `se` the
//! standard error of the mean of the per-round terms, and for SNIPS the delta-method standard
//! error `sqrt(Σ (w_i (r_i − V̂))²) / Σ w_i`.
//!
//! [`LogisticModel`] is a small L2-regularized logistic regression fitted by Newton's method,
//! the reward model DR needs (obp's `RegressionModel` with a `LogisticRegression` plays that
//! part there).

use thiserror::Error;

/// The two-sided 95% quantile of the standard normal distribution.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// One logged impression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoggedRound {
    /// The action (item) the logging policy showed, `< n_actions`.
    pub action: usize,
    /// The position it was shown at, `< len_list`.
    pub position: usize,
    /// The observed reward (1.0 for a click, 0.0 otherwise).
    pub reward: f64,
    /// The logging policy's probability of showing `action` at `position` in this context.
    pub pscore: f64,
}

/// Why an estimate could not be computed.
#[derive(Debug, Error, PartialEq)]
pub enum OpeError {
    /// The rounds, the policy's distribution or the reward estimates disagree in shape.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A round's action or position is outside the distribution's table.
    #[error(
        "round {round}: action {action} at position {position} is outside {n_actions} actions × {len_list} positions"
    )]
    OutOfRange {
        /// Index of the round.
        round: usize,
        /// Its action.
        action: usize,
        /// Its position.
        position: usize,
        /// Actions in the table.
        n_actions: usize,
        /// Positions in the table.
        len_list: usize,
    },
    /// A propensity is not in `(0, 1]`.
    #[error("round {round}: propensity {pscore} is not in (0, 1]")]
    BadPscore {
        /// Index of the round.
        round: usize,
        /// The propensity.
        pscore: f64,
    },
    /// The policy's probabilities at a round and position are not a distribution over actions.
    #[error(
        "round {round}, position {position}: the policy's probabilities sum to {sum}, not 1 (or one is outside [0, 1])"
    )]
    NotADistribution {
        /// Index of the round.
        round: usize,
        /// The position.
        position: usize,
        /// The sum of its probabilities over actions.
        sum: f64,
    },
    /// No round is given, or (SNIPS) no round has a positive importance weight.
    #[error("no data to estimate from: {0}")]
    Empty(&'static str),
}

/// A table of `n_rounds × n_actions × len_list` numbers in numpy's C order: the value for
/// round `i`, action `a`, position `k` is at `(i · n_actions + a) · len_list + k`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cube {
    n_rounds: usize,
    n_actions: usize,
    len_list: usize,
    values: Vec<f64>,
}

impl Cube {
    /// A table from its values in C order.
    pub fn new(n_rounds: usize, n_actions: usize, len_list: usize, values: Vec<f64>) -> Result<Cube, OpeError> {
        if values.len() != n_rounds * n_actions * len_list {
            return Err(OpeError::Shape(format!("{} values for {n_rounds} × {n_actions} × {len_list}", values.len())));
        }
        Ok(Cube { n_rounds, n_actions, len_list, values })
    }

    /// A table of zeros.
    pub fn zeros(n_rounds: usize, n_actions: usize, len_list: usize) -> Cube {
        Cube { n_rounds, n_actions, len_list, values: vec![0.0; n_rounds * n_actions * len_list] }
    }

    /// `(n_rounds, n_actions, len_list)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.n_rounds, self.n_actions, self.len_list)
    }

    /// The value for round `round`, action `action`, position `position`.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn get(&self, round: usize, action: usize, position: usize) -> f64 {
        self.values[self.index(round, action, position)]
    }

    /// Sets the value for round `round`, action `action`, position `position`.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn set(&mut self, round: usize, action: usize, position: usize, value: f64) {
        let index = self.index(round, action, position);
        self.values[index] = value;
    }

    /// All values in C order (what numpy's `reshape(n_rounds, n_actions, len_list)` expects).
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    fn index(&self, round: usize, action: usize, position: usize) -> usize {
        assert!(
            round < self.n_rounds && action < self.n_actions && position < self.len_list,
            "index ({round}, {action}, {position}) outside {:?}",
            self.shape()
        );
        (round * self.n_actions + action) * self.len_list + position
    }
}

/// A policy's action distribution: a [`Cube`] whose every `(round, position)` column is a
/// probability distribution over the actions (each in `[0, 1]`, summing to 1 within 1e-9).
#[derive(Debug, Clone, PartialEq)]
pub struct ActionDist(Cube);

impl ActionDist {
    /// Checks that every column of `cube` is a distribution.
    pub fn new(cube: Cube) -> Result<ActionDist, OpeError> {
        let (n_rounds, n_actions, len_list) = cube.shape();
        for round in 0..n_rounds {
            for position in 0..len_list {
                let mut sum = 0.0;
                let mut in_range = true;
                for action in 0..n_actions {
                    let p = cube.get(round, action, position);
                    in_range &= (0.0..=1.0).contains(&p);
                    sum += p;
                }
                if !in_range || (sum - 1.0).abs() > 1e-9 {
                    return Err(OpeError::NotADistribution { round, position, sum });
                }
            }
        }
        Ok(ActionDist(cube))
    }

    /// The distribution of a deterministic ranking policy: round `i` shows `rankings[i][k]` at
    /// position `k` with probability 1. Each ranking must list `len_list` distinct actions.
    pub fn from_rankings(n_actions: usize, len_list: usize, rankings: &[Vec<usize>]) -> Result<ActionDist, OpeError> {
        let mut cube = Cube::zeros(rankings.len(), n_actions, len_list);
        for (round, ranking) in rankings.iter().enumerate() {
            if ranking.len() != len_list {
                return Err(OpeError::Shape(format!(
                    "round {round}: a ranking of {} actions for {len_list} positions",
                    ranking.len()
                )));
            }
            for (position, &action) in ranking.iter().enumerate() {
                if action >= n_actions || ranking[..position].contains(&action) {
                    return Err(OpeError::Shape(format!(
                        "round {round}: action {action} is out of range or repeated in the ranking"
                    )));
                }
                cube.set(round, action, position, 1.0);
            }
        }
        Ok(ActionDist(cube))
    }

    /// The underlying table.
    pub fn cube(&self) -> &Cube {
        &self.0
    }
}

/// An estimate with its 95% normal-approximation interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// The point estimate.
    pub value: f64,
    /// Its standard error.
    pub std_err: f64,
    /// `value − 1.96 · std_err`.
    pub low: f64,
    /// `value + 1.96 · std_err`.
    pub high: f64,
    /// The rounds it was computed from.
    pub n_rounds: usize,
}

impl Estimate {
    fn with_std_err(value: f64, std_err: f64, n_rounds: usize) -> Estimate {
        Estimate { value, std_err, low: value - Z_95 * std_err, high: value + Z_95 * std_err, n_rounds }
    }

    /// The mean of per-round terms with the standard error of a mean (sample standard
    /// deviation with `n − 1`, over `sqrt(n)`; 0 for a single round).
    pub fn of_mean(terms: &[f64]) -> Result<Estimate, OpeError> {
        let n = terms.len();
        if n == 0 {
            return Err(OpeError::Empty("no rounds"));
        }
        let mean = terms.iter().sum::<f64>() / n as f64;
        let std_err = if n > 1 {
            let var = terms.iter().map(|t| (t - mean) * (t - mean)).sum::<f64>() / (n - 1) as f64;
            (var / n as f64).sqrt()
        } else {
            0.0
        };
        Ok(Estimate::with_std_err(mean, std_err, n))
    }
}

/// The logging policy's own value: the mean reward of its rounds.
pub fn on_policy(rounds: &[LoggedRound]) -> Result<Estimate, OpeError> {
    let rewards: Vec<f64> = rounds.iter().map(|r| r.reward).collect();
    Estimate::of_mean(&rewards)
}

/// Importance weights `π_e(a_i | x_i, k_i) / p_i`, after checking shapes and propensities.
pub fn importance_weights(rounds: &[LoggedRound], dist: &ActionDist) -> Result<Vec<f64>, OpeError> {
    check_rounds(rounds, dist.cube())?;
    Ok(rounds.iter().enumerate().map(|(i, r)| dist.cube().get(i, r.action, r.position) / r.pscore).collect())
}

/// Inverse propensity scoring (obp `InverseProbabilityWeighting`, no clipping).
pub fn ips(rounds: &[LoggedRound], dist: &ActionDist) -> Result<Estimate, OpeError> {
    let weights = importance_weights(rounds, dist)?;
    let terms: Vec<f64> = rounds.iter().zip(&weights).map(|(r, w)| w * r.reward).collect();
    Estimate::of_mean(&terms)
}

/// Self-normalized IPS (obp `SelfNormalizedInverseProbabilityWeighting`), with a delta-method
/// interval. Fails when no round has a positive weight (the policy never agrees with the log).
pub fn snips(rounds: &[LoggedRound], dist: &ActionDist) -> Result<Estimate, OpeError> {
    let weights = importance_weights(rounds, dist)?;
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return Err(OpeError::Empty("the policy gives every logged action probability 0"));
    }
    let value = rounds.iter().zip(&weights).map(|(r, w)| w * r.reward).sum::<f64>() / total;
    let residual_sq: f64 = rounds.iter().zip(&weights).map(|(r, w)| (w * (r.reward - value)).powi(2)).sum();
    Ok(Estimate::with_std_err(value, residual_sq.sqrt() / total, rounds.len()))
}

/// The direct method (obp `DirectMethod`): the reward model's expected reward under the policy.
pub fn direct_method(rounds: &[LoggedRound], dist: &ActionDist, q_hat: &Cube) -> Result<Estimate, OpeError> {
    check_rounds(rounds, dist.cube())?;
    check_same_shape(dist.cube(), q_hat)?;
    let terms: Vec<f64> = (0..rounds.len()).map(|i| model_term(dist, q_hat, i, rounds[i].position)).collect();
    Estimate::of_mean(&terms)
}

/// Doubly robust (obp `DoublyRobust`, no clipping): the direct method corrected by the
/// importance-weighted residual of the reward model on the logged action.
pub fn doubly_robust(rounds: &[LoggedRound], dist: &ActionDist, q_hat: &Cube) -> Result<Estimate, OpeError> {
    let weights = importance_weights(rounds, dist)?;
    check_same_shape(dist.cube(), q_hat)?;
    let terms: Vec<f64> = rounds
        .iter()
        .zip(&weights)
        .enumerate()
        .map(|(i, (r, w))| model_term(dist, q_hat, i, r.position) + w * (r.reward - q_hat.get(i, r.action, r.position)))
        .collect();
    Estimate::of_mean(&terms)
}

/// `Σ_a π_e(a | x_i, k) q̂(x_i, a, k)`.
fn model_term(dist: &ActionDist, q_hat: &Cube, round: usize, position: usize) -> f64 {
    let n_actions = q_hat.shape().1;
    (0..n_actions).map(|a| dist.cube().get(round, a, position) * q_hat.get(round, a, position)).sum()
}

fn check_rounds(rounds: &[LoggedRound], cube: &Cube) -> Result<(), OpeError> {
    let (n_rounds, n_actions, len_list) = cube.shape();
    if rounds.is_empty() {
        return Err(OpeError::Empty("no rounds"));
    }
    if rounds.len() != n_rounds {
        return Err(OpeError::Shape(format!("{} rounds, a distribution for {n_rounds}", rounds.len())));
    }
    for (round, r) in rounds.iter().enumerate() {
        if r.action >= n_actions || r.position >= len_list {
            return Err(OpeError::OutOfRange { round, action: r.action, position: r.position, n_actions, len_list });
        }
        if !(r.pscore > 0.0 && r.pscore <= 1.0) {
            return Err(OpeError::BadPscore { round, pscore: r.pscore });
        }
    }
    Ok(())
}

fn check_same_shape(dist: &Cube, q_hat: &Cube) -> Result<(), OpeError> {
    if dist.shape() != q_hat.shape() {
        return Err(OpeError::Shape(format!("reward estimates {:?}, distribution {:?}", q_hat.shape(), dist.shape())));
    }
    Ok(())
}

/// L2-regularized logistic regression `P(y = 1 | x) = σ(βᵀx)` on dense features, fitted by
/// Newton's method (iteratively reweighted least squares). The penalty `λ‖β‖²/2` applies to
/// every coefficient but the first, so put a constant 1 first to get an unpenalized intercept.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticModel {
    coefficients: Vec<f64>,
}

/// What [`LogisticModel::fit`] reports besides the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitReport {
    /// Newton steps taken.
    pub iterations: usize,
    /// Whether the largest coefficient change of the last step was below the tolerance.
    pub converged: bool,
}

impl LogisticModel {
    /// Fits on `rows` (each of the same length) with labels in `[0, 1]` and penalty `lambda`.
    /// Stops when no coefficient moves more than 1e-10 in a step, or after 50 steps.
    pub fn fit(rows: &[Vec<f64>], labels: &[f64], lambda: f64) -> Result<(LogisticModel, FitReport), OpeError> {
        if rows.is_empty() {
            return Err(OpeError::Empty("no training rows"));
        }
        if rows.len() != labels.len() {
            return Err(OpeError::Shape(format!("{} rows, {} labels", rows.len(), labels.len())));
        }
        let dim = rows[0].len();
        if let Some(bad) = rows.iter().position(|r| r.len() != dim) {
            return Err(OpeError::Shape(format!("row {bad} has {} features, row 0 has {dim}", rows[bad].len())));
        }
        let mut beta = vec![0.0; dim];
        let mut report = FitReport { iterations: 0, converged: false };
        for _ in 0..50 {
            // Gradient g = Xᵀ(p − y) + λβ and Hessian H = XᵀWX + λI (no penalty on β₀).
            let mut gradient = vec![0.0; dim];
            let mut hessian = vec![0.0; dim * dim];
            for (row, &y) in rows.iter().zip(labels) {
                let p = sigmoid(dot(&beta, row));
                let weight = (p * (1.0 - p)).max(1e-12);
                for (j, &xj) in row.iter().enumerate() {
                    if xj == 0.0 {
                        continue;
                    }
                    gradient[j] += (p - y) * xj;
                    let h_row = &mut hessian[j * dim..(j + 1) * dim];
                    for (h, &xk) in h_row.iter_mut().zip(row) {
                        *h += weight * xj * xk;
                    }
                }
            }
            for j in 1..dim {
                gradient[j] += lambda * beta[j];
                hessian[j * dim + j] += lambda;
            }
            // A tiny ridge keeps the intercept's row positive definite on separable data.
            hessian[0] += 1e-9;
            let step = solve_spd(&hessian, &gradient, dim)
                .ok_or(OpeError::Shape("the Hessian is not positive definite".to_owned()))?;
            let mut largest = 0.0f64;
            for (b, s) in beta.iter_mut().zip(&step) {
                *b -= s;
                largest = largest.max(s.abs());
            }
            report.iterations += 1;
            if largest < 1e-10 {
                report.converged = true;
                break;
            }
        }
        Ok((LogisticModel { coefficients: beta }, report))
    }

    /// The predicted probability for `features`.
    ///
    /// # Panics
    /// If `features` has a different length than the training rows.
    pub fn predict(&self, features: &[f64]) -> f64 {
        assert_eq!(features.len(), self.coefficients.len(), "feature vector has the wrong length");
        sigmoid(dot(&self.coefficients, features))
    }

    /// The fitted coefficients, intercept first.
    pub fn coefficients(&self) -> &[f64] {
        &self.coefficients
    }
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Solves `A x = b` for a symmetric positive definite `A` (row-major `dim × dim`) by Cholesky.
/// `None` when `A` is not positive definite.
fn solve_spd(a: &[f64], b: &[f64], dim: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; dim * dim];
    for i in 0..dim {
        for j in 0..=i {
            let mut sum = a[i * dim + j];
            for k in 0..j {
                sum -= l[i * dim + k] * l[j * dim + k];
            }
            if i == j {
                if sum <= 0.0 {
                    return None;
                }
                l[i * dim + i] = sum.sqrt();
            } else {
                l[i * dim + j] = sum / l[j * dim + j];
            }
        }
    }
    // L y = b, then Lᵀ x = y.
    let mut y = vec![0.0; dim];
    for i in 0..dim {
        let sum: f64 = (0..i).map(|k| l[i * dim + k] * y[k]).sum();
        y[i] = (b[i] - sum) / l[i * dim + i];
    }
    let mut x = vec![0.0; dim];
    for i in (0..dim).rev() {
        let sum: f64 = (i + 1..dim).map(|k| l[k * dim + i] * x[k]).sum();
        x[i] = (y[i] - sum) / l[i * dim + i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(action: usize, position: usize, reward: f64, pscore: f64) -> LoggedRound {
        LoggedRound { action, position, reward, pscore }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// Three actions, one position, four rounds; the policy is uniform on rounds 0–1 and puts
    /// everything on action 0 in rounds 2–3. Every number below is worked out by hand.
    fn fixture() -> (Vec<LoggedRound>, ActionDist, Cube) {
        let rounds = vec![round(0, 0, 1.0, 0.5), round(1, 0, 0.0, 0.25), round(0, 0, 0.0, 0.5), round(2, 0, 1.0, 0.25)];
        let third = 1.0 / 3.0;
        #[rustfmt::skip]
        let probs = vec![
            third, third, third,
            third, third, third,
            1.0, 0.0, 0.0,
            1.0, 0.0, 0.0,
        ];
        let dist = ActionDist::new(Cube::new(4, 3, 1, probs).unwrap()).unwrap();
        #[rustfmt::skip]
        let q = vec![
            0.6, 0.3, 0.0,
            0.6, 0.3, 0.0,
            0.6, 0.3, 0.0,
            0.6, 0.3, 0.0,
        ];
        (rounds, dist, Cube::new(4, 3, 1, q).unwrap())
    }

    #[test]
    fn ips_snips_dm_dr_match_hand_computed_values() {
        let (rounds, dist, q_hat) = fixture();
        // Weights: (1/3)/0.5 = 2/3, (1/3)/0.25 = 4/3, 1/0.5 = 2, 0/0.25 = 0.
        let weights = importance_weights(&rounds, &dist).unwrap();
        for (w, expected) in weights.iter().zip([2.0 / 3.0, 4.0 / 3.0, 2.0, 0.0]) {
            assert!(close(*w, expected), "{weights:?}");
        }
        // IPS terms: 2/3, 0, 0, 0 → mean 1/6.
        let ips = ips(&rounds, &dist).unwrap();
        assert!(close(ips.value, 1.0 / 6.0), "{ips:?}");
        // Sample variance of (2/3, 0, 0, 0): mean 1/6, Σ(t − m)² = 1/4 + 3/36 = 1/3, / 3 = 1/9;
        // se = sqrt(1/9 / 4) = 1/6.
        assert!(close(ips.std_err, 1.0 / 6.0), "{ips:?}");
        assert!(close(ips.low, 1.0 / 6.0 - Z_95 / 6.0) && close(ips.high, 1.0 / 6.0 + Z_95 / 6.0));
        // SNIPS: (2/3) / (2/3 + 4/3 + 2 + 0) = 1/6; residuals w(r − 1/6): 2/3·5/6, −4/3·1/6,
        // −2·1/6, 0 → squares 25/81, 4/81, 9/81 → sqrt(38/81) / 4.
        let snips = snips(&rounds, &dist).unwrap();
        assert!(close(snips.value, 1.0 / 6.0), "{snips:?}");
        assert!(close(snips.std_err, (38.0f64 / 81.0).sqrt() / 4.0), "{snips:?}");
        // DM terms: uniform → (0.6 + 0.3 + 0)/3 = 0.3 twice, then 0.6 twice → mean 0.45.
        let dm = direct_method(&rounds, &dist, &q_hat).unwrap();
        assert!(close(dm.value, 0.45), "{dm:?}");
        // DR terms: 0.3 + 2/3·(1 − 0.6) = 17/30; 0.3 + 4/3·(0 − 0.3) = −0.1; 0.6 + 2·(0 − 0.6) =
        // −0.6; 0.6 + 0·(…) = 0.6 → mean (17/30 − 0.1) / 4 = 7/60.
        let dr = doubly_robust(&rounds, &dist, &q_hat).unwrap();
        assert!(close(dr.value, 7.0 / 60.0), "{dr:?}");
    }

    #[test]
    fn a_perfect_reward_model_makes_dr_equal_dm_and_a_uniform_policy_on_uniform_logs_makes_ips_the_mean() {
        // Two actions at one position, logged uniformly (p = 0.5); rewards equal q̂ exactly.
        let rounds = vec![round(0, 0, 1.0, 0.5), round(1, 0, 0.0, 0.5), round(1, 0, 0.0, 0.5)];
        let dist = ActionDist::new(Cube::new(3, 2, 1, vec![0.5; 6]).unwrap()).unwrap();
        let q_hat = Cube::new(3, 2, 1, vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0]).unwrap();
        let dm = direct_method(&rounds, &dist, &q_hat).unwrap();
        let dr = doubly_robust(&rounds, &dist, &q_hat).unwrap();
        assert!(close(dm.value, 0.5) && close(dr.value, 0.5), "{dm:?} {dr:?}");
        // Evaluating the logging policy itself: IPS and SNIPS give the on-policy mean.
        let on = on_policy(&rounds).unwrap();
        assert!(close(ips(&rounds, &dist).unwrap().value, on.value));
        assert!(close(snips(&rounds, &dist).unwrap().value, on.value));
    }

    #[test]
    fn rankings_become_one_hot_distributions_per_position() {
        let dist = ActionDist::from_rankings(4, 2, &[vec![2, 0], vec![1, 3]]).unwrap();
        assert_eq!(dist.cube().get(0, 2, 0), 1.0);
        assert_eq!(dist.cube().get(0, 0, 1), 1.0);
        assert_eq!(dist.cube().get(0, 0, 0), 0.0);
        assert_eq!(dist.cube().get(1, 3, 1), 1.0);
        // A deterministic policy matches the log only where it shows the logged action there.
        let rounds = vec![round(0, 1, 1.0, 0.25), round(1, 1, 1.0, 0.25)];
        let ips = ips(&rounds, &dist).unwrap();
        assert!(close(ips.value, 2.0), "{ips:?}"); // (4 + 0) / 2
        assert!(matches!(ActionDist::from_rankings(4, 2, &[vec![1, 1]]), Err(OpeError::Shape(_))));
        assert!(matches!(ActionDist::from_rankings(4, 2, &[vec![1]]), Err(OpeError::Shape(_))));
        assert!(matches!(ActionDist::from_rankings(4, 2, &[vec![1, 4]]), Err(OpeError::Shape(_))));
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let (rounds, dist, q_hat) = fixture();
        assert!(matches!(
            ActionDist::new(Cube::new(1, 2, 1, vec![0.5, 0.6]).unwrap()),
            Err(OpeError::NotADistribution { round: 0, position: 0, sum }) if (sum - 1.1).abs() < 1e-12
        ));
        assert!(matches!(
            ActionDist::new(Cube::new(1, 2, 1, vec![1.5, -0.5]).unwrap()),
            Err(OpeError::NotADistribution { .. })
        ));
        assert!(matches!(Cube::new(2, 2, 1, vec![0.0; 3]), Err(OpeError::Shape(_))));
        assert!(matches!(ips(&rounds[..3], &dist), Err(OpeError::Shape(_))));
        assert_eq!(ips(&[], &dist), Err(OpeError::Empty("no rounds")));
        let mut bad = rounds.clone();
        bad[1].pscore = 0.0;
        assert_eq!(ips(&bad, &dist), Err(OpeError::BadPscore { round: 1, pscore: 0.0 }));
        bad[1] = round(3, 0, 0.0, 0.5);
        assert!(matches!(doubly_robust(&bad, &dist, &q_hat), Err(OpeError::OutOfRange { round: 1, .. })));
        let wrong_q = Cube::zeros(4, 2, 1);
        assert!(matches!(doubly_robust(&rounds, &dist, &wrong_q), Err(OpeError::Shape(_))));
        // SNIPS is undefined when the policy never shows a logged action.
        let never = ActionDist::from_rankings(3, 1, &[vec![2], vec![2], vec![2], vec![1]]).unwrap();
        assert!(matches!(snips(&rounds, &never), Err(OpeError::Empty(_))));
    }

    /// Random logs over 3 actions × 2 positions and a random policy.
    fn arbitrary_case() -> impl proptest::strategy::Strategy<Value = (Vec<LoggedRound>, ActionDist, Cube)> {
        use proptest::prelude::*;
        let round = (0usize..3, 0usize..2, proptest::bool::ANY, 1u32..=100).prop_map(|(action, position, click, p)| {
            LoggedRound { action, position, reward: f64::from(u8::from(click)), pscore: f64::from(p) / 100.0 }
        });
        proptest::collection::vec(round, 1..30).prop_flat_map(|rounds| {
            let n = rounds.len();
            (Just(rounds), proptest::collection::vec(1u32..10, n * 6), proptest::collection::vec(0.0f64..1.0, n * 6))
                .prop_map(move |(rounds, raw, q)| {
                    // Normalize each (round, position) column of raw weights into a distribution.
                    let mut probs = vec![0.0; n * 6];
                    for i in 0..n {
                        for k in 0..2 {
                            let total: f64 = (0..3).map(|a| f64::from(raw[(i * 3 + a) * 2 + k])).sum();
                            for a in 0..3 {
                                probs[(i * 3 + a) * 2 + k] = f64::from(raw[(i * 3 + a) * 2 + k]) / total;
                            }
                        }
                    }
                    let dist = ActionDist::new(Cube::new(n, 3, 2, probs).expect("shape")).expect("a distribution");
                    (rounds, dist, Cube::new(n, 3, 2, q).expect("shape"))
                })
        })
    }

    proptest::proptest! {
        #[test]
        fn estimators_agree_with_their_definitions_on_random_inputs((rounds, dist, q_hat) in arbitrary_case()) {
            let zero = Cube::zeros(rounds.len(), 3, 2);
            let ips = ips(&rounds, &dist).unwrap();
            // DR with a reward model of 0 is IPS; DM ignores the rewards.
            proptest::prop_assert!((doubly_robust(&rounds, &dist, &zero).unwrap().value - ips.value).abs() < 1e-12);
            let flipped: Vec<LoggedRound> = rounds.iter().map(|r| LoggedRound { reward: 1.0 - r.reward, ..*r }).collect();
            proptest::prop_assert!(
                (direct_method(&rounds, &dist, &q_hat).unwrap().value - direct_method(&flipped, &dist, &q_hat).unwrap().value).abs() < 1e-12
            );
            // DR = DM + the weighted residuals, term by term.
            let weights = importance_weights(&rounds, &dist).unwrap();
            let residual: f64 = rounds
                .iter()
                .zip(&weights)
                .enumerate()
                .map(|(i, (r, w))| w * (r.reward - q_hat.get(i, r.action, r.position)))
                .sum::<f64>()
                / rounds.len() as f64;
            let dm = direct_method(&rounds, &dist, &q_hat).unwrap().value;
            proptest::prop_assert!((doubly_robust(&rounds, &dist, &q_hat).unwrap().value - (dm + residual)).abs() < 1e-9);
            // SNIPS is a weighted mean of rewards in [0, 1]; intervals contain their estimate.
            let snips = snips(&rounds, &dist).unwrap();
            proptest::prop_assert!((0.0..=1.0).contains(&snips.value));
            for e in [ips, snips] {
                proptest::prop_assert!(e.low <= e.value && e.value <= e.high && e.std_err >= 0.0);
            }
        }
    }

    #[test]
    fn logistic_regression_recovers_known_rates() {
        // One binary feature: rate 0.2 when it is 0, 0.8 when it is 1. Unpenalized, the fit is
        // the saturated model: σ(β₀) = 0.2 and σ(β₀ + β₁) = 0.8 exactly.
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for (x, rate) in [(0.0, 0.2), (1.0, 0.8)] {
            for k in 0..10 {
                rows.push(vec![1.0, x]);
                labels.push(if (k as f64) < rate * 10.0 { 1.0 } else { 0.0 });
            }
        }
        let (model, report) = LogisticModel::fit(&rows, &labels, 0.0).unwrap();
        assert!(report.converged, "{report:?}");
        assert!((model.predict(&[1.0, 0.0]) - 0.2).abs() < 1e-9);
        assert!((model.predict(&[1.0, 1.0]) - 0.8).abs() < 1e-9);
        // A penalty pulls the slope towards 0 but leaves the intercept free.
        let (shrunk, _) = LogisticModel::fit(&rows, &labels, 10.0).unwrap();
        assert!(shrunk.coefficients()[1].abs() < model.coefficients()[1].abs());
        assert!(shrunk.coefficients()[1] > 0.0);
        // Separable data still converges to finite coefficients with a penalty.
        let (separable, report) = LogisticModel::fit(&[vec![1.0, 0.0], vec![1.0, 1.0]], &[0.0, 1.0], 1.0).unwrap();
        assert!(report.converged && separable.coefficients().iter().all(|c| c.is_finite()));
        assert!(matches!(LogisticModel::fit(&[vec![1.0], vec![1.0, 2.0]], &[0.0, 1.0], 1.0), Err(OpeError::Shape(_))));
    }
}
