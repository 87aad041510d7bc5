//! The `modc` command line: a thin layer over the library.

mod cli_gpu;
mod cli_optimize;
mod cli_plan;

use clap::{Args, Parser, Subcommand};

/// mimalloc keeps freed memory for reuse instead of returning large blocks to the
/// system, so the interpreter's per-run tensors do not page-fault on every run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "modc", version, about = "A model compiler for ONNX")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a model's inputs, outputs, opsets, op types, parameters and external data.
    Inspect {
        model: PathBuf,
        /// Print the summary as JSON.
        #[arg(long, conflicts_with = "ir")]
        json: bool,
        /// Print the model in modc's text form.
        #[arg(long)]
        ir: bool,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Run a model on the CPU with the reference interpreter, or on the GPU
    /// (`--backend gpu`: WGSL kernels through wgpu, CPU fallback per node).
    Run {
        model: PathBuf,
        /// An input as NAME=FILE (.npy or ONNX TensorProto .pb); repeat for each input.
        #[arg(long = "input", value_name = "NAME=FILE")]
        inputs: Vec<String>,
        /// Where to write output_K.npy (one file per output, in graph order).
        #[arg(long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
        /// The backend that runs the model.
        #[arg(long, default_value = "cpu", value_parser = ["cpu", "gpu"])]
        backend: String,
        /// The GPU adapter for --backend gpu: a substring of its name (case-insensitive).
        #[arg(long, value_name = "NAME")]
        adapter: Option<String>,
        /// Fill inputs that are not given with seeded random data of their declared shape.
        #[arg(long)]
        random: bool,
        /// The size of a symbolic dimension for --random, as NAME=N; repeatable.
        #[arg(long = "dim", value_name = "NAME=N")]
        dims: Vec<String>,
        /// The seed of --random.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Run N times and report the median time (for benchmarks).
        #[arg(long, default_value_t = 1, value_name = "N")]
        repeat: usize,
        /// Print the time spent per op type (all runs together; subgraph nodes are
        /// also inside their If/Loop/Scan); with `--backend gpu`, the slowest
        /// nodes of one extra run that waits after every step.
        #[arg(long)]
        profile: bool,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Time a model: median, p10 and p90 latency and throughput on a backend.
    Bench(Box<cli_gpu::BenchArgs>),
    /// Optimize a model: run a pass pipeline (-O2 by default) and save the result.
    Optimize(Box<cli_optimize::OptimizeArgs>),
    /// List the passes and the pipelines of the levels.
    ListPasses,
    /// Lower a model for given input shapes: print the schedule (kernels or CPU
    /// fallback per step), the memory plan and the fallback table.
    Plan(Box<cli_plan::PlanArgs>),
    /// Load a model (ONNX, or the text form if the name ends in .ir) and save it as
    /// ONNX (optionally moving weights to external data).
    Convert {
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Initializers of at least this many bytes go to `<OUTPUT>.data`.
        #[arg(long, value_name = "BYTES")]
        external_data_threshold: Option<u64>,
        #[command(flatten)]
        policy: PolicyArgs,
    },
}

/// Limits of the load policy (the defaults suit every real model).
#[derive(Args)]
pub(crate) struct PolicyArgs {
    /// Most nodes in the model, subgraphs included.
    #[arg(long, value_name = "N")]
    max_nodes: Option<usize>,
    /// Largest tensor in bytes.
    #[arg(long, value_name = "BYTES")]
    max_tensor_bytes: Option<u64>,
    /// Deepest nesting of subgraphs.
    #[arg(long, value_name = "N")]
    max_subgraph_depth: Option<usize>,
    /// Accept external data files that have several hard links.
    #[arg(long)]
    allow_hard_links: bool,
}

impl PolicyArgs {
    fn policy(&self) -> modc::LoadPolicy {
        let mut p = modc::LoadPolicy::default().with_hard_links(self.allow_hard_links);
        if let Some(n) = self.max_nodes {
            p = p.with_max_nodes(n);
        }
        if let Some(n) = self.max_tensor_bytes {
            p = p.with_max_tensor_bytes(n);
        }
        if let Some(n) = self.max_subgraph_depth {
            p = p.with_max_subgraph_depth(n);
        }
        p
    }
}

/// Writes to stdout; a closed pipe (`modc inspect m.onnx | head`) is not an error.
pub(crate) fn emit(text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write to stdout: {e}"))
        }
        _ => Ok(()),
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Inspect {
            model,
            json,
            ir,
            policy,
        } => {
            let m = modc::load(&model, &policy.policy()).map_err(|e| e.to_string())?;
            if ir {
                emit(&modc::print_model(&m))?;
            } else if json {
                let s = modc::inspect(&m);
                emit(&(serde_json::to_string_pretty(&s).map_err(|e| e.to_string())? + "\n"))?;
            } else {
                emit(&modc::inspect(&m).to_string())?;
            }
        }
        Command::Run {
            model,
            inputs,
            output_dir,
            backend,
            adapter,
            random,
            dims,
            seed,
            repeat,
            profile,
            policy,
        } => {
            let m = modc::load(&model, &policy.policy()).map_err(|e| e.to_string())?;
            let opts = RunOptions {
                repeat: repeat.max(1),
                profile,
            };
            let feeds = collect_feeds(&m, &inputs, &dims, random, seed)?;
            if backend == "gpu" {
                cli_gpu::run_gpu(&m, feeds, output_dir.as_deref(), &opts, adapter.as_deref())?;
            } else if adapter.is_some() {
                return Err("--adapter needs --backend gpu".into());
            } else {
                run_model(&m, feeds, output_dir.as_deref(), &opts)?;
            }
        }
        Command::Bench(a) => cli_gpu::bench(*a)?,
        Command::Optimize(a) => cli_optimize::optimize(*a)?,
        Command::ListPasses => emit(&cli_optimize::list_passes())?,
        Command::Plan(a) => cli_plan::plan(*a)?,
        Command::Convert {
            input,
            output,
            external_data_threshold,
            policy,
        } => {
            let m = load_any(&input, &policy)?;
            let opts = modc::SaveOptions {
                external_data_threshold,
                ..Default::default()
            };
            let r = modc::save(&m, &output, &opts).map_err(|e| e.to_string())?;
            if r.switched_to_external {
                eprintln!("modc: the model is over protobuf's 2 GiB limit; tensors of 1 KiB or more were written as external data");
            }
            match &r.external_file {
                Some(f) => emit(&format!(
                    "wrote {} ({} bytes) and {} ({} tensors, {} bytes)\n",
                    output.display(),
                    r.model_bytes,
                    f.display(),
                    r.external_tensors,
                    r.external_bytes
                ))?,
                None => emit(&format!(
                    "wrote {} ({} bytes)\n",
                    output.display(),
                    r.model_bytes
                ))?,
            }
        }
    }
    Ok(())
}

