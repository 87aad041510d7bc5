//! Tiling tensors larger than one storage binding.
//!
//! A device binds at most [`DeviceLimits::max_storage_binding`] bytes of a buffer
//! at once (128 MiB on lavapipe and many GPUs), while the buffer itself may be
//! larger. A node whose tensors do not fit is split into several dispatches; each
//! binds a *window* of every large tensor (a [`Slot::InputRange`] or
//! [`Slot::OutputRange`]) and small tensors whole, and learns through its uniform
//! parameters which elements it computes and where each window starts.
//!
//! The decisions:
//! - A window starts at a multiple of 64 elements (256 bytes, the storage offset
//!   alignment every wgpu device accepts) and ends at the last element needed,
//!   rounded up to 4 elements (so a `vec4` view of the binding loses nothing). A
//!   shader subtracts the window's first element from every index it computes.
//! - Which elements a dispatch touches is bounded from the geometry alone: a flat,
//!   row-major iteration range maps to an offset `base + Σ f_d(c_d)` per tensor
//!   ([`Axis`]: coordinate times stride, optionally modulo a size, for Tile), and
//!   [`span`] bounds that sum over the range (the partial first and last blocks
//!   of each axis apart from the whole ones between), exact for contiguous and
//!   broadcast reads.
//! - [`chunk_flat`] splits a flat iteration into equal chunks (a multiple of 64
//!   elements, so output windows stay aligned), or, where a broadcast input
//!   longer than a binding is read along an inner block, into chunks that stop at
//!   the block's ends; the chunk halves until every window fits (down to 64
//!   elements, or to single rows for row-wise kernels). A node that would need
//!   more than [`MAX_DISPATCHES`] dispatches, or a window over the limit even at
//!   the smallest chunk, is refused with the reason.
//! - Kernels with their own geometry (MatMul, Gather) choose their parts
//!   themselves and use [`bind`] for the windows.
//! - A tensor that fits one binding is always bound whole (window start 0): small
//!   operands and broadcast inputs cost nothing extra.
//!
//! ```ignore
//! // y = x + b over 1M f32 with a 1 KiB binding limit: 4096 chunks of 256.
//! let chunks = chunk_flat(&[1 << 20], &[x_access, b_access, y_access], &limits, ALIGN)?;
//! ```

use super::spec::{ByteRange, DeviceLimits, Dispatch, NodeInfo, Slot, TensorDesc};

/// Elements per storage offset alignment (256 bytes of 4-byte elements).
pub(crate) const ALIGN: u64 = 64;

/// Elements a window may need past the ones it covers: the alignment of its start
/// and the rounding of its end.
pub(crate) const SLACK: u64 = ALIGN - 1 + 3;

/// Most dispatches one node may be split into.
pub(crate) const MAX_DISPATCHES: u64 = 4096;

/// Elements one binding holds.
pub(crate) fn binding_elems(limits: &DeviceLimits) -> u64 {
    limits.max_storage_binding / 4
}

/// Whether a tensor fits one storage binding.
pub(crate) fn fits(t: &TensorDesc, limits: &DeviceLimits) -> bool {
    t.device_bytes() <= limits.max_storage_binding
}

/// Elements of the tensor a whole slot (`Input(k)` or `Output(k)`) names; 0 for
/// an absent one.
pub(crate) fn slot_len(info: &NodeInfo, s: Slot) -> u64 {
    let t = match s.base() {
        Slot::Input(k) => info.inputs.get(k).and_then(|t| t.as_ref()),
        Slot::Output(k) => info.outputs.get(k),
        _ => None,
    };
    t.map_or(0, |t| t.len() as u64)
}

/// The reason a tensor cannot be tiled, naming the limit.
pub(crate) fn over_limit(what: &str, t: &TensorDesc, limits: &DeviceLimits, why: &str) -> String {
    format!(
        "{what} {:?} takes {} bytes, over the {}-byte storage binding limit, and {why}",
        t.shape,
        t.device_bytes(),
        limits.max_storage_binding
    )
}

/// Elements `[base, end)` of a tensor, bound as one range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// The first element bound (a multiple of [`ALIGN`]).
    pub base: u64,
    pub end: u64,
}

