//! Bandits for presentation choices: Beta-Bernoulli Thompson sampling and a contextual LinUCB
//! whose state is sums ([`LinearArm`]), so that several processes' increments add up.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Thompson sampling over `n` arms with a Beta(1 + successes, 1 + failures) posterior per arm.
/// The random source is an argument, so tests (and replays) are deterministic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThompsonBandit {
    /// `(alpha, beta)` per arm, starting at `(1, 1)` (uniform prior).
    arms: Vec<(f64, f64)>,
}

impl ThompsonBandit {
    /// A bandit with `n_arms` arms and uniform priors.
    pub fn new(n_arms: usize) -> ThompsonBandit {
        ThompsonBandit { arms: vec![(1.0, 1.0); n_arms] }
    }

    /// Number of arms.
    pub fn n_arms(&self) -> usize {
        self.arms.len()
    }

    /// Draws one sample per arm and returns the arm with the largest. `None` with no arms.
    pub fn choose(&self, rng: &mut impl Rng) -> Option<usize> {
        let mut best = None;
        let mut best_sample = f64::NEG_INFINITY;
        for (arm, &(a, b)) in self.arms.iter().enumerate() {
            let s = sample_beta(rng, a, b);
            if s > best_sample {
                best_sample = s;
                best = Some(arm);
            }
        }
        best
    }

    /// Records a reward in `[0, 1]` (1 = success) for `arm`. Out-of-range arms are ignored.
    pub fn update(&mut self, arm: usize, reward: f64) {
        if let Some((a, b)) = self.arms.get_mut(arm) {
            let r = reward.clamp(0.0, 1.0);
            *a += r;
            *b += 1.0 - r;
        }
    }

    /// Posterior mean success rate of each arm.
    pub fn means(&self) -> Vec<f64> {
        self.arms.iter().map(|&(a, b)| a / (a + b)).collect()
    }
}

/// Beta(a, b) as X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b).
fn sample_beta(rng: &mut impl Rng, a: f64, b: f64) -> f64 {
    let x = sample_gamma(rng, a);
    let y = sample_gamma(rng, b);
    if x + y > 0.0 { x / (x + y) } else { 0.5 }
}