/// Loads an ONNX file, or a model in the text form when the name ends in `.ir`
/// (constants then hold only the data their literals give).
pub(crate) fn load_any(path: &std::path::Path, policy: &PolicyArgs) -> Result<modc::Model, String> {
    if path.extension().is_some_and(|e| e == "ir") {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return modc::parse_model(&text).map_err(|e| format!("{}: {e}", path.display()));
    }
    modc::load(path, &policy.policy()).map_err(|e| e.to_string())
}

fn split_pair<'a>(arg: &'a str, flag: &str) -> Result<(&'a str, &'a str), String> {
    arg.split_once('=')
        .ok_or_else(|| format!("{flag} expects NAME=VALUE, got '{arg}'"))
}

/// Reads `NAME=FILE` inputs for the model's graph inputs.
pub(crate) fn read_inputs(
    m: &modc::Model,
    inputs: &[String],
) -> Result<Vec<(String, modc::RtValue)>, String> {
    let g = &m.graph;
    let mut out = vec![];
    for i in inputs {
        let (name, file) = split_pair(i, "--input")?;
        let id = g
            .inputs
            .iter()
            .copied()
            .find(|&v| g.value(v).name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = g.inputs.iter().map(|&v| g.value(v).name.as_str()).collect();
                format!(
                    "the model has no input named '{name}' (inputs: {})",
                    names.join(", ")
                )
            })?;
        let v = modc::read_value_file(std::path::Path::new(file), g.value(id).ty.as_ref())?;
        out.push((name.to_string(), v));
    }
    Ok(out)
}

pub(crate) struct RunOptions {
    repeat: usize,
    profile: bool,
}

