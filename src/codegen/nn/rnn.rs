//! RNN, GRU and LSTM (`kernels/rnn_project.wgsl`, `kernels/rnn_step.wgsl`): every
//! direction, `layout` 0 and 1, the optional inputs (B, sequence_lens, initial_h,
//! initial_c, P) and outputs (Y, Y_h, Y_c), `clip`, `input_forget`,
//! `linear_before_reset`, and every activation the interpreter knows. f32 only.
//!
//! Two dispatches, as the interpreter splits the work (`ops/recurrent.rs`):
//!
//! 1. `rnn_project`: the input projection `X·Wᵀ + Wb (+ Rb)` of every time step
//!    and direction into a scratch buffer, one invocation per element. Its rows
//!    are X's rows in X's own layout, so layout 1 needs no transposed copy. It is
//!    the parallel part of the op (all steps at once); the matmul generator does
//!    not serve it because its operands and bias are bound per direction.
//! 2. `{rnn,gru,lstm}_step`: the recurrence, one workgroup per (direction, batch
//!    entry) looping over the time steps, its invocations striding over hidden
//!    units. h (ping-pong halves, so one barrier per step), c, and GRU's
//!    intermediate gates stay in workgroup memory; when they do not fit
//!    (`max_workgroup_storage`), a scratch storage buffer holds them and the
//!    barrier becomes `storageBarrier` (label suffix `_storage`).
//!
//! Semantics are the interpreter's: gate orders (LSTM i, o, f, c; GRU z, r, h),
//! `clip` before each activation, peepholes (the output gate sees the new c),
//! `input_forget` (f = 1 − i), GRU's Rb of the hidden gate kept apart under
//! `linear_before_reset` (otherwise folded into the projection). A batch entry
//! shorter than the sequence (`sequence_lens`, read on the device) keeps its
//! state past its end and writes zeros to Y there; its reverse direction starts at
//! its own last step. Lengths outside `0..=seq` (which the interpreter rejects)
//! are clamped into it. The activations are parsed by the interpreter's own
//! `activations` (names, defaults, the order alphas and betas are consumed in),
//! then written as WGSL; tanh and softplus are the elementwise kernels' helpers.
//!
//! ```text
//! LSTM X f32[1,1,128], hidden 128 (silero-vad)  ->  rnn_project [8,1,1], lstm_step [1,1,1] x 128 invocations
//! ```

use super::shader::{self, answer, fill, grid, grid_for, ELEMENT_WG};
use crate::codegen::elementwise::emit::helper_source;
use crate::codegen::spec::{Dispatch, Lowering, NodeInfo, NodeKernels, Slot, Storage};
use crate::ir::dtype::DType;
use crate::ops::recurrent::{activations, Act, Cell};
use crate::ops::OpCtx;
use std::collections::BTreeSet;

const PROJECT: &str = include_str!("../../../kernels/rnn_project.wgsl");
const STEP: &str = include_str!("../../../kernels/rnn_step.wgsl");

pub(super) fn lower(info: &NodeInfo) -> Option<Lowering> {
    let domain = info.node.domain.as_str();
    if !(domain.is_empty() || domain == "ai.onnx") {
        return None;
    }
    let cell = match info.node.op_type.as_str() {
        "RNN" => Cell::Rnn,
        "GRU" => Cell::Gru,
        "LSTM" => Cell::Lstm,
        _ => return None,
    };
    answer(recurrent(info, cell))
}

/// A recurrent node's sizes and attributes, checked against its inputs.
struct Rnn {
    cell: Cell,
    /// Time steps, batch entries, input size, hidden size, directions.
    s: usize,
    b: usize,
    i: usize,
    h: usize,
    d: usize,
    /// `layout` 1: X and Y batch-major, the states [batch, directions, hidden].
    batch_major: bool,
    /// WGSL `bool` expression of `d`: whether direction `d` runs backwards.
    rev: &'static str,
    linear_before_reset: bool,
    input_forget: bool,
    clip: Option<f32>,
    acts: Vec<Act>,
}

