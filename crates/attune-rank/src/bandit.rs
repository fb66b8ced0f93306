//! Bandits for presentation choices: Beta-Bernoulli Thompson sampling and a small LinUCB.

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

/// Disjoint LinUCB (Li et al. 2010): per arm a ridge regression of reward on a `dim`-dimensional
/// context; choose `argmax θ_aᵀx + alpha · sqrt(xᵀ A_a⁻¹ x)`. `A_a⁻¹` is kept up to date with the
/// Sherman–Morrison formula, so an update costs O(dim²).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LinUcb {
    dim: usize,
    alpha: f64,
    /// Per arm: `A⁻¹` (row-major dim×dim) and `b`.
    arms: Vec<(Vec<f64>, Vec<f64>)>,
}

impl LinUcb {
    /// `n_arms` arms over `dim` features, exploration strength `alpha` (about 0.1–1).
    pub fn new(n_arms: usize, dim: usize, alpha: f64) -> LinUcb {
        let mut identity = vec![0.0; dim * dim];
        for k in 0..dim {
            identity[k * dim + k] = 1.0;
        }
        LinUcb { dim, alpha, arms: vec![(identity, vec![0.0; dim]); n_arms] }
    }

    /// Upper confidence bound of each arm for `context` (length `dim`).
    ///
    /// # Panics
    /// If `context.len() != dim`.
    pub fn ucb(&self, context: &[f64]) -> Vec<f64> {
        assert_eq!(context.len(), self.dim, "context has the wrong dimension");
        self.arms
            .iter()
            .map(|(a_inv, b)| {
                let ax = self.mat_vec(a_inv, context);
                let mean: f64 = ax.iter().zip(b).map(|(p, q)| p * q).sum(); // θ = A⁻¹b, θᵀx = bᵀA⁻¹x
                let var: f64 = ax.iter().zip(context).map(|(p, q)| p * q).sum();
                mean + self.alpha * var.max(0.0).sqrt()
            })
            .collect()
    }

    /// The arm with the largest upper confidence bound (lowest index on ties); `None` with no arms.
    pub fn choose(&self, context: &[f64]) -> Option<usize> {
        let ucb = self.ucb(context);
        let mut best = None;
        for (arm, &u) in ucb.iter().enumerate() {
            if best.is_none_or(|(_, b)| u > b) {
                best = Some((arm, u));
            }
        }
        best.map(|(arm, _)| arm)
    }

    /// Records `reward` for `arm` shown in `context`. Out-of-range arms are ignored.
    ///
    /// # Panics
    /// If `context.len() != dim`.
    pub fn update(&mut self, arm: usize, context: &[f64], reward: f64) {
        assert_eq!(context.len(), self.dim, "context has the wrong dimension");
        let dim = self.dim;
        let Some((a_inv, _)) = self.arms.get(arm) else {
            return;
        };
        let ax = self.mat_vec(a_inv, context);
        let denom = 1.0 + ax.iter().zip(context).map(|(p, q)| p * q).sum::<f64>();
        let (a_inv, b) = &mut self.arms[arm];
        // (A + xxᵀ)⁻¹ = A⁻¹ - (A⁻¹x)(A⁻¹x)ᵀ / (1 + xᵀA⁻¹x), with A⁻¹ symmetric.
        for r in 0..dim {
            for c in 0..dim {
                a_inv[r * dim + c] -= ax[r] * ax[c] / denom;
            }
        }
        for (bv, x) in b.iter_mut().zip(context) {
            *bv += reward * x;
        }
    }

    fn mat_vec(&self, m: &[f64], x: &[f64]) -> Vec<f64> {
        m.chunks_exact(self.dim).map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum()).collect()
    }
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
}