/// Gamma(shape, 1) by Marsaglia and Tsang (2000); shapes below 1 use the `U^(1/shape)` boost.
fn sample_gamma(rng: &mut impl Rng, shape: f64) -> f64 {
    if shape < 1.0 {
        let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        return sample_gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let z = sample_normal(rng);
        let v = (1.0 + c * z).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        if u.ln() < 0.5 * z * z + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// Standard normal by Box–Muller.
fn sample_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// One arm of a linear bandit: the sufficient statistics of a ridge regression of the reward on a
/// `dim`-dimensional context — `Σ x xᵀ` and `Σ r x` over the arm's exposures, and their count —
/// and `A⁻¹ = (I + Σ x xᵀ)⁻¹`, kept current.
///
/// The statistics are sums, so arms [`merge`](LinearArm::merge) by addition: increments recorded
/// by several processes and added to one stored copy give the arm that recording them all in one
/// process would (in any order). Serialized, an arm is its sums only; `A⁻¹` is rebuilt on
/// deserialization.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "ArmSums", into = "ArmSums")]
pub struct LinearArm {
    sums: ArmSums,
    /// `(I + Σ x xᵀ)⁻¹`, row-major `dim × dim`.
    a_inv: Vec<f64>,
}

/// The serialized form of a [`LinearArm`]: its sums.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ArmSums {
    dim: usize,
    /// `Σ x xᵀ`, row-major `dim × dim` (without the ridge prior `I`).
    xx: Vec<f64>,
    /// `Σ r x`.
    rx: Vec<f64>,
    /// Exposures recorded.
    n: f64,
}

/// Arms are equal when their sums are (`A⁻¹` follows from them, up to rounding).
impl PartialEq for LinearArm {
    fn eq(&self, other: &LinearArm) -> bool {
        self.sums == other.sums
    }
}

impl From<ArmSums> for LinearArm {
    fn from(mut sums: ArmSums) -> LinearArm {
        // A record from elsewhere may be malformed: its wrong-sized parts start afresh.
        let dim = sums.dim;
        if sums.xx.len() != dim * dim || sums.rx.len() != dim {
            sums = ArmSums { dim, xx: vec![0.0; dim * dim], rx: vec![0.0; dim], n: 0.0 };
        }
        let a_inv = inverse_with_prior(&sums.xx, dim);
        LinearArm { sums, a_inv }
    }
}

impl From<LinearArm> for ArmSums {
    fn from(arm: LinearArm) -> ArmSums {
        arm.sums
    }
}

impl LinearArm {
    /// An arm that has seen nothing (the ridge prior: mean 0, width `|x|`).
    pub fn new(dim: usize) -> LinearArm {
        let mut a_inv = vec![0.0; dim * dim];
        for k in 0..dim {
            a_inv[k * dim + k] = 1.0;
        }
        LinearArm { sums: ArmSums { dim, xx: vec![0.0; dim * dim], rx: vec![0.0; dim], n: 0.0 }, a_inv }
    }

    /// The context dimension.
    pub fn dim(&self) -> usize {
        self.sums.dim
    }

    /// Exposures recorded.
    pub fn exposures(&self) -> f64 {
        self.sums.n
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.sums.n == 0.0 && self.sums.rx.iter().all(|&v| v == 0.0)
    }

    /// Records one exposure in `context` with its `reward` (`A += x xᵀ`, `b += r x`; `A⁻¹` by the
    /// Sherman–Morrison formula, O(dim²)). Contexts of the wrong length are ignored.
    pub fn record(&mut self, context: &[f64], reward: f64) {
        let dim = self.dim();
        if context.len() != dim {
            return;
        }
        for r in 0..dim {
            for c in 0..dim {
                self.sums.xx[r * dim + c] += context[r] * context[c];
            }
        }
        self.sums.n += 1.0;
        let ax = mat_vec(&self.a_inv, context, dim);
        let denom = 1.0 + dot(&ax, context);
        // (A + xxᵀ)⁻¹ = A⁻¹ - (A⁻¹x)(A⁻¹x)ᵀ / (1 + xᵀA⁻¹x), with A⁻¹ symmetric.
        for r in 0..dim {
            for c in 0..dim {
                self.a_inv[r * dim + c] -= ax[r] * ax[c] / denom;
            }
        }
        self.add_reward(context, reward);
    }

    /// Adds a reward that arrived after its exposure was recorded (with reward 0): `b += r x`,
    /// `A` unchanged. An exposure counted as a failure and a later click as a success make each
    /// exposure one Bernoulli trial. Contexts of the wrong length are ignored.
    pub fn add_reward(&mut self, context: &[f64], reward: f64) {
        if context.len() != self.dim() {
            return;
        }
        for (b, x) in self.sums.rx.iter_mut().zip(context) {
            *b += reward * x;
        }
    }

    /// Adds another arm's statistics to this one's (`A⁻¹` is recomputed: O(dim³)). An arm of
    /// another dimension is ignored.
    pub fn merge(&mut self, other: &LinearArm) {
        if other.dim() != self.dim() {
            return;
        }
        for (a, b) in self.sums.xx.iter_mut().zip(&other.sums.xx) {
            *a += b;
        }
        for (a, b) in self.sums.rx.iter_mut().zip(&other.sums.rx) {
            *a += b;
        }
        self.sums.n += other.sums.n;
        self.a_inv = inverse_with_prior(&self.sums.xx, self.dim());
    }

    /// The estimated reward in `context`: `θᵀx` with `θ = A⁻¹b` (ridge regression; 0 with no data).
    pub fn mean(&self, context: &[f64]) -> f64 {
        if context.len() != self.dim() {
            return 0.0;
        }
        dot(&mat_vec(&self.a_inv, context, self.dim()), &self.sums.rx)
    }

    /// The confidence width in `context`: `sqrt(xᵀA⁻¹x)` (shrinks as the arm sees such contexts).
    pub fn width(&self, context: &[f64]) -> f64 {
        if context.len() != self.dim() {
            return 0.0;
        }
        dot(&mat_vec(&self.a_inv, context, self.dim()), context).max(0.0).sqrt()
    }

    /// The upper confidence bound `θᵀx + alpha · sqrt(xᵀA⁻¹x)`.
    pub fn ucb(&self, context: &[f64], alpha: f64) -> f64 {
        if context.len() != self.dim() {
            return 0.0;
        }
        let ax = mat_vec(&self.a_inv, context, self.dim());
        dot(&ax, &self.sums.rx) + alpha * dot(&ax, context).max(0.0).sqrt()
    }
}

/// Disjoint LinUCB (Li et al. 2010): per arm a ridge regression of reward on a `dim`-dimensional
/// context ([`LinearArm`]); choose `argmax θ_aᵀx + alpha · sqrt(xᵀ A_a⁻¹ x)`, the lowest index
/// on ties. The choice is a pure function of the statistics and the context — no randomness — so
/// two processes holding the same statistics choose the same arm. Arms [`merge`](LinUcb::merge)
/// by adding their sums (several processes' increments, one stored copy).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LinUcb {
    dim: usize,
    alpha: f64,
    arms: Vec<LinearArm>,
}