impl Rnn {
    fn gh(&self) -> usize {
        self.cell.gates() * self.h
    }
    /// Words of state per workgroup (see `kernels/rnn_step.wgsl`).
    fn state_len(&self) -> usize {
        match self.cell {
            Cell::Rnn => 2 * self.h,
            Cell::Lstm => 3 * self.h,
            Cell::Gru if self.linear_before_reset => 2 * self.h,
            Cell::Gru => 4 * self.h,
        }
    }
    /// Whether GRU runs its hidden gate as a second phase (`(r ⊙ h)·Rhᵀ`).
    fn two_phase(&self) -> bool {
        self.cell == Cell::Gru && !self.linear_before_reset
    }
}

fn f32_input(info: &NodeInfo, k: usize, want: &[usize], what: &str) -> Result<bool, String> {
    let Some(t) = info.inputs.get(k).and_then(|t| t.as_ref()) else {
        return Ok(false);
    };
    if t.dtype != DType::F32 {
        return Err(format!("{what} of {} has no kernel (f32 only)", t.dtype));
    }
    if t.shape != want {
        return Err(format!("{what} has shape {:?}, expected {want:?}", t.shape));
    }
    Ok(true)
}

fn parse(info: &NodeInfo, cell: Cell) -> Result<Rnn, String> {
    let op = info.node.op_type.as_str();
    let x = shader::input(info, 0)?;
    let r = shader::input(info, 2)?;
    if x.shape.len() != 3 || r.shape.len() != 3 {
        return Err(format!(
            "{op}: X {:?} and R {:?} must have rank 3",
            x.shape, r.shape
        ));
    }
    let batch_major = match shader::attr_int(info, "layout", 0) {
        0 => false,
        1 => true,
        l => return Err(format!("{op}: layout {l}")),
    };
    let (s, b, i) = if batch_major {
        (x.shape[1], x.shape[0], x.shape[2])
    } else {
        (x.shape[0], x.shape[1], x.shape[2])
    };
    let (d, h) = (r.shape[0], r.shape[2]);
    let hidden = shader::attr_int(info, "hidden_size", 0);
    if hidden > 0 && hidden as u64 != h as u64 {
        return Err(format!(
            "{op}: hidden_size {hidden} does not match R of shape {:?}",
            r.shape
        ));
    }
    let direction = shader::attr_str(info, "direction", "forward");
    let (dirs, rev) = match direction.as_str() {
        "forward" => (1, "false"),
        "reverse" => (1, "true"),
        "bidirectional" => (2, "d == 1u"),
        other => return Err(format!("{op}: unknown direction '{other}'")),
    };
    if d != dirs {
        return Err(format!(
            "{op}: direction {direction} but R has {d} directions"
        ));
    }
    let gh = cell.gates() * h;
    f32_input(info, 0, &x.shape, "X")?;
    f32_input(info, 1, &[d, gh, i], "W")?;
    f32_input(info, 2, &[d, gh, h], "R")?;
    f32_input(info, 3, &[d, 2 * gh], "B")?;
    if let Some(l) = info.inputs.get(4).and_then(|t| t.as_ref()) {
        if Storage::of(l.dtype) != Some(Storage::I32) || l.shape != [b] {
            return Err(format!(
                "{op}: sequence_lens {} {:?} is not an integer tensor of shape [{b}]",
                l.dtype, l.shape
            ));
        }
    }
    let state = if batch_major { [b, d, h] } else { [d, b, h] };
    f32_input(info, 5, &state, "initial_h")?;
    if cell == Cell::Lstm {
        f32_input(info, 6, &state, "initial_c")?;
        f32_input(info, 7, &[d, 3 * h], "P")?;
    }
    let ctx = OpCtx {
        node: info.node,
        opset: info.opset,
    };
    let acts = activations(&ctx, cell, d).map_err(|e| format!("{op}: {e}"))?;
    let clip = shader::attr_float(info, "clip", 0.0);
    let y_shape = if batch_major {
        vec![b, s, d, h]
    } else {
        vec![s, d, b, h]
    };
    let outs = if cell == Cell::Lstm { 3 } else { 2 };
    for k in 0..outs {
        if !shader::wants_output(info, k) {
            continue;
        }
        let (o, want) = (
            shader::output(info, k)?,
            if k == 0 { &y_shape[..] } else { &state },
        );
        if o.dtype != DType::F32 || o.shape != want {
            return Err(format!(
                "{op}: output {k} is {} {:?}, expected f32 {want:?}",
                o.dtype, o.shape
            ));
        }
    }
    Ok(Rnn {
        cell,
        s,
        b,
        i,
        h,
        d,
        batch_major,
        rev,
        linear_before_reset: shader::attr_int(info, "linear_before_reset", 0) != 0,
        input_forget: shader::attr_int(info, "input_forget", 0) != 0,
        clip: (info.node.attr("clip").is_some() && clip > 0.0).then_some(clip),
        acts,
    })
}

