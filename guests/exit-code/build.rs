//! Gives wasm-component-ld the WIT for `wasi:cli/exit@0.2.12#exit-with-code`,
//! which std's own component type does not include (see src/main.rs).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg=--component-type={dir}/wit/exit.wit");
    println!("cargo:rerun-if-changed=wit/exit.wit");
}
