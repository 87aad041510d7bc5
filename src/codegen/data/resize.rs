//! Resize (opsets 10–19) and Upsample (`kernels/data_resize.wgsl`): modes nearest
//! (every `nearest_mode`, any storage type) and linear (f32, two taps per resized
//! axis), coordinate modes half_pixel, half_pixel_symmetric, pytorch_half_pixel,
//! align_corners and asymmetric, with scales or sizes (and `axes`,
//! `keep_aspect_ratio_policy`) as constants. The taps of each resized axis are
//! computed by `ops/resize.rs` itself (the interpreter's `axis_taps`); nearest taps become an
//! integer formula `clamp((A·c + B) / C, 0, in - 1)` checked against every output
//! position (or a table), linear taps a table in the uniform parameters. Cubic,
//! antialiased downsampling, tf_crop_and_resize (and tf_half_pixel_for_nn, which
//! the interpreter rejects) fall back to the CPU.

use crate::codegen::nn::shader::{self, answer, fill, grid_for, ELEMENT_WG};
use crate::codegen::spec::{Dispatch, Lowering, NodeInfo, NodeKernels, Slot, Storage};
use crate::ir::attr::AttrValue;
use crate::ir::dtype::DType;
use crate::ops::resize::{Coord, Mode, Nearest, Params};

const RESIZE: &str = include_str!("../../../kernels/data_resize.wgsl");

/// Entries (vec4) of the uniform tap table: 64 KiB, the usual uniform binding.
const MAX_TABLE: usize = 4096;
/// Resized axes a linear kernel interpolates over (2^k reads per element).
const MAX_LINEAR_AXES: usize = 4;

pub(super) fn lower(info: &NodeInfo) -> Option<Lowering> {
    if !matches!(info.node.op_type.as_str(), "Resize" | "Upsample") {
        return None;
    }
    if let Some(l) = shader::binding_limit(info) {
        return Some(l);
    }
    answer(resize(info))
}

/// Taps of one output position: (source index, weight), zero weights dropped.
type Taps = Vec<(usize, f64)>;

/// The interpreter's taps (`ops/resize.rs`), so the kernel reads the same source
/// positions with the same weights: nearest (`nearest` given) or linear.
fn axis_taps(
    nearest: Option<Nearest>,
    coord: Coord,
    exclude_outside: bool,
    antialias: bool,
    scale: f64,
    in_len: usize,
    out_len: usize,
) -> Vec<Taps> {
    let p = Params {
        mode: if nearest.is_some() {
            Mode::Nearest
        } else {
            Mode::Linear
        },
        coord,
        nearest: nearest.unwrap_or(Nearest::RoundPreferFloor),
        cubic_a: -0.75,
        exclude_outside,
        antialias,
    };
    // Only tf_crop_and_resize (no kernel) leaves a position without taps.
    crate::ops::resize::axis_taps(&p, scale, in_len, out_len, (0.0, 1.0))
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect()
}

/// Integers (A, B, C, K) with `idx[j] == clamp((A·j + B) / C - K, 0, in - 1)` for
/// every j (u32 arithmetic, `B >= 0`), where such a formula with small terms exists.
fn affine(idx: &[usize], in_len: usize) -> Option<(i64, i64, i64, i64)> {
    let out = idx.len() as i64;
    let last = in_len as i64 - 1;
    if last == 0 {
        return Some((0, 0, 1, 0));
    }
    for k in [1i64, 2, 4] {
        for (a, c) in [(in_len as i64 * k, out * k), (0, 1)] {
            // Interval of B: floor((a·j + B) / c), clamped, equals idx[j].
            let (mut lo, mut hi) = (i64::MIN / 4, i64::MAX / 4);
            for (j, &v) in idx.iter().enumerate() {
                let (v, aj) = (v as i64, a * j as i64);
                if v > 0 {
                    lo = lo.max(v * c - aj);
                }
                if v < last {
                    hi = hi.min((v + 1) * c - aj - 1);
                }
            }
            if lo > hi {
                continue;
            }
            let b = if lo <= 0 && 0 <= hi { 0 } else { lo };
            let shift = if b < 0 { (-b + c - 1) / c } else { 0 };
            let b2 = b + shift * c;
            let top = a * (out - 1).max(0) + b2;
            if top < i32::MAX as i64 && c < i32::MAX as i64 {
                return Some((a, b2, c, shift));
            }
        }
    }
    None
}

