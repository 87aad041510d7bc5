//! `modc run --backend gpu` and `modc bench`: a model on the WGSL runtime
//! ([`modc::runtime::Session`]) or on the interpreter, with the same inputs and
//! outputs as the CPU path of `modc run`.
//!
//! The GPU path opens the device (by `--adapter NAME`, `WGPU_ADAPTER_NAME` or
//! wgpu's choice), builds one session for the concrete shapes of the given input
//! values (pipelines compiled and weights uploaded once), and tells on stderr
//! which op types ran on the GPU and which fell back to the CPU, and why:
//!
//! ```text
//! modc: adapter: llvmpipe (LLVM 19.1.7, 256 bits) (Vulkan, Cpu)
//! modc: session built in 41.2 ms: 12 nodes on the GPU, 1 on the CPU
//! op type                     gpu    cpu  why on the CPU
//! Conv                          4      0
//! If                            0      1  If has subgraphs
//! modc: arena 1048576 bytes (peak 1048576, lower bound 786432)
//! ```
//!
//! The arena line gives the session's memory plan: the bytes of its arena
//! buffer(s), the packing's high-water mark and the lower bound no packing can
//! beat (the most bytes alive at one step).
//!
//! `--profile` (GPU) adds one run that waits for the device after every step
//! and prints the slowest nodes ([`Session::profile`]): per-node times, which a
//! normal run (one submission for many steps) cannot give.

use clap::Args;
use modc::runtime::{Gpu, GpuOptions, Session, StepTime};
use modc::{Model, RtValue, TensorValue};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `modc bench`.
#[derive(Args)]
pub(crate) struct BenchArgs {
    model: PathBuf,
    /// The backend that runs the model.
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "gpu"])]
    backend: String,
    /// Timed runs.
    #[arg(long, default_value_t = 20, value_name = "N")]
    repeat: usize,
    /// Untimed runs before the timed ones.
    #[arg(long, default_value_t = 2, value_name = "N")]
    warmup: usize,
    /// An input as NAME=FILE (.npy or ONNX TensorProto .pb); repeat for each input.
    #[arg(long = "input", value_name = "NAME=FILE")]
    inputs: Vec<String>,
    /// Fill inputs that are not given with seeded random data of their declared shape.
    #[arg(long)]
    random: bool,
    /// The size of a symbolic dimension for --random, as NAME=N; repeatable.
    #[arg(long = "dim", value_name = "NAME=N")]
    dims: Vec<String>,
    /// The seed of --random.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The GPU adapter: a substring of its name (case-insensitive).
    #[arg(long, value_name = "NAME")]
    adapter: Option<String>,
    /// Print the figures as one JSON object.
    #[arg(long)]
    json: bool,
    /// With --backend gpu: one more run, waiting after every step, and the
    /// 15 slowest nodes with their time.
    #[arg(long)]
    profile: bool,
    #[command(flatten)]
    policy: crate::PolicyArgs,
}

/// The tensors of `feeds` (the GPU session takes tensors only), checked against
/// the declared rank and fixed dimensions before any device work.
fn tensor_feeds(
    m: &Model,
    feeds: Vec<(String, RtValue)>,
) -> Result<Vec<(String, TensorValue)>, String> {
    let g = &m.graph;
    feeds
        .into_iter()
        .map(|(name, v)| {
            let t = match v {
                RtValue::Tensor(t) => t,
                _ => {
                    return Err(format!(
                        "input '{name}' is a sequence or optional; --backend gpu takes tensors only"
                    ))
                }
            };
            let ty = g
                .inputs
                .iter()
                .map(|&i| g.value(i))
                .find(|v| v.name == name)
                .and_then(|v| v.ty.as_ref());
            if let Some(shape) = ty.and_then(|ty| ty.as_tensor()).and_then(|(_, s)| s) {
                let fits = shape.rank() == t.shape().len()
                    && shape.dims.iter().zip(t.shape()).all(
                        |(d, &n)| !matches!(d.value, modc::DimValue::Fixed(k) if k >= 0 && k != n as i64),
                    );
                if !fits {
                    return Err(format!(
                        "input '{name}': shape {:?} does not fit the declared {}",
                        t.shape(),
                        ty.map(|t| t.to_string()).unwrap_or_default()
                    ));
                }
            }
            Ok((name, t))
        })
        .collect()
}

