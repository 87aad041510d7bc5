//! Packing tensors with known lifetimes into one arena.
//!
//! Every allocation has a size and a lifetime (the first and last step at which
//! it must hold its bytes, inclusive). Two allocations whose lifetimes overlap
//! must not overlap in the arena; allocations that never live at the same time
//! may share bytes.
//!
//! The strategy is TFLite's offline "greedy by size" planner (Pisarchyk and Lee,
//! *Efficient Memory Management for Deep Neural Net Inference*, 2020): allocations
//! are placed largest first, each into the smallest gap between the already placed
//! allocations it conflicts with (best fit), or at the end when no gap fits. Since
//! no order is best for every graph, the planner also tries two other orders
//! (longest lifetime first, earliest first use), then, within a fixed work budget,
//! orders perturbed with seeded noise, and keeps the smallest arena. The result
//! is deterministic.
//!
//! The lower bound is the largest sum of sizes alive at one step: no placement
//! can need less.
//!
//! ```
//! use modc::plan::{pack, Interval};
//! let a = Interval { size: 256, first: 0, last: 1 };
//! let b = Interval { size: 256, first: 1, last: 2 };
//! let c = Interval { size: 256, first: 2, last: 3 };
//! let p = pack(&[a, b, c], 4);
//! assert_eq!(p.peak, 512); // a and c share bytes
//! assert_eq!(p.lower_bound, 512);
//! ```

/// One allocation to place: `size` bytes alive from step `first` to step `last`
/// (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub size: u64,
    pub first: usize,
    pub last: usize,
}

impl Interval {
    fn overlaps(&self, other: &Interval) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// Where every allocation went, and the figures of the placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packing {
    /// Offset of each allocation, in the order given.
    pub offsets: Vec<u64>,
    /// The arena's high-water mark: the largest `offset + size`.
    pub peak: u64,
    /// The largest sum of sizes alive at one step.
    pub lower_bound: u64,
    /// The sum of sizes alive at each step.
    pub per_step: Vec<u64>,
    /// The order that gave this placement (`by-size`, `by-lifetime`, `by-first-use`,
    /// `perturbed`).
    pub strategy: &'static str,
}

/// Places `items` (sizes already rounded to the wanted alignment, so every offset
/// is a sum of sizes and keeps it) over `steps` steps.
pub fn pack(items: &[Interval], steps: usize) -> Packing {
    let steps = steps.max(1);
    let mut per_step = vec![0u64; steps];
    for it in items {
        for s in &mut per_step[it.first.min(steps - 1)..=it.last.min(steps - 1)] {
            *s += it.size;
        }
    }
    let lower_bound = per_step.iter().copied().max().unwrap_or(0);

    type Key = fn(&Interval) -> (u64, u64, u64);
    let orders: [(&'static str, Key); 3] = [
        ("by-size", |i| {
            (u64::MAX - i.size, (i.last - i.first) as u64, i.first as u64)
        }),
        ("by-lifetime", |i| {
            (
                u64::MAX - (i.last - i.first) as u64,
                u64::MAX - i.size,
                i.first as u64,
            )
        }),
        ("by-first-use", |i| {
            (i.first as u64, u64::MAX - i.size, i.last as u64)
        }),
    ];
    let mut best: Option<Packing> = None;
    for (strategy, key) in orders {
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by_key(|&i| (key(&items[i]), i));
        let offsets = best_fit(items, &order);
        let peak = items
            .iter()
            .zip(&offsets)
            .map(|(it, o)| o + it.size)
            .max()
            .unwrap_or(0);
        if best.as_ref().is_none_or(|b| peak < b.peak) {
            best = Some(Packing {
                offsets,
                peak,
                lower_bound,
                per_step: per_step.clone(),
                strategy,
            });
        }
        if peak == lower_bound {
            break;
        }
    }
    let mut best = best.expect("at least one order is tried");
    // Perturbed orders: sizes and lifetimes weighted with seeded noise, as long as
    // the budget allows (each try costs about n^2 overlap checks).
    let n = items.len().max(1) as u64;
    let tries = (WORK_BUDGET / (n * n)).min(MAX_TRIES);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for t in 0..tries {
        if best.peak == lower_bound {
            break;
        }
        let (a, b) = [(1.0, 0.0), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0)][(t % 4) as usize];
        let mut keyed: Vec<(f64, usize)> = items
            .iter()
            .enumerate()
            .map(|(i, it)| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let noise = 0.6 + 0.8 * (rng >> 11) as f64 / (1u64 << 53) as f64;
                let w = (it.size as f64).powf(a) * ((it.last - it.first + 1) as f64).powf(b);
                (w * noise, i)
            })
            .collect();
        keyed.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        let order: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
        let offsets = best_fit(items, &order);
        let peak = items
            .iter()
            .zip(&offsets)
            .map(|(it, o)| o + it.size)
            .max()
            .unwrap_or(0);
        if peak < best.peak {
            best.offsets = offsets;
            best.peak = peak;
            best.strategy = "perturbed";
        }
    }
    best
}

/// Overlap checks the perturbed search may spend (about 0.1 s).
const WORK_BUDGET: u64 = 50_000_000;
/// Perturbed orders tried at most.
const MAX_TRIES: u64 = 400;