fn recurrent(info: &NodeInfo, cell: Cell) -> Result<Lowering, String> {
    if let Some(l) = shader::binding_limit(info) {
        return Ok(l);
    }
    let p = parse(info, cell)?;
    if p.d * p.b * p.h == 0 {
        // Every output is empty.
        return Ok(Lowering::Kernels(NodeKernels::default()));
    }
    let max = info.limits.max_storage_binding;
    let xp_bytes = 4 * (p.d * p.s * p.b * p.gh()) as u64;
    let state_bytes = 4 * p.state_len() as u64;
    let in_workgroup = state_bytes <= info.limits.max_workgroup_storage as u64;
    let scratch = 4 * (p.d * p.b * p.state_len()) as u64;
    if xp_bytes > max || (!in_workgroup && scratch > max) {
        return Err(format!(
            "{}: its scratch buffers ({xp_bytes} and {scratch} bytes) exceed the {max}-byte storage binding",
            info.node.op_type
        ));
    }
    let mut dispatches = vec![];
    if p.s * p.b * p.gh() > 0 {
        dispatches.push(project(info, &p)?);
    }
    dispatches.push(step(info, &p, in_workgroup)?);
    let mut temps = vec![xp_bytes.max(4)];
    if !in_workgroup {
        temps.push(scratch);
    }
    Ok(Lowering::Kernels(NodeKernels { dispatches, temps }))
}

/// The input projection of every step and direction into temp 0.
fn project(info: &NodeInfo, p: &Rnn) -> Result<Dispatch, String> {
    let mut decls = vec![("x", "f32", false), ("w", "f32", false)];
    let mut slots = vec![Slot::Input(0), Slot::Input(1)];
    let gh = p.gh();
    let bias = if shader::has_input(info, 3) {
        decls.push(("bs", "f32", false));
        slots.push(Slot::Input(3));
        let wb = "bs[d * 2u * GH + n]";
        let rb = "bs[d * 2u * GH + GH + n]";
        if p.cell == Cell::Gru && p.linear_before_reset {
            // Rb of the hidden gate is added inside the reset product.
            format!("return {wb} + select({rb}, 0.0, n >= {}u);", 2 * p.h)
        } else {
            format!("return {wb} + {rb};")
        }
    } else {
        "return 0.0;".to_string()
    };
    decls.push(("xp", "f32", true));
    slots.push(Slot::Temp(0));
    let n = p.d * p.s * p.b * gh;
    Ok(Dispatch {
        label: "rnn_project".into(),
        wgsl: fill(
            PROJECT,
            &[
                ("BINDINGS", shader::bindings(&decls)),
                ("D", p.d.to_string()),
                ("ROWS", (p.s * p.b).to_string()),
                ("I", p.i.to_string()),
                ("GH", gh.to_string()),
                ("BIAS", bias),
                ("WG", ELEMENT_WG.to_string()),
            ],
        ),
        slots,
        params: vec![],
        workgroups: grid_for(n, ELEMENT_WG, info)?,
    })
}