impl Window {
    /// The window holding elements `lo..=hi` of a tensor of `len` elements.
    pub(crate) fn covering(lo: u64, hi: u64, len: u64) -> Window {
        let base = lo / ALIGN * ALIGN;
        let end = (hi + 1).div_ceil(4).saturating_mul(4).min(len).max(hi + 1);
        Window { base, end }
    }
    pub(crate) fn elems(&self) -> u64 {
        self.end - self.base
    }
    pub(crate) fn fits(&self, limits: &DeviceLimits) -> bool {
        self.elems() <= binding_elems(limits)
    }
    pub(crate) fn bytes(&self) -> ByteRange {
        ByteRange {
            offset: 4 * self.base,
            size: 4 * self.elems(),
        }
    }
    /// `whole` (an `Input` or `Output` slot) narrowed to this window.
    pub(crate) fn slot(&self, whole: Slot) -> Slot {
        match whole {
            Slot::Input(k) => Slot::InputRange(k, self.bytes()),
            Slot::Output(k) => Slot::OutputRange(k, self.bytes()),
            s => s,
        }
    }
}

/// How a dispatch binds one tensor: the slot, and the element its binding starts at
/// (0 for a whole tensor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bound {
    pub slot: Slot,
    pub base: u64,
}

impl Bound {
    pub(crate) fn whole(slot: Slot) -> Bound {
        Bound { slot, base: 0 }
    }
    /// The base as a parameter word.
    pub(crate) fn word(&self) -> u32 {
        self.base as u32
    }
}

/// Binds `whole` (a tensor of `len` elements) for elements `lo..=hi`: whole when
/// it fits, else the window, or `None` when the window does not fit either.
pub(crate) fn bind(
    whole: Slot,
    len: u64,
    lo: u64,
    hi: u64,
    limits: &DeviceLimits,
) -> Option<Bound> {
    if 4 * len <= limits.max_storage_binding {
        return Some(Bound::whole(whole));
    }
    let w = Window::covering(lo, hi, len);
    w.fits(limits).then(|| Bound {
        slot: w.slot(whole),
        base: w.base,
    })
}

/// One dimension of a flat row-major iteration and what it adds to a tensor offset:
/// the coordinate (modulo `modulus` when that is not 0) times `stride`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Axis {
    pub size: u64,
    pub stride: i64,
    pub modulus: u64,
}

impl Axis {
    pub(crate) fn new(size: usize, stride: i64) -> Axis {
        Axis {
            size: size as u64,
            stride,
            modulus: 0,
        }
    }

    /// Bounds of this axis's contribution for coordinates `a..=b`.
    fn contribution(&self, a: u64, b: u64) -> (i64, i64) {
        let (a, b) = match self.modulus {
            0 => (a, b),
            m if b - a + 1 >= m || a % m > b % m => (0, m - 1),
            m => (a % m, b % m),
        };
        let (x, y) = (a as i64 * self.stride, b as i64 * self.stride);
        (x.min(y), x.max(y))
    }
}

/// Row-major strides of `shape` as axes (the offsets of a contiguous tensor).
pub(crate) fn contiguous(shape: &[usize]) -> Vec<Axis> {
    let mut axes = vec![];
    let mut s = 1i64;
    for &d in shape.iter().rev() {
        axes.push(Axis::new(d, s));
        s *= d as i64;
    }
    axes.reverse();
    axes
}

/// Inclusive bounds of `Σ f_d(c_d)` over the flat indices `start..end` (`end >
/// start`) of the iteration `axes`.
pub(crate) fn span(axes: &[Axis], start: u64, end: u64) -> (i64, i64) {
    let unravel = |mut i: u64| -> Vec<u64> {
        let mut c = vec![0; axes.len()];
        for d in (0..axes.len()).rev() {
            let s = axes[d].size.max(1);
            c[d] = i % s;
            i /= s;
        }
        c
    };
    coords_span(axes, &unravel(start), &unravel(end - 1))
}