/// What the attributes and constant inputs decide: per axis, the taps
/// (`None`: not resized), the output shape and the mode.
struct Plan {
    out_shape: Vec<usize>,
    taps: Vec<Option<Vec<Taps>>>,
    linear: bool,
}

fn const_floats(info: &NodeInfo, k: usize, what: &str) -> Result<Option<Vec<f64>>, String> {
    if !shader::has_input(info, k) || info.inputs[k].as_ref().is_some_and(|t| t.is_empty()) {
        return Ok(None);
    }
    match info.consts.get(k).copied().flatten() {
        Some(t)
            if matches!(
                t.dtype(),
                DType::F32 | DType::F64 | DType::F16 | DType::BF16
            ) =>
        {
            t.to_f64_vec()
                .map(Some)
                .ok_or_else(|| format!("{what} (input {k}) is not a float tensor"))
        }
        Some(t) => Err(format!("{what} (input {k}) is {}, not float", t.dtype())),
        None => Err(format!(
            "{what} (input {k}) is not a constant: the kernel depends on its values"
        )),
    }
}

fn scaled_size(input: usize, s: f64) -> Result<usize, String> {
    let v = (input as f64 * s).floor();
    if !(0.0..1e15).contains(&v) {
        return Err(format!("scale {s} gives an invalid size"));
    }
    Ok(v as usize)
}

