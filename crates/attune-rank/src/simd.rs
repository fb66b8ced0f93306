//! Small vector kernels (dot, axpy) written once over `pulp::Simd`, so that the hot loops of
//! iALS run with AVX2/FMA (or AVX-512) when the CPU has them, chosen at run time, without `unsafe`.
//!
//! Call them from inside a `pulp::WithSimd` implementation (see `ials.rs`) so the target
//! features apply to the whole loop, not to each tiny call.

use pulp::Simd;

/// `Σ a_k b_k`. Two accumulators hide the FMA latency.
#[inline(always)]
pub(crate) fn dot<S: Simd>(simd: S, a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let (a_head, a_tail) = S::as_simd_f32s(a);
    let (b_head, b_tail) = S::as_simd_f32s(b);
    let mut acc0 = simd.splat_f32s(0.0);
    let mut acc1 = simd.splat_f32s(0.0);
    let mut pairs_a = a_head.chunks_exact(2);
    let mut pairs_b = b_head.chunks_exact(2);
    for (pa, pb) in (&mut pairs_a).zip(&mut pairs_b) {
        acc0 = simd.mul_add_e_f32s(pa[0], pb[0], acc0);
        acc1 = simd.mul_add_e_f32s(pa[1], pb[1], acc1);
    }
    for (&va, &vb) in pairs_a.remainder().iter().zip(pairs_b.remainder()) {
        acc0 = simd.mul_add_e_f32s(va, vb, acc0);
    }
    let mut sum = simd.reduce_sum_f32s(simd.add_f32s(acc0, acc1));
    for (&x, &y) in a_tail.iter().zip(b_tail) {
        sum += x * y;
    }
    sum
}

/// `y += alpha · x`.
#[inline(always)]
pub(crate) fn axpy<S: Simd>(simd: S, alpha: f32, x: &[f32], y: &mut [f32]) {
    debug_assert_eq!(x.len(), y.len());
    let (x_head, x_tail) = S::as_simd_f32s(x);
    let (y_head, y_tail) = S::as_mut_simd_f32s(y);
    let va = simd.splat_f32s(alpha);
    for (vy, &vx) in y_head.iter_mut().zip(x_head) {
        *vy = simd.mul_add_e_f32s(va, vx, *vy);
    }
    for (y, &x) in y_tail.iter_mut().zip(x_tail) {
        *y += alpha * x;
    }
}

/// `out[j] = dot(x, rows[j])` for a row-major matrix with rows of `x.len()`.
pub(crate) fn matvec_rows(rows: &[f32], x: &[f32], out: &mut [f32]) {
    struct Op<'a> {
        rows: &'a [f32],
        x: &'a [f32],
        out: &'a mut [f32],
    }
    impl pulp::WithSimd for Op<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) {
            let f = self.x.len();
            for (o, row) in self.out.iter_mut().zip(self.rows.chunks_exact(f)) {
                *o = dot(simd, row, self.x);
            }
        }
    }
    if x.is_empty() {
        out.fill(0.0);
        return;
    }
    pulp::Arch::new().dispatch(Op { rows, x, out });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_scalar_code() {
        let a: Vec<f32> = (0..37).map(|k| k as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..37).map(|k| (k % 5) as f32).collect();
        let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let got = pulp::Arch::new().dispatch(|| dot(pulp::Scalar::new(), &a, &b));
        assert!((got - want).abs() < 1e-3);
        let mut y = b.clone();
        axpy(pulp::Scalar::new(), 2.0, &a, &mut y);
        assert!(y.iter().zip(a.iter().zip(&b)).all(|(y, (a, b))| (y - (b + 2.0 * a)).abs() < 1e-5));
        let mut out = vec![0.0; 2];
        let rows: Vec<f32> = a.iter().chain(b.iter()).copied().collect();
        matvec_rows(&rows, &b, &mut out);
        assert!((out[0] - want).abs() < 1e-3);
    }
}
