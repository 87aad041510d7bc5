//! The text form: snapshots of the fixtures, `parse(print(m))` prints the same text,
//! clear errors for bad text, and a property test over generated graphs.

use modc::{parse_model, print_model};
use proptest::prelude::*;
use std::path::Path;

fn fixtures() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"))
            .expect("tests/fixtures exists")
            .map(|e| e.expect("readable").path())
            .filter(|p| p.extension().is_some_and(|e| e == "ir"))
            .collect();
    v.sort();
    v
}

#[test]
fn fixtures_print_and_reparse_to_the_same_text() {
    let files = fixtures();
    assert!(files.len() >= 3, "fixtures are missing");
    for path in files {
        let src = std::fs::read_to_string(&path).unwrap();
        let model = parse_model(&src).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        modc::verify(&model.graph).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let printed = print_model(&model);
        let again = print_model(
            &parse_model(&printed)
                .unwrap_or_else(|e| panic!("{}: reparse: {e}\n{printed}", path.display())),
        );
        assert_eq!(
            printed,
            again,
            "{}: print(parse(print(x))) differs",
            path.display()
        );
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false, input_file => &path}, {
            insta::assert_snapshot!(format!("text_form__{name}"), printed);
        });
    }
}

#[test]
fn fixture_round_trips_through_onnx() {
    // parse → ONNX protobuf → IR prints the same text: the text form and the ONNX
    // import/export agree on every construct of the fixtures.
    for path in fixtures() {
        let src = std::fs::read_to_string(&path).unwrap();
        let model = parse_model(&src).unwrap();
        let proto = modc::to_proto(&model).unwrap();
        let back =
            modc::from_proto(proto, &path, Path::new("."), &modc::LoadPolicy::default()).unwrap();
        assert_eq!(
            print_model(&model),
            print_model(&back),
            "{}",
            path.display()
        );
    }
}

#[test]
fn shipped_model_text_form_is_stable() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ch_ppocr_mobile_v2.0_cls_infer.onnx");
    let model = modc::load(&path, &modc::LoadPolicy::default()).unwrap();
    let text = print_model(&model);
    assert_eq!(text, print_model(&parse_model(&text).unwrap()));
    insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!("text_form__shipped_cls_model", text);
    });
}

#[test]
fn parse_errors_name_line_and_problem() {
    let cases = [
        (
            "graph @g(%x: f32[2]) -> (%y) {\n  %y = Relu(%nope)\n  return %y\n}\n",
            "line 2",
            "'%nope' is not defined",
        ),
        (
            "graph @g(%x: f32[2]) -> (%y) {\n  %y = Relu(%x)\n  return %x\n}\n",
            "line 3",
            "'return' lists",
        ),
        (
            "graph @g(%x: q32[2]) -> () {\n  return\n}\n",
            "line 1",
            "unknown element type 'q32'",
        ),
        (
            "graph @g(%x: f32[2]) -> (%y) {\n  %y = Relu(%x) {a=[1, \"s\"]}\n  return %y\n}\n",
            "line 2",
            "mixes kinds",
        ),
        (
            "graph @g() -> () {\n  %a = const f32[2] @a [1.0]\n  return\n}\n",
            "line 2",
            "needs 2",
        ),
        (
            "graph @g(%x: f32[2], %x: f32[2]) -> () {\n  return\n}\n",
            "line 1",
            "defined twice",
        ),
        ("graph @g() -> () {\n  return\n", "line 3", "expected '}'"),
    ];
    for (src, line, msg) in cases {
        let e = parse_model(src).expect_err(src).to_string();
        assert!(
            e.starts_with(line) && e.contains(msg),
            "error for {src:?} was {e:?}"
        );
    }
}

// ---- property test: generated graphs print, parse and print again identically ----

const UNARY: &[&str] = &["Relu", "Neg", "Sigmoid", "Exp", "Identity"];
const BINARY: &[&str] = &["Add", "Mul", "Sub", "MatMul"];

#[derive(Debug, Clone)]
enum GenAttr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Str(Vec<u8>),
}