/// Places the items in `order`, each at the start of the smallest gap between the
/// placed items whose lifetimes overlap its own that fits it, else after them.
fn best_fit(items: &[Interval], order: &[usize]) -> Vec<u64> {
    let mut offsets = vec![0u64; items.len()];
    let mut placed: Vec<usize> = Vec::with_capacity(items.len());
    let mut conflicts: Vec<(u64, u64)> = Vec::new();
    for &i in order {
        let it = items[i];
        conflicts.clear();
        conflicts.extend(
            placed
                .iter()
                .filter(|&&j| items[j].overlaps(&it))
                .map(|&j| (offsets[j], offsets[j] + items[j].size)),
        );
        conflicts.sort_unstable();
        let mut end = 0u64;
        let mut fit: Option<(u64, u64)> = None; // (gap size, offset)
        for &(start, stop) in &conflicts {
            if start > end {
                let gap = start - end;
                if gap >= it.size && fit.is_none_or(|(g, _)| gap < g) {
                    fit = Some((gap, end));
                }
            }
            end = end.max(stop);
        }
        offsets[i] = fit.map(|(_, o)| o).unwrap_or(end);
        placed.push(i);
    }
    offsets
}

/// `n` rounded up to a multiple of `alignment` (a power of two or any positive
/// number; 0 and 1 leave `n` as it is).
pub fn align_up(n: u64, alignment: u64) -> u64 {
    if alignment <= 1 {
        n
    } else {
        n.div_ceil(alignment) * alignment
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn iv(size: u64, first: usize, last: usize) -> Interval {
        Interval { size, first, last }
    }

    fn check_no_overlap(items: &[Interval], p: &Packing) {
        for i in 0..items.len() {
            for j in i + 1..items.len() {
                if items[i].overlaps(&items[j]) && items[i].size > 0 && items[j].size > 0 {
                    let (a, b) = (p.offsets[i], p.offsets[j]);
                    assert!(
                        a + items[i].size <= b || b + items[j].size <= a,
                        "{:?} at {a} and {:?} at {b} overlap",
                        items[i],
                        items[j]
                    );
                }
            }
        }
    }

    #[test]
    fn chain_reuses_two_buffers() {
        // x0 -> x1 -> x2 -> x3: each tensor lives from its writer to its reader.
        let items: Vec<_> = (0..4).map(|s| iv(1024, s, s + 1)).collect();
        let p = pack(&items, 5);
        assert_eq!(p.lower_bound, 2048);
        assert_eq!(p.peak, 2048);
        assert_eq!(p.offsets[0], p.offsets[2]);
        assert_eq!(p.offsets[1], p.offsets[3]);
        check_no_overlap(&items, &p);
    }

    #[test]
    fn best_fit_takes_the_smallest_gap() {
        // Short-lived s1, s2 between long-lived l1, l2 leave gaps of 600 and 400
        // bytes after step 2; x (300 bytes) takes the 400 gap.
        let items = vec![
            iv(600, 0, 2), // s1 at 0
            iv(500, 0, 9), // l1 at 600
            iv(400, 0, 2), // s2 at 1100
            iv(350, 0, 9), // l2 at 1500
            iv(300, 5, 9), // x
        ];
        let p = pack(&items, 10);
        check_no_overlap(&items, &p);
        assert_eq!(p.offsets[4], p.offsets[2]);
        assert_eq!(p.peak, 1850);
        assert_eq!(p.lower_bound, 1850);
    }

    #[test]
    fn per_step_sums_live_sizes() {
        let items = vec![iv(10, 0, 0), iv(20, 0, 1), iv(40, 2, 2)];
        let p = pack(&items, 3);
        assert_eq!(p.per_step, vec![30, 20, 40]);
        assert_eq!(p.lower_bound, 40);
        assert_eq!(p.peak, 40);
    }

    #[test]
    fn empty_and_zero_sized() {
        let p = pack(&[], 0);
        assert_eq!((p.peak, p.lower_bound), (0, 0));
        let p = pack(&[iv(0, 0, 3), iv(8, 1, 1)], 4);
        assert_eq!(p.peak, 8);
    }

    #[test]
    fn align_rounds_up() {
        assert_eq!(align_up(1, 256), 256);
        assert_eq!(align_up(256, 256), 256);
        assert_eq!(align_up(257, 256), 512);
        assert_eq!(align_up(0, 256), 0);
        assert_eq!(align_up(7, 1), 7);
    }

    proptest! {
        #[test]
        fn live_tensors_never_overlap(
            raw in prop::collection::vec((1u64..64, 0usize..30, 0usize..8), 0..60)
        ) {
            let items: Vec<Interval> = raw
                .iter()
                .map(|&(s, f, len)| iv(s * 256, f, f + len))
                .collect();
            let p = pack(&items, 40);
            check_no_overlap(&items, &p);
            prop_assert!(p.peak >= p.lower_bound);
            for (it, o) in items.iter().zip(&p.offsets) {
                prop_assert_eq!(o % 256, 0);
                prop_assert!(o + it.size <= p.peak);
            }
        }
    }
}