/// Opens the device and says which one on stderr.
fn open_gpu(adapter: Option<&str>) -> Result<Gpu, String> {
    let gpu = Gpu::new(&GpuOptions {
        adapter: adapter.map(str::to_string),
    })
    .map_err(|e| e.to_string())?;
    eprintln!("modc: adapter: {}", gpu.adapter_name());
    Ok(gpu)
}

/// Builds a session for the shapes of `feeds`; returns it and its build time (s).
fn build_session<'a>(
    gpu: &'a Gpu,
    m: &'a Model,
    feeds: &[(String, TensorValue)],
) -> Result<(Session<'a>, f64), String> {
    let shapes: HashMap<String, Vec<usize>> = feeds
        .iter()
        .map(|(n, t)| (n.clone(), t.shape().to_vec()))
        .collect();
    let start = Instant::now();
    let s = Session::new(gpu, m, &shapes).map_err(|e| e.to_string())?;
    Ok((s, start.elapsed().as_secs_f64()))
}

/// The per-op-type table of backends, one line per op type.
fn backends_table(s: &Session) -> String {
    let mut t = format!(
        "{:<26} {:>5} {:>6}  why on the CPU\n",
        "op type", "gpu", "cpu"
    );
    for (op, b) in s.backends() {
        let line = format!(
            "{op:<26} {:>5} {:>6}  {}",
            b.gpu,
            b.cpu,
            b.reasons.join("; ")
        );
        t.push_str(line.trim_end());
        t.push('\n');
    }
    t
}

fn node_counts(s: &Session) -> (usize, usize) {
    let gpu = s.backends().values().map(|b| b.gpu).sum();
    (gpu, s.fallback_count())
}

fn report_session(s: &Session, build_s: f64) {
    let (gpu, cpu) = node_counts(s);
    eprintln!(
        "modc: session built in {:.1} ms: {gpu} nodes on the GPU, {cpu} on the CPU",
        build_s * 1e3
    );
    eprint!("{}", backends_table(s));
    let mem = s.memory();
    let buffers = match mem.arenas.len() {
        0 | 1 => String::new(),
        n => format!(" in {n} buffers"),
    };
    eprintln!(
        "modc: arena {} bytes{buffers} (peak {}, lower bound {})",
        mem.arena_bytes, mem.peak, mem.lower_bound
    );
}

/// Nodes shown by `--profile`.
const PROFILE_TOP: usize = 15;

/// One node's line of a profile.
#[derive(serde::Serialize)]
struct ProfileRow {
    node: String,
    op: String,
    backend: &'static str,
    kernels: Vec<String>,
    ms: f64,
}

/// The slowest `PROFILE_TOP` steps of a profiled run, slowest first, and the
/// total of all steps (ms).
fn profile_rows(steps: Vec<StepTime>) -> (Vec<ProfileRow>, f64, usize) {
    let total: f64 = steps.iter().map(|t| t.time.as_secs_f64() * 1e3).sum();
    let n = steps.len();
    let mut rows: Vec<ProfileRow> = steps
        .into_iter()
        .map(|t| ProfileRow {
            node: t.node,
            op: t.op,
            backend: if t.gpu { "gpu" } else { "cpu" },
            kernels: t.kernels,
            ms: t.time.as_secs_f64() * 1e3,
        })
        .collect();
    rows.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    rows.truncate(PROFILE_TOP);
    (rows, total, n)
}

/// The profile as text: a header, then one line per node.
fn profile_text(rows: &[ProfileRow], total: f64, steps: usize) -> String {
    let mut t = format!(
        "profile: {total:.3} ms in {steps} steps (one run, waiting after each); the slowest:\n"
    );
    t.push_str(&format!(
        "{:>10} {:>6}  {:<7} node (op): kernels\n",
        "ms", "%", "backend"
    ));
    for r in rows {
        let share = if total > 0.0 {
            100.0 * r.ms / total
        } else {
            0.0
        };
        let line = format!(
            "{:>10.3} {:>6.1}  {:<7} {} ({}): {}",
            r.ms,
            share,
            r.backend,
            r.node,
            r.op,
            r.kernels.join(", ")
        );
        t.push_str(line.trim_end_matches([':', ' ']));
        t.push('\n');
    }
    t
}

