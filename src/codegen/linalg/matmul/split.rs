//! Splitting a matrix product whose operands exceed one storage binding into
//! parts, each a dispatch that binds a window of every large operand.
//!
//! A [`Part`] computes the outputs of batches `b0..b0 + nb`, rows `m0..m1` and
//! columns `n0..n1`, summing over `k0..k1`. The choice, in order:
//!
//! 1. Everything fits: one part.
//! 2. Split along the batch, whole matrices per part (as many batches per part as
//!    fit).
//! 3. Within one matrix: split rows (a large A or Y), columns (a large transposed
//!    B), and k (a large B; the first k part writes, the later ones add to the
//!    output). Among the splits whose windows fit, the one with fewest parts and
//!    no k split if possible wins, rows before columns; column (k) part sizes are
//!    multiples of 4 where B (A) is read as vec4, so those loads stay aligned.
//!
//! A product no split fits (four rows of a vec4-read operand over the limit), or
//! one needing over [`MAX_DISPATCHES`] parts, is refused with the reason.

use super::Problem;
use crate::codegen::spec::{DeviceLimits, Slot};
use crate::codegen::tile::{bind, binding_elems, span, Axis, Bound, MAX_DISPATCHES, SLACK};

/// One dispatch of a split product.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Part {
    pub b0: usize,
    pub nb: usize,
    pub m: (usize, usize),
    pub n: (usize, usize),
    pub k: (usize, usize),
    /// Adds to the output instead of writing it (k parts after the first).
    pub accumulate: bool,
    /// A, B, C (when the problem has it) and Y, in slot order.
    pub bound: Vec<Bound>,
}

/// Element counts of the operands: A, B, C (0 when absent), Y.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lens {
    pub a: u64,
    pub b: u64,
    pub c: u64,
    pub y: u64,
}

impl Problem {
    /// Bounds of A's and B's batch offsets over batches `b0..b0 + nb`.
    fn batch_span(&self, strides: &[usize], b0: usize, nb: usize) -> (u64, u64) {
        if self.batch.is_empty() {
            return (0, 0);
        }
        let axes: Vec<Axis> = self
            .batch
            .iter()
            .zip(strides)
            .map(|(&d, &s)| Axis::new(d, s as i64))
            .collect();
        let (lo, hi) = span(&axes, b0 as u64, (b0 + nb) as u64);
        (lo as u64, hi as u64)
    }

    /// Binds the operands of a part, or `None` when a window does not fit.
    fn bind_part(&self, p: &Part, lens: Lens, limits: &DeviceLimits) -> Option<Vec<Bound>> {
        let ((m0, m1), (n0, n1), (k0, k1)) = (p.m, p.n, p.k);
        let (m1, n1, k1) = (m1 - 1, n1 - 1, k1 - 1);
        let (alo, ahi) = self.batch_span(&self.a_batch, p.b0, p.nb);
        let (blo, bhi) = self.batch_span(&self.b_batch, p.b0, p.nb);
        let ext = |i: usize, s: usize| (i * s) as u64;
        let mut bound = vec![
            bind(
                Slot::Input(0),
                lens.a,
                alo + ext(m0, self.a_sm) + ext(k0, self.a_sk),
                ahi + ext(m1, self.a_sm) + ext(k1, self.a_sk),
                limits,
            )?,
            bind(
                Slot::Input(1),
                lens.b,
                blo + ext(k0, self.b_sk) + ext(n0, self.b_sn),
                bhi + ext(k1, self.b_sk) + ext(n1, self.b_sn),
                limits,
            )?,
        ];
        if let Some((_, sm, sn)) = self.c {
            bound.push(bind(
                Slot::Input(2),
                lens.c,
                ext(m0, sm) + ext(n0, sn),
                ext(m1, sm) + ext(n1, sn),
                limits,
            )?);
        }
        let mat = self.m * self.n;
        bound.push(bind(
            Slot::Output(0),
            lens.y,
            ext(p.b0, mat) + ext(m0, self.n) + n0 as u64,
            ext(p.b0 + p.nb - 1, mat) + ext(m1, self.n) + n1 as u64,
            limits,
        )?);
        Some(bound)
    }

    fn whole(&self, b0: usize, nb: usize) -> Part {
        Part {
            b0,
            nb,
            m: (0, self.m),
            n: (0, self.n),
            k: (0, self.k),
            accumulate: false,
            bound: vec![],
        }
    }