impl LinUcb {
    /// `n_arms` arms over `dim` features, exploration strength `alpha` (about 0.1–1).
    pub fn new(n_arms: usize, dim: usize, alpha: f64) -> LinUcb {
        LinUcb { dim, alpha, arms: vec![LinearArm::new(dim); n_arms] }
    }

    /// Number of arms.
    pub fn n_arms(&self) -> usize {
        self.arms.len()
    }

    /// The arms' statistics.
    pub fn arms(&self) -> &[LinearArm] {
        &self.arms
    }

    /// Upper confidence bound of each arm for `context` (length `dim`).
    ///
    /// # Panics
    /// If `context.len() != dim`.
    pub fn ucb(&self, context: &[f64]) -> Vec<f64> {
        assert_eq!(context.len(), self.dim, "context has the wrong dimension");
        self.arms.iter().map(|arm| arm.ucb(context, self.alpha)).collect()
    }

    /// The arm with the largest upper confidence bound (lowest index on ties); `None` with no arms.
    pub fn choose(&self, context: &[f64]) -> Option<usize> {
        choose_ucb(self.arms.iter().map(Some), context, self.alpha)
    }

    /// Records `reward` for `arm` shown in `context`. Out-of-range arms are ignored.
    ///
    /// # Panics
    /// If `context.len() != dim`.
    pub fn update(&mut self, arm: usize, context: &[f64], reward: f64) {
        assert_eq!(context.len(), self.dim, "context has the wrong dimension");
        if let Some(arm) = self.arms.get_mut(arm) {
            arm.record(context, reward);
        }
    }

    /// Adds `other`'s statistics arm by arm (arms beyond `other`'s count are unchanged).
    pub fn merge(&mut self, other: &LinUcb) {
        for (arm, theirs) in self.arms.iter_mut().zip(&other.arms) {
            arm.merge(theirs);
        }
    }
}

/// The index of the arm with the largest upper confidence bound in `context` (lowest index on
/// ties), where `None` stands for an arm that has seen nothing yet (the prior: a bound of
/// `alpha · |x|`). `None` when there are no arms.
pub fn choose_ucb<'a>(arms: impl Iterator<Item = Option<&'a LinearArm>>, context: &[f64], alpha: f64) -> Option<usize> {
    let prior = alpha * dot(context, context).sqrt();
    let mut best: Option<(usize, f64)> = None;
    for (k, arm) in arms.enumerate() {
        let bound = arm.map_or(prior, |arm| arm.ucb(context, alpha));
        if best.is_none_or(|(_, b)| bound > b + 1e-12) {
            best = Some((k, bound));
        }
    }
    best.map(|(k, _)| k)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(p, q)| p * q).sum()
}

fn mat_vec(m: &[f64], x: &[f64], dim: usize) -> Vec<f64> {
    m.chunks_exact(dim).map(|row| dot(row, x)).collect()
}