/// Bounds over the coordinates from `a` to `b` (inclusive, row-major order): the
/// partial first block of the outer axis, the whole blocks between, and the
/// partial last one; exact for contiguous and broadcast reads.
fn coords_span(axes: &[Axis], a: &[u64], b: &[u64]) -> (i64, i64) {
    let Some((ax, rest)) = axes.split_first() else {
        return (0, 0);
    };
    let add = |(x, y): (i64, i64), (l, h): (i64, i64)| (x + l, y + h);
    let union = |(x, y): (i64, i64), (l, h): (i64, i64)| (x.min(l), y.max(h));
    if a[0] == b[0] {
        return add(
            ax.contribution(a[0], a[0]),
            coords_span(rest, &a[1..], &b[1..]),
        );
    }
    let first: Vec<u64> = vec![0; rest.len()];
    let last: Vec<u64> = rest.iter().map(|r| r.size.max(1) - 1).collect();
    let head = add(
        ax.contribution(a[0], a[0]),
        coords_span(rest, &a[1..], &last),
    );
    let tail = add(
        ax.contribution(b[0], b[0]),
        coords_span(rest, &first, &b[1..]),
    );
    let mut r = union(head, tail);
    if b[0] - a[0] >= 2 {
        let whole = rest.iter().fold((0, 0), |acc, r| {
            add(acc, r.contribution(0, r.size.max(1) - 1))
        });
        r = union(r, add(ax.contribution(a[0] + 1, b[0] - 1), whole));
    }
    r
}

/// A tensor a flat iteration reads or writes: the whole slot, its length, and its
/// offset at each iteration index (`base + Σ f_d(c_d)` over `axes`, which have the
/// iteration's sizes).
#[derive(Debug, Clone)]
pub(crate) struct Access {
    pub slot: Slot,
    pub len: u64,
    pub base: i64,
    pub axes: Vec<Axis>,
}

/// One dispatch of a flat iteration: indices `start..start + count`, and the
/// tensors bound, one per distinct slot in the order the accesses name them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Chunk {
    pub start: u64,
    pub count: u64,
    pub bound: Vec<Bound>,
}

/// The tensors to bind for iteration indices `start..end`, or the index of the
/// distinct slot whose window does not fit.
fn bind_range(
    accesses: &[Access],
    start: u64,
    end: u64,
    limits: &DeviceLimits,
) -> Result<Vec<Bound>, Option<usize>> {
    // Union of the accesses' offsets per slot, in first-seen order.
    let mut spans: Vec<(Slot, u64, i64, i64)> = vec![];
    for a in accesses {
        let (lo, hi) = span(&a.axes, start, end);
        let (lo, hi) = (lo + a.base, hi + a.base);
        match spans.iter_mut().find(|s| s.0 == a.slot) {
            Some(s) => {
                s.2 = s.2.min(lo);
                s.3 = s.3.max(hi);
            }
            None => spans.push((a.slot, a.len, lo, hi)),
        }
    }
    spans
        .iter()
        .enumerate()
        .map(|(i, &(slot, len, lo, hi))| {
            let (lo, hi) = (
                lo.clamp(0, len as i64 - 1) as u64,
                hi.clamp(0, len as i64 - 1) as u64,
            );
            bind(slot, len, lo, hi.max(lo), limits).ok_or(Some(i))
        })
        .collect()
}

/// Splits the flat iteration over `dims` into dispatches whose tensors each fit
/// one binding. Without any tensor over the limit there is one chunk binding
/// every tensor whole. Otherwise chunks are equal and aligned (a multiple of
/// [`ALIGN`] indices) where that lets every window fit, else also cut where an
/// inner block of `dims` ends (a broadcast row longer than a binding is then read
/// one part per chunk); the chunk halves until the windows fit, down to
/// `min_chunk` indices ([`ALIGN`] for element-wise kernels, 1 for row-wise ones,
/// whose indices are long rows).
pub(crate) fn chunk_flat(
    dims: &[usize],
    accesses: &[Access],
    limits: &DeviceLimits,
    min_chunk: u64,
) -> Result<Vec<Chunk>, String> {
    let n: u64 = dims.iter().map(|&d| d as u64).product();
    let slots: Vec<Slot> = accesses.iter().fold(vec![], |mut v, a| {
        if !v.contains(&a.slot) {
            v.push(a.slot);
        }
        v
    });
    if n == 0
        || accesses
            .iter()
            .all(|a| 4 * a.len <= limits.max_storage_binding)
    {
        return Ok(vec![Chunk {
            start: 0,
            count: n,
            bound: slots.iter().map(|&s| Bound::whole(s)).collect(),
        }]);
    }
    if n > u32::MAX as u64 {
        return Err(format!(
            "{n} elements exceed the 32-bit indices of the kernels"
        ));
    }
    let elems = binding_elems(limits);
    let room = elems.saturating_sub(SLACK);
    if room == 0 {
        return Err(format!(
            "a {}-byte storage binding limit is below one aligned window",
            limits.max_storage_binding
        ));
    }
    // Inner blocks of the iteration, largest first (the whole iteration first).
    let mut blocks: Vec<u64> = std::iter::once(n)
        .chain((1..dims.len()).map(|d| dims[d..].iter().map(|&x| x as u64).product()))
        .filter(|&b| b > 1 && b <= n)
        .collect();
    blocks.dedup();
    let mut failed = 0;
    let mut c = (elems / ALIGN * ALIGN).max(1);
    loop {
        // Aligned chunks: every window starts where its chunk does.
        if c.is_multiple_of(ALIGN) {
            match cut(n, c, n, accesses, limits) {
                Ok(chunks) => return Ok(chunks),
                Err(i) => failed = i.unwrap_or(failed),
            }
        }
        // Unaligned starts need room for the alignment of every window.
        for &b in &blocks {
            if let Ok(chunks) = cut(n, c.min(room), b, accesses, limits) {
                return Ok(chunks);
            }
        }
        if c <= min_chunk.max(1) {
            return Err(format!(
                "{:?} is read across more than the {}-byte storage binding limit by neighbouring outputs",
                slots[failed], limits.max_storage_binding
            ));
        }
        c = if c > ALIGN {
            c / 2 / ALIGN * ALIGN
        } else {
            c / 2
        }
        .max(1);
    }
}