    /// The parts of the product within the device's binding limit.
    pub(super) fn split(&self, lens: Lens, limits: &DeviceLimits) -> Result<Vec<Part>, String> {
        let batches = self.batch_count();
        // 1 and 2: whole matrices, as many batches per part as fit.
        let mut nb = batches;
        loop {
            if let Some(parts) = self.batch_parts(nb, lens, limits) {
                return Ok(parts);
            }
            if nb == 1 {
                break;
            }
            nb = nb.div_ceil(2);
        }
        // 3: within each matrix.
        let (rm, rn, rk) = self.matrix_split(limits).ok_or_else(|| {
            format!(
                "MatMul {}x{}x{}: no split into parts binds every operand within the {}-byte storage binding limit",
                self.m, self.k, self.n, limits.max_storage_binding
            )
        })?;
        let count = batches * self.m.div_ceil(rm) * self.n.div_ceil(rn) * self.k.div_ceil(rk);
        if count as u64 > MAX_DISPATCHES {
            return Err(format!(
                "MatMul: tiling within the {}-byte storage binding limit needs {count} dispatches (over {MAX_DISPATCHES})",
                limits.max_storage_binding
            ));
        }
        let mut parts = Vec::with_capacity(count);
        for b in 0..batches {
            for m0 in (0..self.m).step_by(rm) {
                for n0 in (0..self.n).step_by(rn) {
                    for k0 in (0..self.k).step_by(rk) {
                        let mut p = Part {
                            b0: b,
                            nb: 1,
                            m: (m0, (m0 + rm).min(self.m)),
                            n: (n0, (n0 + rn).min(self.n)),
                            k: (k0, (k0 + rk).min(self.k)),
                            accumulate: k0 > 0,
                            bound: vec![],
                        };
                        p.bound = self.bind_part(&p, lens, limits).ok_or_else(|| {
                            format!("MatMul: part {p:?} does not fit the storage binding limit")
                        })?;
                        parts.push(p);
                    }
                }
            }
        }
        Ok(parts)
    }

    /// Parts of `nb` whole matrices each, if every one fits.
    fn batch_parts(&self, nb: usize, lens: Lens, limits: &DeviceLimits) -> Option<Vec<Part>> {
        let batches = self.batch_count();
        if batches.div_ceil(nb) as u64 > MAX_DISPATCHES {
            return None;
        }
        (0..batches)
            .step_by(nb)
            .map(|b0| {
                let mut p = self.whole(b0, nb.min(batches - b0));
                p.bound = self.bind_part(&p, lens, limits)?;
                Some(p)
            })
            .collect()
    }

    /// Rows, columns and k per part within one matrix such that every window
    /// fits, fewest parts first (without a k split where possible).
    fn matrix_split(&self, limits: &DeviceLimits) -> Option<(usize, usize, usize)> {
        let max = binding_elems(limits).checked_sub(SLACK)?;
        let sizes = |full: usize, quad: bool| {
            let mut v = vec![full];
            let mut s = full;
            while s > 1 {
                s = s.div_ceil(2);
                let s4 = if quad { s.div_ceil(4) * 4 } else { s };
                if s4 < *v.last().unwrap_or(&0) {
                    v.push(s4);
                }
                if quad && s4 <= 4 {
                    break;
                }
            }
            v
        };
        let extent =
            |r: usize, so: usize, c: usize, si: usize| ((r - 1) * so + (c - 1) * si + 1) as u64;
        // ((splits k, parts), (rows, columns, k)) of the best split so far.
        type Choice = ((bool, usize), (usize, usize, usize));
        let mut best: Option<Choice> = None;
        for rm in sizes(self.m, false) {
            for rn in sizes(self.n, self.vec_b()) {
                for rk in sizes(self.k, self.vec_a()) {
                    let (rn, rk) = (rn.min(self.n), rk.min(self.k));
                    let ok = extent(rm, self.a_sm, rk, self.a_sk) <= max
                        && extent(rk, self.b_sk, rn, self.b_sn) <= max
                        && extent(rm, self.n, rn, 1) <= max
                        && self
                            .c
                            .is_none_or(|(_, sm, sn)| extent(rm, sm, rn, sn) <= max);
                    if !ok {
                        continue;
                    }
                    let parts = self.m.div_ceil(rm) * self.n.div_ceil(rn) * self.k.div_ceil(rk);
                    let key = (rk < self.k, parts);
                    if best.is_none_or(|(b, _)| key < b) {
                        best = Some((key, (rm, rn, rk)));
                    }
                }
            }
        }
        best.map(|(_, s)| s)
    }
}
