//! Shape inference agrees with what the interpreter computes: on the shipped model,
//! the real models and the backend node cases, every inferred type of a node output
//! matches the actual tensor (element type, rank, and every fixed dimension).
//! Symbolic dimensions stay symbolic.

mod common;
use common::testdata;

use modc::{
    infer_shapes, load, parse_model, print_model, DimValue, Interpreter, LoadPolicy, Model,
    RtValue, TensorValue,
};
use std::path::{Path, PathBuf};

fn check_against_run(m: &Model, inputs: Vec<(String, RtValue)>, label: &str) -> usize {
    let mut inferred = m.clone();
    infer_shapes(&mut inferred);
    let Ok((_, trace)) = Interpreter::run_traced(m, inputs) else {
        return 0;
    };
    let g = &inferred.graph;
    let mut checked = 0;
    for v in g.value_ids() {
        let val = g.value(v);
        let (Some(ty), Some((dtype, shape))) = (&val.ty, trace.get(&val.name)) else {
            continue;
        };
        let Some((elem, s)) = ty.as_tensor() else {
            continue;
        };
        assert_eq!(
            elem, *dtype,
            "{label}: '{}' inferred {ty}, actual {dtype}{shape:?}",
            val.name
        );
        if let Some(s) = s {
            assert_eq!(
                s.rank(),
                shape.len(),
                "{label}: '{}' inferred {ty}, actual {dtype}{shape:?}",
                val.name
            );
            for (d, &n) in s.dims.iter().zip(shape) {
                if let DimValue::Fixed(f @ 0..) = d.value {
                    assert_eq!(
                        f as usize, n,
                        "{label}: '{}' inferred {ty}, actual {dtype}{shape:?}",
                        val.name
                    );
                }
            }
        }
        checked += 1;
    }
    checked
}

#[test]
fn symbolic_dims_stay_symbolic() {
    let mut m = parse_model(
        "opset _=17\ngraph @g(%x: f32[batch,3,32,32], %w: f32[8,3,3,3]) -> (%y) {\n  %0 = Conv(%x, %w) {pads=[1,1,1,1]}\n  %1 = Relu(%0)\n  %2 = GlobalAveragePool(%1)\n  %y = Flatten(%2)\n  return %y\n}\n",
    )
    .unwrap();
    let r = infer_shapes(&mut m);
    assert_eq!(r.inferred, 4);
    insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!("shape_inference__symbolic", print_model(&m));
    });
}

#[test]
fn shipped_model_shapes_match_the_interpreter() {
    let m = load(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
        &LoadPolicy::default(),
    )
    .unwrap();
    let x = TensorValue::from_f32(&[1, 3, 48, 192], vec![0.5; 3 * 48 * 192]);
    let checked = check_against_run(&m, vec![("x".into(), RtValue::Tensor(x))], "cls");
    assert!(checked > 200, "only {checked} values had an inferred type");
}

#[test]
fn backend_node_cases_shapes_match_the_interpreter() {
    let Some(dir) = testdata() else { return };
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir.join("onnx-backend/node"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    cases.sort();
    let mut checked = 0;
    for c in cases {
        let Ok(m) = load(c.join("model.onnx"), &LoadPolicy::default()) else {
            continue;
        };
        let g = &m.graph;
        let fed: Vec<_> = g
            .inputs
            .iter()
            .filter(|&&i| g.value(i).init.is_none())
            .copied()
            .collect();
        let mut inputs = Vec::new();
        let mut ok = true;
        for (k, &id) in fed.iter().enumerate() {
            match modc::conformance::read_value(
                &c.join(format!("test_data_set_0/input_{k}.pb")),
                g.value(id).ty.as_ref(),
            ) {
                Ok(v) => inputs.push((g.value(id).name.clone(), v)),
                Err(_) => ok = false,
            }
        }
        if ok {
            checked += check_against_run(&m, inputs, &c.display().to_string());
        }
    }
    assert!(checked > 1000, "only {checked} values were checked");
}

#[test]
fn ops_without_a_rule_are_inferred_by_running_them_on_known_shapes() {
    let mut m = parse_model(
        "opset _=17\ngraph @g(%x: f32[4,100]) -> (%v, %i, %nz) {\n  %k = const i64[1] @k [5]\n  %v, %i = TopK(%x, %k)\n  %nz = NonZero(%x)\n  return %v, %i, %nz\n}\n",
    )
    .unwrap();
    infer_shapes(&mut m);
    let g = &m.graph;
    let ty = |k: usize| g.value(g.outputs[k]).ty.as_ref().map(|t| t.to_string());
    assert_eq!(ty(0).as_deref(), Some("f32[4,5]"));
    assert_eq!(ty(1).as_deref(), Some("i64[4,5]"));
    // NonZero's output shape depends on the data: never guessed.
    assert_eq!(ty(2), None);
}
