//! Shared by the integration tests: where the fetched test data is.

use std::path::{Path, PathBuf};

/// The folder `scripts/fetch_testdata.py` fills (`$MODC_TESTDATA` or
/// `target/modc-testdata`). Without it a test says so and passes, unless
/// `MODC_REQUIRE_TESTDATA=1` (CI), which makes it fail.
pub fn testdata() -> Option<PathBuf> {
    let dir = std::env::var_os("MODC_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/modc-testdata"));
    if dir.join("stamps").exists() {
        return Some(dir);
    }
    assert_ne!(
        std::env::var("MODC_REQUIRE_TESTDATA").as_deref(),
        Ok("1"),
        "test data not found in {} (run python3 scripts/fetch_testdata.py)",
        dir.display()
    );
    eprintln!(
        "skipping: test data not found in {} (run python3 scripts/fetch_testdata.py)",
        dir.display()
    );
    None
}