fn plan(info: &NodeInfo, in_shape: &[usize]) -> Result<Plan, String> {
    let r = in_shape.len();
    let op = info.node.op_type.as_str();
    let upsample = op == "Upsample";
    let mode = shader::attr_str(info, "mode", "nearest");
    let linear = match mode.as_str() {
        "nearest" => false,
        "linear" | "bilinear" => true,
        "trilinear" if !upsample => true,
        m => return Err(format!("{op} mode '{m}' has no kernel")),
    };
    let (coord, nearest) = if upsample || info.opset < 11 {
        (Coord::Asymmetric, Nearest::Simple)
    } else {
        let coord =
            match shader::attr_str(info, "coordinate_transformation_mode", "half_pixel").as_str() {
                "half_pixel" => Coord::HalfPixel,
                "half_pixel_symmetric" => Coord::HalfPixelSymmetric,
                "pytorch_half_pixel" => Coord::PytorchHalfPixel,
                "align_corners" => Coord::AlignCorners,
                "asymmetric" => Coord::Asymmetric,
                m => {
                    return Err(format!(
                        "coordinate_transformation_mode '{m}' has no kernel"
                    ))
                }
            };
        let nearest = match shader::attr_str(info, "nearest_mode", "round_prefer_floor").as_str() {
            "round_prefer_floor" => Nearest::RoundPreferFloor,
            "round_prefer_ceil" => Nearest::RoundPreferCeil,
            "floor" => Nearest::Floor,
            "ceil" => Nearest::Ceil,
            m => return Err(format!("unknown nearest_mode '{m}'")),
        };
        (coord, nearest)
    };
    let exclude_outside = !upsample && shader::attr_int(info, "exclude_outside", 0) != 0;
    let antialias = !upsample && linear && shader::attr_int(info, "antialias", 0) != 0;
    let mut scales = vec![1.0f64; r];
    let mut out_shape = in_shape.to_vec();
    if upsample {
        let s = if info.opset < 9 {
            match info.node.attr("scales").map(|a| &a.value) {
                Some(AttrValue::Floats(v)) => v.iter().map(|&f| f as f64).collect(),
                _ => return Err("Upsample needs the scales attribute".into()),
            }
        } else {
            const_floats(info, 1, "scales")?.ok_or("Upsample needs scales")?
        };
        if s.len() != r {
            return Err(format!("{} scales for rank {r}", s.len()));
        }
        for d in 0..r {
            scales[d] = s[d];
            out_shape[d] = scaled_size(in_shape[d], s[d])?;
        }
    } else {
        let (scales_in, sizes_in) = if info.opset < 11 {
            (const_floats(info, 1, "scales")?, None)
        } else {
            let sizes = if shader::has_input(info, 3)
                && !info.inputs[3].as_ref().is_some_and(|t| t.is_empty())
            {
                shader::const_ints(info, 3, "sizes")?
            } else {
                None
            };
            (const_floats(info, 2, "scales")?, sizes)
        };
        let axes: Vec<usize> = match shader::attr_ints(info, "axes") {
            Some(a) => {
                let mut v = Vec::with_capacity(a.len());
                for ax in a {
                    let n = shader::norm_axis(ax, r)?;
                    if v.contains(&n) {
                        return Err(format!("axis {ax} is repeated"));
                    }
                    v.push(n);
                }
                v
            }
            None => (0..r).collect(),
        };
        match (scales_in, sizes_in) {
            (Some(s), None) => {
                if s.len() != axes.len() {
                    return Err(format!("{} scales for {} axes", s.len(), axes.len()));
                }
                for (&a, &v) in axes.iter().zip(&s) {
                    scales[a] = v;
                    out_shape[a] = scaled_size(in_shape[a], v)?;
                }
            }
            (None, Some(z)) => {
                if z.len() != axes.len() {
                    return Err(format!("{} sizes for {} axes", z.len(), axes.len()));
                }
                for (&a, &v) in axes.iter().zip(&z) {
                    if v < 0 {
                        return Err(format!("negative size {v}"));
                    }
                    out_shape[a] = v as usize;
                    scales[a] = if in_shape[a] == 0 {
                        1.0
                    } else {
                        v as f64 / in_shape[a] as f64
                    };
                }
                let policy = shader::attr_str(info, "keep_aspect_ratio_policy", "stretch");
                if policy != "stretch" && !axes.is_empty() {
                    let it = axes.iter().map(|&a| scales[a]);
                    let s = match policy.as_str() {
                        "not_larger" => it.fold(f64::INFINITY, f64::min),
                        "not_smaller" => it.fold(f64::NEG_INFINITY, f64::max),
                        p => return Err(format!("unknown keep_aspect_ratio_policy '{p}'")),
                    };
                    for &a in &axes {
                        scales[a] = s;
                        out_shape[a] = (s * in_shape[a] as f64 + 0.5).floor() as usize;
                    }
                }
            }
            (Some(_), Some(_)) => return Err("only one of scales and sizes may be given".into()),
            (None, None) => return Err("Resize needs scales or sizes".into()),
        }
    }
    let mut taps = Vec::with_capacity(r);
    for d in 0..r {
        let (s, out) = (scales[d], out_shape[d]);
        if out == 0 {
            taps.push(Some(vec![]));
            continue;
        }
        if !(s.is_finite() && s > 0.0) {
            return Err(format!("scale {s} on axis {d} must be positive"));
        }
        if (s - 1.0).abs() < 1e-9 && out == in_shape[d] {
            taps.push(None);
        } else if in_shape[d] == 0 {
            return Err(format!("cannot resize empty axis {d} to {out}"));
        } else {
            if antialias && s < 1.0 {
                return Err("antialiased linear downsampling has no kernel".into());
            }
            let n = (!linear).then_some(nearest);
            taps.push(Some(axis_taps(
                n,
                coord,
                exclude_outside,
                antialias,
                s,
                in_shape[d],
                out,
            )));
        }
    }
    Ok(Plan {
        out_shape,
        taps,
        linear,
    })
}

