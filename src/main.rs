//! The `modc` command line: a thin layer over the library.

use clap::{Args, Parser, Subcommand};
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
    /// Load a model and save it again (optionally moving weights to external data).
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
struct PolicyArgs {
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
fn emit(text: &str) -> Result<(), String> {
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
        Command::Convert {
            input,
            output,
            external_data_threshold,
            policy,
        } => {
            let m = modc::load(&input, &policy.policy()).map_err(|e| e.to_string())?;
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("MODC_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("modc: error: {e}");
            ExitCode::from(1)
        }
    }
}