/// `(I + xx)⁻¹` by Gauss–Jordan elimination with partial pivoting (`I + xx` is symmetric positive
/// definite, so it is always invertible).
fn inverse_with_prior(xx: &[f64], dim: usize) -> Vec<f64> {
    let mut a = xx.to_vec();
    let mut inv = vec![0.0; dim * dim];
    for k in 0..dim {
        a[k * dim + k] += 1.0;
        inv[k * dim + k] = 1.0;
    }
    for col in 0..dim {
        let pivot =
            (col..dim).max_by(|&p, &q| a[p * dim + col].abs().total_cmp(&a[q * dim + col].abs())).unwrap_or(col);
        if pivot != col {
            for c in 0..dim {
                a.swap(col * dim + c, pivot * dim + c);
                inv.swap(col * dim + c, pivot * dim + c);
            }
        }
        let p = a[col * dim + col];
        for c in 0..dim {
            a[col * dim + c] /= p;
            inv[col * dim + c] /= p;
        }
        for r in 0..dim {
            if r == col {
                continue;
            }
            let f = a[r * dim + col];
            if f == 0.0 {
                continue;
            }
            for c in 0..dim {
                a[r * dim + c] -= f * a[col * dim + c];
                inv[r * dim + c] -= f * inv[col * dim + c];
            }
        }
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};

    #[test]
    fn thompson_converges_on_the_better_arm() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut bandit = ThompsonBandit::new(3);
        let rates = [0.1, 0.5, 0.2];
        let mut pulls = [0usize; 3];
        for _ in 0..2000 {
            let arm = bandit.choose(&mut rng).expect("has arms");
            pulls[arm] += 1;
            let reward = if rng.random::<f64>() < rates[arm] { 1.0 } else { 0.0 };
            bandit.update(arm, reward);
        }
        assert!(pulls[1] > 1500, "{pulls:?}");
        assert!((bandit.means()[1] - 0.5).abs() < 0.05);
        assert_eq!(ThompsonBandit::new(0).choose(&mut rng), None);
    }

    #[test]
    fn beta_sampler_has_the_right_mean() {
        let mut rng = StdRng::seed_from_u64(1);
        for (a, b) in [(2.0, 5.0), (0.5, 0.5), (30.0, 10.0)] {
            let mean = (0..20_000).map(|_| sample_beta(&mut rng, a, b)).sum::<f64>() / 20_000.0;
            assert!((mean - a / (a + b)).abs() < 0.01, "Beta({a},{b}) mean {mean}");
        }
    }

    #[test]
    fn linucb_learns_context_dependent_arms() {
        // Arm 0 pays in context [1, 0], arm 1 in context [0, 1].
        let mut bandit = LinUcb::new(2, 2, 0.1);
        for _ in 0..50 {
            for (ctx, good) in [([1.0, 0.0], 0usize), ([0.0, 1.0], 1)] {
                for arm in 0..2 {
                    bandit.update(arm, &ctx, if arm == good { 1.0 } else { 0.0 });
                }
            }
        }
        assert_eq!(bandit.choose(&[1.0, 0.0]), Some(0));
        assert_eq!(bandit.choose(&[0.0, 1.0]), Some(1));
    }

    #[test]
    fn sherman_morrison_agrees_with_a_full_inversion() {
        let mut arm = LinearArm::new(3);
        let contexts = [[1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.5, 0.2, 0.9], [1.0, 0.0, 0.0]];
        for (k, x) in contexts.iter().enumerate() {
            arm.record(x, (k % 2) as f64);
        }
        let rebuilt: LinearArm = postcard::from_bytes(&postcard::to_stdvec(&arm).expect("encode")).expect("decode");
        for (a, b) in arm.a_inv.iter().zip(&rebuilt.a_inv) {
            assert!((a - b).abs() < 1e-9, "{:?} vs {:?}", arm.a_inv, rebuilt.a_inv);
        }
        assert_eq!(arm, rebuilt);
    }

    #[test]
    fn merged_increments_equal_one_process_recording_everything() {
        // Two processes record disjoint exposures; a third adds both to a stored copy.
        let rows: Vec<([f64; 2], f64)> =
            (0..40).map(|k| ([1.0, (k % 3) as f64 / 2.0], ((k % 5) == 0) as u8 as f64)).collect();
        let mut all = LinearArm::new(2);
        let (mut first, mut second) = (LinearArm::new(2), LinearArm::new(2));
        for (k, (x, r)) in rows.iter().enumerate() {
            all.record(x, *r);
            if k % 2 == 0 { first.record(x, *r) } else { second.record(x, *r) }
        }
        let mut stored = LinearArm::new(2);
        stored.merge(&second);
        stored.merge(&first);
        for x in [[1.0, 0.0], [1.0, 1.0]] {
            assert!((stored.mean(&x) - all.mean(&x)).abs() < 1e-9);
            assert!((stored.width(&x) - all.width(&x)).abs() < 1e-9);
        }
        assert_eq!(stored.exposures(), 40.0);
    }

    #[test]
    fn ucb_explores_the_unseen_arm_then_follows_rewards() {
        let x = [1.0, 1.0];
        // Nothing seen: the first arm (lowest index on ties).
        assert_eq!(choose_ucb([None, None].into_iter(), &x, 0.5), Some(0));
        let mut seen = LinearArm::new(2);
        seen.record(&x, 0.0);
        // The seen arm's bound shrank: the unseen one is tried.
        assert_eq!(choose_ucb([Some(&seen), None].into_iter(), &x, 0.5), Some(1));
        // An arm that pays in this context wins over one that does not.
        let (mut good, mut bad) = (LinearArm::new(2), LinearArm::new(2));
        for _ in 0..50 {
            good.record(&x, 0.0);
            good.add_reward(&x, 1.0);
            bad.record(&x, 0.0);
        }
        assert_eq!(choose_ucb([Some(&bad), Some(&good)].into_iter(), &x, 0.5), Some(1));
        assert!((good.mean(&x) - 1.0).abs() < 0.05, "{}", good.mean(&x));
        assert_eq!(choose_ucb(std::iter::empty(), &x, 0.5), None);
    }
}
