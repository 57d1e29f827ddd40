//! `include/apoyo_sync.h` is what cbindgen makes of this crate today: the test regenerates it
//! and fails when the checked-in header differs (CI catches a stale header without installing
//! the cbindgen CLI). `APOYO_BLESS_HEADER=1 cargo test -p apoyo-ffi --test header` rewrites it.

use std::path::Path;

#[test]
fn checked_in_header_is_current() {
    let crate_dir = env!("CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(Path::new(crate_dir).join("cbindgen.toml"))
        .expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let path = Path::new(crate_dir).join("../../include/apoyo_sync.h");
    if std::env::var_os("APOYO_BLESS_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("write the header");
        return;
    }
    let checked_in = std::fs::read(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "include/apoyo_sync.h is stale: run APOYO_BLESS_HEADER=1 cargo test -p apoyo-ffi --test header and commit it"
    );
}