/// An activation applied to the WGSL expression `v`; records the helper
/// functions it calls.
fn act_wgsl(a: Act, v: &str, helpers: &mut BTreeSet<&'static str>) -> String {
    let l = shader::f32_lit;
    match a {
        Act::Sigmoid => {
            format!("select(exp({v}) / (1.0 + exp({v})), 1.0 / (1.0 + exp(-{v})), {v} >= 0.0)")
        }
        Act::Tanh => {
            helpers.insert("tanh");
            format!("tanh_f({v})")
        }
        Act::Relu => format!("max({v}, 0.0)"),
        Act::Affine(a, b) => format!("{} * {v} + {}", l(a), l(b)),
        Act::LeakyRelu(a) => format!("select({} * {v}, {v}, {v} >= 0.0)", l(a)),
        Act::ThresholdedRelu(a) => format!("select(0.0, {v}, {v} > {})", l(a)),
        Act::ScaledTanh(a, b) => {
            helpers.insert("tanh");
            format!("{} * tanh_f({} * {v})", l(a), l(b))
        }
        Act::HardSigmoid(a, b) => format!("clamp({} * {v} + {}, 0.0, 1.0)", l(a), l(b)),
        Act::Elu(a) => format!("select({} * (exp({v}) - 1.0), {v}, {v} >= 0.0)", l(a)),
        Act::Softsign => format!("{v} / (1.0 + abs({v}))"),
        Act::Softplus => {
            helpers.insert("softplus");
            format!("softplus_f({v})")
        }
    }
}

/// `fn act_K(d: u32, v: f32) -> f32` for each activation slot K of a direction
/// (LSTM: f, g, h; GRU: f, g; RNN: f), choosing by direction where they differ.
fn activation_fns(p: &Rnn) -> String {
    let per = p.acts.len() / p.d;
    let mut helpers = BTreeSet::new();
    let mut fns = String::new();
    for k in 0..per {
        let exprs: Vec<String> = (0..p.d)
            .map(|d| act_wgsl(p.acts[d * per + k], "v", &mut helpers))
            .collect();
        let body = if exprs.iter().all(|e| *e == exprs[0]) {
            format!("return {};", exprs[0])
        } else {
            format!(
                "if (d == 0u) {{\n        return {};\n    }}\n    return {};",
                exprs[0], exprs[1]
            )
        };
        fns += &format!("fn act_{k}(d: u32, v: f32) -> f32 {{\n    {body}\n}}\n\n");
    }
    let mut out: String = helpers.iter().map(|h| helper_source(h)).collect();
    out += "\n";
    out + &fns
}