fn resize(info: &NodeInfo) -> Result<Lowering, String> {
    let x = shader::input(info, 0)?;
    let y = shader::output(info, 0)?;
    let t = Storage::of(x.dtype)
        .filter(|_| x.dtype != DType::Bool)
        .ok_or_else(|| format!("Resize of {}", x.dtype))?;
    let p = plan(info, &x.shape)?;
    if p.out_shape != y.shape {
        return Err(format!(
            "output shape {:?} differs from the computed {:?}",
            y.shape, p.out_shape
        ));
    }
    if p.linear && t != Storage::F32 {
        return Err(format!("linear Resize of {} has no kernel", x.dtype));
    }
    let n = y.len();
    if n == 0 {
        return Ok(Lowering::Kernels(Default::default()));
    }
    let rank = x.shape.len();
    let xs = shader::strides(&x.shape);
    let mut body = String::from("    var r = i;\n");
    for d in (0..rank).rev() {
        body += &format!(
            "    let c{d} = r % {}u;\n    r = r / {}u;\n",
            y.shape[d], y.shape[d]
        );
    }
    let mut table: Vec<u32> = Vec::new();
    let resized: Vec<usize> = (0..rank).filter(|&d| p.taps[d].is_some()).collect();
    let tw = t.wgsl();
    let label;
    if !p.linear {
        label = "resize_nearest";
        let mut terms = Vec::new();
        for (d, (tp, st)) in p.taps.iter().zip(&xs).enumerate() {
            let src = match tp {
                None => format!("i32(c{d})"),
                Some(tp) => {
                    let idx: Vec<usize> = tp.iter().map(|v| v[0].0).collect();
                    match affine(&idx, x.shape[d]) {
                        Some((a, b, c, k)) => format!(
                            "clamp(i32(({a}u * c{d} + {b}u) / {c}u) - {k}, 0, {})",
                            x.shape[d] as i64 - 1
                        ),
                        None => {
                            let base = table.len() / 4;
                            for &v in &idx {
                                table.extend([v as u32, 0, 0, 0]);
                            }
                            format!("i32(p[{base}u + c{d}].x)")
                        }
                    }
                }
            };
            terms.push(format!("{src} * {st}"));
        }
        let off = if terms.is_empty() {
            "0".to_string()
        } else {
            terms.join(" + ")
        };
        body += &format!("    return x[{off}];\n");
    } else {
        label = "resize_linear";
        if resized.len() > MAX_LINEAR_AXES {
            return Err(format!(
                "linear Resize over {} axes has no kernel",
                resized.len()
            ));
        }
        let mut fixed = vec!["0".to_string()];
        for (d, (tp, st)) in p.taps.iter().zip(&xs).enumerate() {
            if tp.is_none() {
                fixed.push(format!("i32(c{d}) * {st}"));
            }
        }
        body += &format!("    let o = {};\n", fixed.join(" + "));
        for (m, &d) in resized.iter().enumerate() {
            let base = table.len() / 4;
            for tp in p.taps[d].as_ref().unwrap() {
                if tp.len() > 2 {
                    return Err("more than two linear taps".into());
                }
                let (i0, w0) = tp.first().copied().unwrap_or((0, 0.0));
                let (i1, w1) = tp.get(1).copied().unwrap_or((i0, 0.0));
                table.extend([
                    i0 as u32,
                    i1 as u32,
                    (w0 as f32).to_bits(),
                    (w1 as f32).to_bits(),
                ]);
            }
            body += &format!(
                "    let e{m} = p[{base}u + c{d}];\n    let w{m}0 = bitcast<f32>(e{m}.z);\n    let w{m}1 = bitcast<f32>(e{m}.w);\n"
            );
        }
        let k = resized.len();
        // Leaves: one read per combination of taps (bit m picks axis m's tap).
        for b in 0..(1usize << k) {
            let mut off = String::from("o");
            for (m, &d) in resized.iter().enumerate() {
                let comp = if b >> m & 1 == 0 { "x" } else { "y" };
                off += &format!(" + i32(e{m}.{comp}) * {}", xs[d]);
            }
            body += &format!("    let v{k}_{b} = x[{off}];\n");
        }
        // Combine axis 0 of the resized axes first, as the interpreter's passes.
        for m in 0..k {
            let rest = k - m - 1;
            for b in 0..(1usize << rest) {
                body += &format!(
                    "    let v{rest}_{b} = mix2(v{}_{}, v{}_{}, w{m}0, w{m}1);\n",
                    rest + 1,
                    b << 1,
                    rest + 1,
                    (b << 1) | 1
                );
            }
        }
        body += "    return v0_0;\n";
    }
    if table.len() / 4 > MAX_TABLE {
        return Err(format!(
            "{} tap entries exceed the {MAX_TABLE}-entry parameter table",
            table.len() / 4
        ));
    }
    let decl = if table.is_empty() {
        String::new()
    } else {
        format!(
            "@group(0) @binding(2) var<uniform> p: array<vec4<u32>, {}>;\n",
            table.len() / 4
        )
    };
    let wgsl = fill(
        RESIZE,
        &[
            ("T", tw.into()),
            ("TABLE", decl),
            ("N", n.to_string()),
            ("VALUE", format!("fn value(i: u32) -> {tw} {{\n{body}}}")),
            ("WG", ELEMENT_WG.to_string()),
        ],
    );
    Ok(Lowering::Kernels(NodeKernels {
        dispatches: vec![Dispatch {
            label: label.to_string(),
            wgsl,
            slots: vec![Slot::Input(0), Slot::Output(0)],
            params: table,
            workgroups: grid_for(n, ELEMENT_WG, info)?,
        }],
        temps: vec![],
    }))
}