/// Chunks of at most `c` indices that do not cross a multiple of `block`, each
/// with its tensors bound; `Err(None)` for too many dispatches, `Err(Some(i))`
/// when the window of the `i`-th distinct slot does not fit.
fn cut(
    n: u64,
    c: u64,
    block: u64,
    accesses: &[Access],
    limits: &DeviceLimits,
) -> Result<Vec<Chunk>, Option<usize>> {
    let mut chunks = vec![];
    let mut s = 0;
    while s < n {
        if chunks.len() as u64 >= MAX_DISPATCHES {
            return Err(None);
        }
        let e = (s + c).min((s / block + 1) * block).min(n);
        chunks.push(Chunk {
            start: s,
            count: e - s,
            bound: bind_range(accesses, s, e, limits)?,
        });
        s = e;
    }
    Ok(chunks)
}

/// The accesses of a row-wise kernel to `slot`: row `r` (flat over `row_dims`,
/// offset `Σ c_d · row_strides[d]`) touches its first element and the element
/// `span` past it, and every one between.
pub(crate) fn row_accesses(
    info: &NodeInfo,
    slot: Slot,
    row_dims: &[usize],
    row_strides: &[i64],
    span: i64,
) -> Vec<Access> {
    let axes: Vec<Axis> = row_dims
        .iter()
        .zip(row_strides)
        .map(|(&d, &s)| Axis::new(d, s))
        .collect();
    [0, span]
        .iter()
        .map(|&base| Access {
            slot,
            len: slot_len(info, slot),
            base,
            axes: axes.clone(),
        })
        .collect()
}