fn gen_attr() -> impl Strategy<Value = GenAttr> {
    prop_oneof![
        any::<i64>().prop_map(GenAttr::Int),
        any::<f32>().prop_map(GenAttr::Float),
        proptest::collection::vec(any::<i64>(), 0..4).prop_map(GenAttr::Ints),
        proptest::collection::vec(any::<f32>(), 0..4).prop_map(GenAttr::Floats),
        proptest::collection::vec(any::<u8>(), 0..6).prop_map(GenAttr::Str),
    ]
}

fn gen_dim() -> impl Strategy<Value = modc::Dim> {
    prop_oneof![
        (0i64..5000).prop_map(modc::Dim::fixed),
        "[a-z][a-z0-9_]{0,5}".prop_map(|s| modc::Dim::param(&s)),
        "[ -~]{0,4}".prop_map(|s| modc::Dim::param(&s)),
        Just(modc::Dim::unknown()),
    ]
}

#[derive(Debug, Clone)]
struct GenNode {
    op: usize,
    binary: bool,
    a: usize,
    b: usize,
    attrs: Vec<(String, GenAttr)>,
    typed: bool,
}

fn gen_node() -> impl Strategy<Value = GenNode> {
    (
        0usize..8,
        any::<bool>(),
        any::<usize>(),
        any::<usize>(),
        proptest::collection::vec(("[a-z][a-z_]{0,6}", gen_attr()), 0..3),
        any::<bool>(),
    )
        .prop_map(|(op, binary, a, b, attrs, typed)| GenNode {
            op,
            binary,
            a,
            b,
            attrs,
            typed,
        })
}

fn build(input_names: &[String], dims: &[modc::Dim], nodes: &[GenNode]) -> modc::Model {
    use modc::{Attr, AttrValue, DType, Graph, Shape, Type};
    let mut g = Graph::new("generated");
    let ty = Type::tensor(DType::F32, Shape::from_dims(dims.to_vec()));
    let mut avail = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for n in input_names {
        let n = format!("in:{n}");
        if seen.insert(n.clone()) {
            avail.push(g.add_input(&n, Some(ty.clone())));
        }
    }
    avail.push(g.add_const(modc::Tensor::from_f32("c", &[1], &[1.0])));
    for (i, n) in nodes.iter().enumerate() {
        let a = avail[n.a % avail.len()];
        let mut ins = vec![Some(a)];
        let op = if n.binary {
            ins.push(Some(avail[n.b % avail.len()]));
            BINARY[n.op % BINARY.len()]
        } else {
            UNARY[n.op % UNARY.len()]
        };
        let mut names = std::collections::HashSet::new();
        let attrs = n
            .attrs
            .iter()
            .filter(|(k, _)| names.insert(k.clone()))
            .map(|(k, v)| {
                let v = match v {
                    GenAttr::Int(i) => AttrValue::Int(*i),
                    GenAttr::Float(f) => AttrValue::Float(*f),
                    GenAttr::Ints(v) => AttrValue::Ints(v.clone()),
                    GenAttr::Floats(v) => AttrValue::Floats(v.clone()),
                    GenAttr::Str(s) => AttrValue::String(s.clone().into()),
                };
                Attr::new(k, v)
            })
            .collect();
        let (_, outs) = g.add_node(op, "", ins, &[&format!("v{i}")], attrs);
        if n.typed {
            g.value_mut(outs[0]).ty = Some(ty.clone());
        }
        avail.push(outs[0]);
    }
    let last = *avail.last().expect("at least one value");
    g.outputs.push(last);
    modc::Model::new(g, &[("", 17)])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn generated_graphs_round_trip(
        inputs in proptest::collection::vec("[ -~]{1,8}", 1..3),
        dims in proptest::collection::vec(gen_dim(), 0..4),
        nodes in proptest::collection::vec(gen_node(), 0..12),
    ) {
        let m = build(&inputs, &dims, &nodes);
        let text = print_model(&m);
        let parsed = parse_model(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&text, &print_model(&parsed));
        // And through ONNX: export, import, same text.
        let back = modc::from_proto(modc::to_proto(&m).unwrap(), Path::new("gen"), Path::new("."), &modc::LoadPolicy::default()).unwrap();
        prop_assert_eq!(&text, &print_model(&back));
    }
}