/// The shader's helper functions over the node's optional inputs and layout.
fn functions(info: &NodeInfo, p: &Rnn) -> String {
    let f = |name: &str, args: &str, ret: &str, body: String| {
        format!("fn {name}({args}) -> {ret} {{\n    {body}\n}}\n\n")
    };
    let given = |k: usize| shader::has_input(info, k);
    let mut s = activation_fns(p);
    s += &f(
        "clip",
        "v: f32",
        "f32",
        match p.clip {
            Some(c) => format!(
                "return clamp(v, {}, {});",
                shader::f32_lit(-c),
                shader::f32_lit(c)
            ),
            None => "return v;".into(),
        },
    );
    s += &f("rev", "d: u32", "bool", format!("return {};", p.rev));
    let (xrow, y_at, state_at) = if p.batch_major {
        (
            "b * S + t",
            "((b * S + t) * D + d) * H + j",
            "(b * D + d) * H + j",
        )
    } else {
        (
            "t * B + b",
            "((t * D + d) * B + b) * H + j",
            "(d * B + b) * H + j",
        )
    };
    s += &f("xrow", "t: u32, b: u32", "u32", format!("return {xrow};"));
    s += &f(
        "y_at",
        "t: u32, d: u32, b: u32, j: u32",
        "u32",
        format!("return {y_at};"),
    );
    s += &f(
        "state_at",
        "d: u32, b: u32, j: u32",
        "u32",
        format!("return {state_at};"),
    );
    s += &f(
        "seq_len",
        "b: u32",
        "u32",
        if given(4) {
            "return min(u32(max(seq_lens[b], 0)), S);".into()
        } else {
            "return S;".into()
        },
    );
    let read = |k: usize, expr: &str| {
        if given(k) {
            format!("return {expr};")
        } else {
            "return 0.0;".into()
        }
    };
    s += &f(
        "h_init",
        "d: u32, b: u32, j: u32",
        "f32",
        read(5, "h0[state_at(d, b, j)]"),
    );
    if p.cell == Cell::Lstm {
        s += &f(
            "c_init",
            "d: u32, b: u32, j: u32",
            "f32",
            read(6, "c0[state_at(d, b, j)]"),
        );
        s += &f(
            "peep",
            "d: u32, q: u32, j: u32",
            "f32",
            read(7, "p[(d * 3u + q) * H + j]"),
        );
    }
    if p.cell == Cell::Gru && p.linear_before_reset {
        s += &f(
            "rbh",
            "d: u32, j: u32",
            "f32",
            read(3, "bs[d * 2u * GH + GH + 2u * H + j]"),
        );
    }
    s
}

