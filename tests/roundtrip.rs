//! Lossless load/save over every model of the fetched test data: the ONNX backend
//! test models (all five folders) and the real models. For each model:
//!
//! - load → save → load gives the same protobuf, byte for byte, as the first load;
//! - the same through external data (threshold 1 KiB);
//! - the text form prints, parses and prints the same text again.
//!
//! The data comes from `scripts/fetch_testdata.py` (see the README). Without it the
//! tests say so and pass, unless `MODC_REQUIRE_TESTDATA=1` (CI) makes them fail.

mod common;
use common::testdata;

use modc::{load, parse_model, print_model, save, to_proto, LoadPolicy, SaveOptions};
use prost::Message;
use std::path::{Path, PathBuf};

fn models(dir: &Path) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "onnx") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dir.join("onnx-backend"), &mut out);
    walk(&dir.join("models"), &mut out);
    out.sort();
    out
}

fn encoded(m: &modc::Model, path: &Path) -> Vec<u8> {
    to_proto(m)
        .unwrap_or_else(|e| panic!("{}: export: {e}", path.display()))
        .encode_to_vec()
}

#[test]
fn every_model_round_trips_losslessly() {
    let Some(dir) = testdata() else { return };
    let all = models(&dir);
    assert!(
        all.len() > 1800,
        "expected the backend test models and the real models, found {}",
        all.len()
    );
    let tmp = tempfile::tempdir().unwrap();
    let policy = LoadPolicy::default();
    let mut failures = Vec::new();
    for (i, path) in all.iter().enumerate() {
        let first = match load(path, &policy) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{}: load: {e}", path.display()));
                continue;
            }
        };
        let want = encoded(&first, path);
        // Inline.
        let out = tmp.path().join(format!("m{i}.onnx"));
        save(&first, &out, &SaveOptions::default()).unwrap();
        let again = load(&out, &policy).unwrap();
        if encoded(&again, &out) != want {
            failures.push(format!("{}: inline round trip differs", path.display()));
        }
        // External data.
        let sub = tmp.path().join(format!("ext{i}"));
        std::fs::create_dir(&sub).unwrap();
        let out = sub.join("model.onnx");
        save(
            &first,
            &out,
            &SaveOptions {
                external_data_threshold: Some(1024),
                ..Default::default()
            },
        )
        .unwrap();
        let again = load(&out, &policy).unwrap();
        if encoded(&again, &out) != want {
            failures.push(format!(
                "{}: external-data round trip differs",
                path.display()
            ));
        }
        // Text form.
        let text = print_model(&first);
        match parse_model(&text) {
            Ok(m) if print_model(&m) == text => {}
            Ok(_) => failures.push(format!(
                "{}: text form prints differently after parsing",
                path.display()
            )),
            Err(e) => failures.push(format!("{}: text form does not parse: {e}", path.display())),
        }
        let _ = std::fs::remove_dir_all(&sub);
    }
    assert!(
        failures.is_empty(),
        "{} of {} models failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

#[test]
fn over_the_protobuf_limit_switches_to_external_data() {
    // A lowered limit stands in for protobuf's 2 GiB so the test stays small; the
    // code path is the one a 2 GiB model takes.
    let m = parse_model(
        "opset _=17\ngraph @g(%x: f32[256]) -> (%y) {\n  %y = Add(%x, %x)\n  return %y\n}\n",
    )
    .unwrap();
    let mut m = m;
    let values: Vec<f32> = (0..4096).map(|i| i as f32).collect();
    m.graph
        .add_const(modc::Tensor::from_f32("big", &[4096], &values));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.onnx");
    let r = save(
        &m,
        &out,
        &SaveOptions {
            inline_limit: Some(8 * 1024),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(r.switched_to_external);
    assert_eq!(r.external_tensors, 1);
    assert!(tmp.path().join("m.onnx.data").exists());
    let back = load(&out, &LoadPolicy::default()).unwrap();
    let v = back.graph.find_value("big").unwrap();
    let Some(modc::Initializer::Dense(t)) = &back.graph.value(v).init else {
        panic!("big is not an initializer")
    };
    assert!(t.is_external());
    assert_eq!(
        t.raw_bytes().unwrap(),
        modc::Tensor::from_f32("big", &[4096], &values)
            .raw_bytes()
            .unwrap()
    );
}
