#[test]
fn scratch() {
    let text = std::fs::read_to_string("/tmp/bn6.ir").unwrap();
    let m = modc::parse_model(&text).unwrap();
    let feeds = modc::pass::equiv::random_feeds(&m, 1, &Default::default(), 4).unwrap();
    let mut it = modc::Interpreter::new(&m);
    let r = it.run(feeds);
    println!("{:?}", r.err());
}
