//! Shared by the session tests (`gpu_runtime.rs`, `gpu_arena.rs`): a session's
//! outputs against the interpreter's, deterministic test inputs, and where the
//! real models are.
#![allow(dead_code)]

use modc::runtime::Session;
use modc::{Interpreter, Model, RtValue, TensorValue};
use std::path::PathBuf;

/// The session's outputs against the interpreter's, within rtol/atol.
pub fn matches_interpreter(
    m: &Model,
    inputs: &[(String, TensorValue)],
    s: &Session,
    rtol: f32,
    atol: f32,
) {
    let want = Interpreter::new(m)
        .run(
            inputs
                .iter()
                .map(|(n, t)| (n.clone(), RtValue::Tensor(t.clone())))
                .collect(),
        )
        .unwrap();
    let got = s.run(inputs).unwrap();
    assert_eq!(got.len(), want.len());
    for ((gn, g), (wn, w)) in got.iter().zip(&want) {
        assert_eq!(gn, wn);
        let w = w.as_tensor().unwrap();
        assert_eq!(g.shape(), w.shape(), "{gn}");
        let (g, w) = (g.to_f64_vec().unwrap(), w.to_f64_vec().unwrap());
        for (k, (a, b)) in g.iter().zip(&w).enumerate() {
            let tol = atol as f64 + rtol as f64 * b.abs();
            assert!(
                (a - b).abs() <= tol,
                "{gn}[{k}]: GPU {a} vs interpreter {b}"
            );
        }
    }
}

/// A deterministic f32 tensor with positive and negative values.
pub fn ramp(shape: &[usize], scale: f32) -> TensorValue {
    let n: usize = shape.iter().product();
    TensorValue::from_f32(
        shape,
        (0..n)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) * scale)
            .collect(),
    )
}

/// `$MODC_TESTDATA/models` (or `target/modc-testdata/models`); `None` after
/// saying so when it is missing, a panic when `MODC_REQUIRE_TESTDATA=1`.
pub fn models_dir() -> Option<PathBuf> {
    let d = std::env::var("MODC_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/modc-testdata"))
        .join("models");
    if d.is_dir() {
        return Some(d);
    }
    if std::env::var("MODC_REQUIRE_TESTDATA").is_ok_and(|v| v == "1") {
        panic!("MODC_REQUIRE_TESTDATA=1 but {} is missing", d.display());
    }
    eprintln!("skipping: no test data at {}", d.display());
    None
}
