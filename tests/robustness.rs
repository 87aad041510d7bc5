//! Corrupt input never panics: random byte flips and truncations of a real model
//! either load (and then print, save and reload) or give an error.

use proptest::prelude::*;
use std::path::Path;

fn shipped() -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
    )
    .unwrap()
}

fn exercise(bytes: Vec<u8>) {
    let policy = modc::LoadPolicy::default();
    if let Ok(m) = modc::load_bytes(
        bytes.into(),
        Path::new("fuzzed.onnx"),
        Path::new("."),
        &policy,
    ) {
        let text = modc::print_model(&m);
        let _ = modc::parse_model(&text);
        let _ = modc::verify(&m.graph);
        let _ = modc::to_proto(&m);
        let mut m2 = m.clone();
        let _ = modc::infer_shapes(&mut m2);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn flipped_bytes_do_not_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut b = shipped();
        for (i, v) in flips {
            let k = i.index(b.len());
            b[k] ^= v | 1;
        }
        exercise(b);
    }

    #[test]
    fn truncated_files_do_not_panic(cut in any::<prop::sample::Index>()) {
        let b = shipped();
        let n = cut.index(b.len());
        exercise(b[..n].to_vec());
    }
}