/// The recurrence (see `kernels/rnn_step.wgsl`).
fn step(info: &NodeInfo, p: &Rnn, in_workgroup: bool) -> Result<Dispatch, String> {
    let mut decls: Vec<(&str, &str, bool)> = vec![("r", "f32", false), ("xp", "f32", false)];
    let mut slots = vec![Slot::Input(2), Slot::Temp(0)];
    let optional = [
        (3, "bs", "f32", p.cell == Cell::Gru && p.linear_before_reset),
        (4, "seq_lens", "i32", true),
        (5, "h0", "f32", true),
        (6, "c0", "f32", p.cell == Cell::Lstm),
        (7, "p", "f32", p.cell == Cell::Lstm),
    ];
    for (k, name, ty, used) in optional {
        if used && shader::has_input(info, k) {
            decls.push((name, ty, false));
            slots.push(Slot::Input(k));
        }
    }
    let outs = if p.cell == Cell::Lstm { 3 } else { 2 };
    let wants: Vec<bool> = (0..3)
        .map(|k| k < outs && shader::wants_output(info, k))
        .collect();
    for (k, name) in ["y", "y_h", "y_c"].into_iter().enumerate() {
        if wants[k] {
            decls.push((name, "f32", true));
            slots.push(Slot::Output(k));
        }
    }
    let (state_decl, base, barrier) = if in_workgroup {
        (
            "var<workgroup> st: array<f32, SL>;",
            "0u",
            "workgroupBarrier();",
        )
    } else {
        decls.push(("st", "f32", true));
        slots.push(Slot::Temp(1));
        ("", "g * SL", "storageBarrier();")
    };
    let put_y = if wants[0] {
        "y[y_at(t, d, b, j)] = hn;"
    } else {
        ""
    };
    let zero_y = if wants[0] {
        "y[y_at(s, d, b, j)] = 0.0;"
    } else {
        ""
    };
    let gate = |q: usize, hb: &str| {
        format!(
            "clip(xp[xr + {}u + j] + rdot(d, {}u + j, {hb})",
            q * p.h,
            q * p.h
        )
    };
    let mut init = "st[base + j] = h_init(d, b, j);".to_string();
    let mut step2 = String::new();
    let body = match p.cell {
        Cell::Rnn => format!("let hn = act_0(d, {}));\n", gate(0, "cur")),
        Cell::Lstm => {
            init += "\n            st[hc + j] = c_init(d, b, j);";
            let forget = if p.input_forget {
                "1.0 - gi".to_string()
            } else {
                format!("act_0(d, {} + peep(d, 2u, j) * cp))", gate(2, "cur"))
            };
            format!(
                "let cp = st[hc + j];\n\
                 let gi = act_0(d, {} + peep(d, 0u, j) * cp));\n\
                 let gf = {forget};\n\
                 let gc = act_1(d, {}));\n\
                 let ct = gf * cp + gi * gc;\n\
                 let go = act_0(d, {} + peep(d, 1u, j) * ct));\n\
                 st[hc + j] = ct;\n\
                 let hn = go * act_2(d, ct);\n",
                gate(0, "cur"),
                gate(3, "cur"),
                gate(1, "cur")
            )
        }
        Cell::Gru => {
            let zr = format!(
                "let gz = act_0(d, {}));\nlet gr = act_0(d, {}));\n",
                gate(0, "cur"),
                gate(1, "cur")
            );
            if p.linear_before_reset {
                let h2 = 2 * p.h;
                format!(
                    "{zr}let ht = act_1(d, clip(xp[xr + {h2}u + j] + gr * (rdot(d, {h2}u + j, cur) + rbh(d, j))));\n\
                     let hn = (1.0 - gz) * ht + gz * st[cur + j];\n"
                )
            } else {
                step2 = format!(
                    "{barrier}\n        if (stepping) {{\n            for (var j = lid.x; j < H; j += WG) {{\n{}            }}\n        }}",
                    indent(
                        &format!(
                            "let ht = act_1(d, {}));\n\
                             let gz = st[hc + j];\n\
                             let hn = (1.0 - gz) * ht + gz * st[cur + j];\n\
                             st[nxt + j] = hn;\n{put_y}\n",
                            gate(2, "ha")
                        ),
                        16
                    )
                );
                format!("{zr}st[hc + j] = gz;\nst[ha + j] = gr * st[cur + j];\n")
            }
        }
    };
    let body = if p.two_phase() {
        body
    } else {
        format!("{body}st[nxt + j] = hn;\n{put_y}\n")
    };
    let mut fin = String::new();
    if wants[1] {
        fin += "y_h[state_at(d, b, j)] = st[last + j];\n";
    }
    if wants[2] {
        fin += "y_c[state_at(d, b, j)] = st[hc + j];\n";
    }
    let label = format!(
        "{}_step{}",
        info.node.op_type.to_lowercase(),
        if in_workgroup { "" } else { "_storage" }
    );
    let wg = shader::workgroup_size(info).min(p.h.next_power_of_two() as u32);
    let groups = (p.d * p.b) as u64;
    let workgroups = grid(groups, &info.limits)
        .ok_or_else(|| format!("{groups} sequences exceed the device's workgroup grid"))?;
    Ok(Dispatch {
        label,
        wgsl: fill(
            STEP,
            &[
                ("BINDINGS", shader::bindings(&decls)),
                ("H", p.h.to_string()),
                ("S", p.s.to_string()),
                ("B", p.b.to_string()),
                ("D", p.d.to_string()),
                ("GH", p.gh().to_string()),
                ("SL", p.state_len().to_string()),
                ("WG", wg.to_string()),
                ("STATE_DECL", state_decl.into()),
                ("FUNCTIONS", functions(info, p)),
                ("STATE_BASE", base.into()),
                ("BARRIER", barrier.into()),
                ("INIT", init),
                ("STEP", indent(&body, 16).trim().into()),
                ("STEP2", step2),
                ("ZERO_Y", zero_y.into()),
                ("FINAL", indent(&fin, 12).trim().into()),
            ],
        ),
        slots,
        params: vec![],
        workgroups,
    })
}

/// Indents each non-empty line of `s` by `n` spaces.
fn indent(s: &str, n: usize) -> String {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{}{l}\n", " ".repeat(n)))
        .collect()
}
