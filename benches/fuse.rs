//! Saturation and extraction of `fuse` on the largest real model (rapidocr's
//! v4 recogniser, 440 nodes), after the `-O2` cleanup that precedes it in `-O3`.
//! Also times the `-O2` and `-O3` pipelines whole, so their ratio can be read
//! from one run.
//!
//! `cargo bench --bench fuse` (needs `python3 scripts/fetch_testdata.py` first;
//! without the model it prints why and measures nothing).

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::PathBuf;

fn model_path() -> Option<PathBuf> {
    let root = std::env::var_os("MODC_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/modc-testdata"));
    let p = root.join("models/rapidocr/ch_PP-OCRv4_rec_infer.onnx");
    p.exists().then_some(p)
}

fn bench(c: &mut Criterion) {
    let Some(path) = model_path() else {
        eprintln!(
            "fuse bench: the real models are missing; run `python3 scripts/fetch_testdata.py`"
        );
        return;
    };
    let original = modc::load(&path, &modc::LoadPolicy::default()).expect("model loads");
    // The -O2 steps before fusion.
    let mut prepared = original.clone();
    let before_fuse = modc::Pipeline::parse(
        "infer,(infer,fold,shape-fold,noop,merge-chains,init-cleanup,cse,dce),\
         (conv-fold,pad-fold,gemm-fold,if-fold,infer,fold,shape-fold,noop,merge-chains,init-cleanup,cse,dce)",
    )
    .unwrap();
    modc::PassManager::new(before_fuse)
        .run(&mut prepared)
        .unwrap();
    let set = modc::fuse_rules::builtin_rules().unwrap();
    let rules: Vec<&modc::fuse_rules::Rule> =
        set.rules.iter().filter(|r| r.is_standard()).collect();
    let opset = prepared.opset_version("").unwrap_or(1);
    let opts = modc::FuseOptions::default();
    let mut g = c.benchmark_group("fuse");
    g.sample_size(20);
    g.bench_function("saturate+extract greedy (rec)", |b| {
        b.iter(|| {
            let mut graph = prepared.graph.clone();
            modc::saturate_and_extract(&mut graph, opset, &rules, &opts).unwrap()
        })
    });
    let exact = modc::FuseOptions {
        exact: true,
        ..Default::default()
    };
    g.bench_function("saturate+extract exact (rec)", |b| {
        b.iter(|| {
            let mut graph = prepared.graph.clone();
            modc::saturate_and_extract(&mut graph, opset, &rules, &exact).unwrap()
        })
    });
    for level in ["O2", "O3"] {
        g.bench_function(format!("pipeline -{level} (rec)"), |b| {
            b.iter(|| {
                let mut m = original.clone();
                modc::PassManager::new(modc::Pipeline::parse(level).unwrap())
                    .run(&mut m)
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
