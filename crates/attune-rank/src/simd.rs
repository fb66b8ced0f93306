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

/// Four dot products against one shared vector: `[y0·p, y1·p, y2·p, y3·p]`. Loads each chunk of
/// `p` once for four rows and keeps four independent FMA chains in flight.
#[inline(always)]
pub(crate) fn dot4<S: Simd>(simd: S, ys: [&[f32]; 4], p: &[f32]) -> [f32; 4] {
    let (p_head, p_tail) = S::as_simd_f32s(p);
    let [h0, h1, h2, h3] = ys.map(|y| S::as_simd_f32s(y).0);
    let zero = simd.splat_f32s(0.0);
    let (mut a0, mut a1, mut a2, mut a3) = (zero, zero, zero, zero);
    for ((((&pk, &y0), &y1), &y2), &y3) in p_head.iter().zip(h0).zip(h1).zip(h2).zip(h3) {
        a0 = simd.mul_add_e_f32s(y0, pk, a0);
        a1 = simd.mul_add_e_f32s(y1, pk, a1);
        a2 = simd.mul_add_e_f32s(y2, pk, a2);
        a3 = simd.mul_add_e_f32s(y3, pk, a3);
    }
    let mut out = [a0, a1, a2, a3].map(|a| simd.reduce_sum_f32s(a));
    let offset = p.len() - p_tail.len();
    for j in 0..4 {
        for (&x, &y) in ys[j][offset..].iter().zip(p_tail) {
            out[j] += x * y;
        }
    }
    out
}

/// `out += Σ_j coef_j · y_j` for four rows: loads and stores each chunk of `out` once.
#[inline(always)]
pub(crate) fn axpy4<S: Simd>(simd: S, coef: [f32; 4], ys: [&[f32]; 4], out: &mut [f32]) {
    let [h0, h1, h2, h3] = ys.map(|y| S::as_simd_f32s(y).0);
    let [c0, c1, c2, c3] = coef.map(|c| simd.splat_f32s(c));
    let (o_head, o_tail) = S::as_mut_simd_f32s(out);
    for ((((o, &y0), &y1), &y2), &y3) in o_head.iter_mut().zip(h0).zip(h1).zip(h2).zip(h3) {
        let v = simd.mul_add_e_f32s(c0, y0, *o);
        let v = simd.mul_add_e_f32s(c1, y1, v);
        let v = simd.mul_add_e_f32s(c2, y2, v);
        *o = simd.mul_add_e_f32s(c3, y3, v);
    }
    let offset = ys[0].len() - o_tail.len();
    for (t, o) in o_tail.iter_mut().enumerate() {
        for j in 0..4 {
            *o += coef[j] * ys[j][offset + t];
        }
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
        let rows4 = [&a[..], &b[..], &a[..], &b[..]];
        let got4 = dot4(pulp::Scalar::new(), rows4, &b);
        assert!((got4[0] - want).abs() < 1e-3 && (got4[3] - b.iter().map(|x| x * x).sum::<f32>()).abs() < 1e-3);
        let mut acc = vec![1.0; 37];
        axpy4(pulp::Scalar::new(), [1.0, 0.0, 2.0, 0.0], rows4, &mut acc);
        assert!(acc.iter().zip(&a).all(|(o, a)| (o - (1.0 + 3.0 * a)).abs() < 1e-4));
        let mut out = vec![0.0; 2];
        let rows: Vec<f32> = a.iter().chain(b.iter()).copied().collect();
        matvec_rows(&rows, &b, &mut out);
        assert!((out[0] - want).abs() < 1e-3);
    }
}