/// `modc run --backend gpu`: same outputs (stdout, `--output-dir`) as the CPU path.
pub(crate) fn run_gpu(
    m: &Model,
    feeds: Vec<(String, RtValue)>,
    output_dir: Option<&Path>,
    opts: &crate::RunOptions,
    adapter: Option<&str>,
) -> Result<(), String> {
    let feeds = tensor_feeds(m, feeds)?;
    let gpu = open_gpu(adapter)?;
    let (session, build_s) = build_session(&gpu, m, &feeds)?;
    report_session(&session, build_s);
    let mut times = Vec::with_capacity(opts.repeat);
    let mut outs = Vec::new();
    for _ in 0..opts.repeat.max(1) {
        let start = Instant::now();
        outs = session.run(&feeds).map_err(|e| e.to_string())?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let outs: Vec<(String, RtValue)> = outs
        .into_iter()
        .map(|(n, t)| (n, RtValue::Tensor(t)))
        .collect();
    let mut text = crate::format_outputs(&outs, output_dir)?;
    if opts.profile {
        let steps = session.profile(&feeds).map_err(|e| e.to_string())?;
        let (rows, total, n) = profile_rows(steps);
        text.push_str(&profile_text(&rows, total, n));
    }
    text.push_str(&crate::ran_in(&times));
    crate::emit(&text)
}

/// The `q` quantile (0..=1) of sorted samples, interpolated linearly.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The batch size: the first dimension of the first graph input (without an
/// initializer) when the model declares it symbolic.
fn batch_size(m: &Model, feeds: &[(String, RtValue)]) -> Option<usize> {
    let g = &m.graph;
    let first = g
        .inputs
        .iter()
        .map(|&v| g.value(v))
        .find(|v| v.init.is_none())?;
    let (_, shape) = first.ty.as_ref()?.as_tensor()?;
    let d0 = shape?.dims.first()?;
    if matches!(d0.value, modc::DimValue::Fixed(_)) {
        return None;
    }
    match feeds.iter().find(|(n, _)| *n == first.name)? {
        (_, RtValue::Tensor(t)) => t.shape().first().copied(),
        _ => None,
    }
}

/// What `modc bench` measured.
#[derive(serde::Serialize)]
struct BenchReport {
    model: String,
    backend: String,
    adapter: Option<String>,
    /// Opening the device (GPU only).
    device_ms: Option<f64>,
    /// Building the session or interpreter (GPU: shapes, kernels, pipelines, weights).
    build_ms: f64,
    gpu_nodes: Option<usize>,
    cpu_nodes: Option<usize>,
    warmup: usize,
    repeat: usize,
    median_ms: f64,
    p10_ms: f64,
    p90_ms: f64,
    runs_per_s: f64,
    batch: Option<usize>,
    samples_per_s: Option<f64>,
    /// The GPU session's arena (bytes), the packing's peak and its lower bound.
    arena_bytes: Option<u64>,
    arena_peak: Option<u64>,
    arena_lower_bound: Option<u64>,
    /// `--profile`: the slowest nodes of one run that waits after every step.
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<Vec<ProfileRow>>,
    #[serde(skip)]
    profile_total: (f64, usize),
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "model: {}", self.model)?;
        match &self.adapter {
            Some(a) => writeln!(f, "backend: {} ({a})", self.backend)?,
            None => writeln!(f, "backend: {}", self.backend)?,
        }
        if let Some(d) = self.device_ms {
            writeln!(f, "device opened in {d:.1} ms")?;
        }
        write!(f, "session built in {:.1} ms", self.build_ms)?;
        if let (Some(g), Some(c)) = (self.gpu_nodes, self.cpu_nodes) {
            write!(f, " ({g} nodes on the GPU, {c} on the CPU)")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "latency: median {:.3} ms, p10 {:.3} ms, p90 {:.3} ms ({} runs after {} warm-up)",
            self.median_ms, self.p10_ms, self.p90_ms, self.repeat, self.warmup
        )?;
        write!(f, "throughput: {:.2} runs/s", self.runs_per_s)?;
        if let (Some(b), Some(s)) = (self.batch, self.samples_per_s) {
            write!(f, ", {s:.2} samples/s (batch {b})")?;
        }
        writeln!(f)?;
        if let Some(rows) = &self.profile {
            let (total, steps) = self.profile_total;
            write!(f, "{}", profile_text(rows, total, steps))?;
        }
        Ok(())
    }
}