/// One dispatch per chunk of a flat kernel whose uniform is `start, count`, then
/// the first element of each bound tensor; several are labelled `LABEL_tileN`.
pub(crate) fn flat_dispatches(
    label: &str,
    wgsl: &str,
    chunks: &[Chunk],
    workgroups: impl Fn(u64) -> Result<[u32; 3], String>,
) -> Result<Vec<Dispatch>, String> {
    let many = chunks.len() > 1;
    chunks
        .iter()
        .enumerate()
        .map(|(c, chunk)| {
            let mut params = vec![chunk.start as u32, chunk.count as u32];
            params.extend(chunk.bound.iter().map(|b| b.word()));
            Ok(Dispatch {
                label: if many {
                    format!("{label}_tile{c}")
                } else {
                    label.to_string()
                },
                wgsl: wgsl.to_string(),
                slots: chunk.bound.iter().map(|b| b.slot).collect(),
                params,
                workgroups: workgroups(chunk.count)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(bytes: u64) -> DeviceLimits {
        DeviceLimits {
            max_storage_binding: bytes,
            ..DeviceLimits::default()
        }
    }

    #[test]
    fn span_is_exact_for_contiguous_ranges() {
        let axes = contiguous(&[3, 5, 7]);
        assert_eq!(span(&axes, 0, 105), (0, 104));
        assert_eq!(span(&axes, 10, 40), (10, 39));
        assert_eq!(span(&axes, 13, 14), (13, 13));
    }

    #[test]
    fn span_bounds_broadcast_and_reversed_reads() {
        // [4, 6] reading a [1, 6] row: one row's range, or the whole row.
        let row = vec![Axis::new(4, 0), Axis::new(6, 1)];
        assert_eq!(span(&row, 7, 10), (1, 3));
        assert_eq!(span(&row, 5, 8), (0, 5));
        assert_eq!(span(&row, 4, 7), (0, 5));
        assert_eq!(span(&row, 3, 7), (0, 5));
        // A column [4, 1]: the rows the range crosses.
        let col = vec![Axis::new(4, 1), Axis::new(6, 0)];
        assert_eq!(span(&col, 7, 19), (1, 3));
        // Reversed: offsets 9 - c.
        let rev = vec![Axis::new(10, -1)];
        assert_eq!(span(&rev, 2, 5), (-4, -2));
        // Tile: coordinates modulo 3.
        let tile = vec![Axis {
            size: 9,
            stride: 1,
            modulus: 3,
        }];
        assert_eq!(span(&tile, 3, 5), (0, 1));
        assert_eq!(span(&tile, 2, 4), (0, 2));
    }

    #[test]
    fn windows_are_aligned_and_cover() {
        let w = Window::covering(70, 100, 1000);
        assert_eq!((w.base, w.end), (64, 104));
        assert_eq!(
            w.bytes(),
            ByteRange {
                offset: 256,
                size: 160
            }
        );
        let w = Window::covering(0, 998, 999);
        assert_eq!(w.end, 999);
    }

    #[test]
    fn chunks_fit_the_limit_and_cover_the_iteration() {
        let n = 1000u64;
        let out = Access {
            slot: Slot::Output(0),
            len: n,
            base: 0,
            axes: contiguous(&[1000]),
        };
        let l = limits(1024);
        let chunks = chunk_flat(&[1000], std::slice::from_ref(&out), &l, ALIGN).unwrap();
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks.iter().map(|c| c.count).sum::<u64>(), n);
        for c in &chunks {
            let r = c.bound[0].slot.range().unwrap();
            assert!(r.size <= 1024 && r.offset % 256 == 0);
            assert_eq!(r.offset, 4 * c.start);
        }
        // Everything fits: one chunk, bound whole.
        let one = chunk_flat(&[1000], &[out], &limits(4096), ALIGN).unwrap();
        assert_eq!(one[0].bound, vec![Bound::whole(Slot::Output(0))]);
    }

    #[test]
    fn chunks_shrink_until_broadcast_reads_fit() {
        // y[2, 600] = x[2, 600] + b[1, 600] with 1 KiB: b does not fit, and a chunk
        // crossing a row boundary reads all of it; 128-wide chunks do not cross.
        let l = limits(1024);
        let y = Access {
            slot: Slot::Output(0),
            len: 1200,
            base: 0,
            axes: contiguous(&[2, 600]),
        };
        let b = Access {
            slot: Slot::Input(1),
            len: 600,
            base: 0,
            axes: vec![Axis::new(2, 0), Axis::new(600, 1)],
        };
        let chunks = chunk_flat(&[2, 600], &[b, y], &l, ALIGN).unwrap();
        for c in &chunks {
            for x in &c.bound {
                assert!(x.slot.range().is_none_or(|r| r.size <= 1024));
            }
        }
    }

    #[test]
    fn refuses_reads_that_never_fit() {
        // Every output reads input elements 0 and 999 (two accesses of one slot):
        // no chunk, however small, binds them within 1 KiB.
        let l = limits(1024);
        let y = Access {
            slot: Slot::Output(0),
            len: 1000,
            base: 0,
            axes: contiguous(&[1000]),
        };
        let first = Access {
            slot: Slot::Input(0),
            len: 1000,
            base: 0,
            axes: vec![Axis::new(1000, 0)],
        };
        let last = Access {
            base: 999,
            ..first.clone()
        };
        assert!(chunk_flat(&[1000], &[first.clone(), y.clone()], &l, ALIGN).is_ok());
        let e = chunk_flat(&[1000], &[first, last, y], &l, 1).unwrap_err();
        assert!(e.contains("1024-byte"), "{e}");
    }
}