/// The feeds of a run: the `NAME=FILE` inputs, and seeded random values for the
/// others when `random` (inputs with an initializer keep it).
pub(crate) fn collect_feeds(
    m: &modc::Model,
    inputs: &[String],
    dims: &[String],
    random: bool,
    seed: u64,
) -> Result<Vec<(String, modc::RtValue)>, String> {
    let g = &m.graph;
    let mut dim_sizes = std::collections::HashMap::new();
    for d in dims {
        let (k, v) = split_pair(d, "--dim")?;
        let n: usize = v
            .parse()
            .map_err(|_| format!("--dim {k}: '{v}' is not a size"))?;
        dim_sizes.insert(k.to_string(), n);
    }
    let mut given: std::collections::HashMap<String, modc::RtValue> =
        read_inputs(m, inputs)?.into_iter().collect();
    let mut feeds = Vec::new();
    for (k, &id) in g.inputs.iter().enumerate() {
        let val = g.value(id);
        if let Some(v) = given.remove(&val.name) {
            feeds.push((val.name.clone(), v));
        } else if val.init.is_some() {
            continue;
        } else if random {
            let t = modc::random_input(
                &val.name,
                val.ty.as_ref(),
                &dim_sizes,
                seed.wrapping_add(k as u64),
            )?;
            feeds.push((val.name.clone(), modc::RtValue::Tensor(t)));
        } else {
            let ty = val
                .ty
                .as_ref()
                .map(|t| t.to_string())
                .unwrap_or_else(|| "a value".into());
            return Err(format!(
                "input '{}' ({ty}) is not given; pass --input {}=FILE or use --random",
                val.name, val.name
            ));
        }
    }
    Ok(feeds)
}

fn run_model(
    m: &modc::Model,
    feeds: Vec<(String, modc::RtValue)>,
    output_dir: Option<&std::path::Path>,
    opts: &RunOptions,
) -> Result<(), String> {
    let repeat = opts.repeat;
    let mut interp = modc::Interpreter::new(m);
    if opts.profile {
        interp.enable_profile();
    }
    let mut times = Vec::new();
    let mut outs = Vec::new();
    for _ in 0..repeat {
        let start = std::time::Instant::now();
        outs = interp.run(feeds.clone()).map_err(|e| e.to_string())?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let mut text = format_outputs(&outs, output_dir)?;
    if opts.profile {
        text.push_str("op type                     calls      total ms\n");
        for (op, calls, t) in interp.profile() {
            text.push_str(&format!(
                "{op:<26} {calls:>6} {:>13.3}\n",
                t.as_secs_f64() * 1e3
            ));
        }
    }
    text.push_str(&ran_in(&times));
    emit(&text)
}

/// `ran in X ms`, the median of the sorted run times (seconds).
pub(crate) fn ran_in(sorted: &[f64]) -> String {
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    if sorted.len() > 1 {
        format!(
            "ran in {:.2} ms (median of {})\n",
            median * 1e3,
            sorted.len()
        )
    } else {
        format!("ran in {:.2} ms\n", median * 1e3)
    }
}

/// One line per output (name, type, shape, first values) and, with `output_dir`,
/// `output_K.npy` per output in graph order.
pub(crate) fn format_outputs(
    outs: &[(String, modc::RtValue)],
    output_dir: Option<&std::path::Path>,
) -> Result<String, String> {
    if let Some(dir) = output_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut text = String::new();
    for (k, (name, v)) in outs.iter().enumerate() {
        match v {
            modc::RtValue::Tensor(t) => {
                let vals = t
                    .to_f64_vec()
                    .map(|v| {
                        v.iter()
                            .take(6)
                            .map(|x| format!("{x:.6}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                text.push_str(&format!(
                    "{name}: {}{:?} [{vals}{}]\n",
                    t.dtype(),
                    t.shape(),
                    if t.len() > 6 { ", ..." } else { "" }
                ));
                if let Some(dir) = output_dir {
                    modc::write_npy(&dir.join(format!("output_{k}.npy")), t)?;
                }
            }
            other => {
                text.push_str(&format!(
                    "{name}: {}\n",
                    match other {
                        modc::RtValue::Sequence(s) => format!("sequence of {} values", s.len()),
                        _ => "optional".into(),
                    }
                ));
                if output_dir.is_some() {
                    return Err(format!(
                        "output '{name}' is not a tensor and cannot be written as .npy"
                    ));
                }
            }
        }
    }
    Ok(text)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("MODC_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // A panic is a bug in modc; the user still gets one line and exit code 1, and no
    // output file is left half written (outputs are renamed into place at the end).
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("modc: error: internal error (a bug in modc, please report it): {msg}{at}");
    }));
    match std::panic::catch_unwind(move || run(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("modc: error: {e}");
            ExitCode::from(1)
        }
        Err(_) => ExitCode::from(1),
    }
}