/// Times `warmup` untimed and `repeat` timed calls of `run`; sorted seconds.
fn time_runs(
    warmup: usize,
    repeat: usize,
    mut run: impl FnMut() -> Result<(), String>,
) -> Result<Vec<f64>, String> {
    for _ in 0..warmup {
        run()?;
    }
    let mut times = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let start = Instant::now();
        run()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

/// `modc bench`.
pub(crate) fn bench(a: BenchArgs) -> Result<(), String> {
    if a.repeat == 0 {
        return Err("--repeat must be at least 1".into());
    }
    if a.profile && a.backend != "gpu" {
        return Err(
            "--profile needs --backend gpu (modc run --profile times the interpreter's ops)".into(),
        );
    }
    let m = crate::load_any(&a.model, &a.policy)?;
    let feeds = crate::collect_feeds(&m, &a.inputs, &a.dims, a.random, a.seed)?;
    let batch = batch_size(&m, &feeds);
    let mut r = BenchReport {
        model: a.model.display().to_string(),
        backend: a.backend.clone(),
        adapter: None,
        device_ms: None,
        build_ms: 0.0,
        gpu_nodes: None,
        cpu_nodes: None,
        warmup: a.warmup,
        repeat: a.repeat,
        median_ms: 0.0,
        p10_ms: 0.0,
        p90_ms: 0.0,
        runs_per_s: 0.0,
        batch,
        samples_per_s: None,
        arena_bytes: None,
        arena_peak: None,
        arena_lower_bound: None,
        profile: None,
        profile_total: (0.0, 0),
    };
    let times = if a.backend == "gpu" {
        let feeds = tensor_feeds(&m, feeds)?;
        let start = Instant::now();
        let gpu = open_gpu(a.adapter.as_deref())?;
        r.device_ms = Some(start.elapsed().as_secs_f64() * 1e3);
        r.adapter = Some(gpu.adapter_name());
        let (session, build_s) = build_session(&gpu, &m, &feeds)?;
        report_session(&session, build_s);
        r.build_ms = build_s * 1e3;
        let (g, c) = node_counts(&session);
        (r.gpu_nodes, r.cpu_nodes) = (Some(g), Some(c));
        let mem = session.memory();
        r.arena_bytes = Some(mem.arena_bytes);
        r.arena_peak = Some(mem.peak);
        r.arena_lower_bound = Some(mem.lower_bound);
        let times = time_runs(a.warmup, a.repeat, || {
            session.run(&feeds).map(drop).map_err(|e| e.to_string())
        })?;
        if a.profile {
            let steps = session.profile(&feeds).map_err(|e| e.to_string())?;
            let (rows, total, n) = profile_rows(steps);
            r.profile = Some(rows);
            r.profile_total = (total, n);
        }
        times
    } else {
        if a.adapter.is_some() {
            return Err("--adapter needs --backend gpu".into());
        }
        let start = Instant::now();
        let interp = modc::Interpreter::new(&m);
        r.build_ms = start.elapsed().as_secs_f64() * 1e3;
        time_runs(a.warmup, a.repeat, || {
            interp
                .run(feeds.clone())
                .map(drop)
                .map_err(|e| e.to_string())
        })?
    };
    r.median_ms = quantile(&times, 0.5) * 1e3;
    r.p10_ms = quantile(&times, 0.1) * 1e3;
    r.p90_ms = quantile(&times, 0.9) * 1e3;
    r.runs_per_s = 1e3 / r.median_ms;
    r.samples_per_s = batch.map(|b| b as f64 * r.runs_per_s);
    if a.json {
        crate::emit(&(serde_json::to_string_pretty(&r).map_err(|e| e.to_string())? + "\n"))
    } else {
        crate::emit(&r.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_interpolate() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&s, 0.5), 2.5);
        assert_eq!(quantile(&s, 0.0), 1.0);
        assert_eq!(quantile(&s, 1.0), 4.0);
        assert!((quantile(&s, 0.1) - 1.3).abs() < 1e-12);
        assert_eq!(quantile(&[7.0], 0.9), 7.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
