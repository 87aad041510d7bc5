fn main() {
    let m = modc::load(std::path::Path::new("/work/main/target/modc-testdata/models/silero-vad/silero_vad.onnx"), &modc::LoadPolicy::default()).unwrap();
    let mut inf = m.clone();
    let r = modc::infer_shapes(&mut inf);
    let _ = r;
    for (_, n) in inf.graph.nodes() { if n.op_type == "If" {
        let b = n.attr("then_branch").unwrap().value.graphs()[0];
        let mut k = 0;
        for v in b.value_ids() { let val = b.value(v); if val.name.contains("encoder/3/activation/Relu_output_0") { println!("{} {:?}", val.name, val.ty); } if val.ty.is_none() { k += 1; } }
        println!("untyped after infer {k}");
    }}
}
