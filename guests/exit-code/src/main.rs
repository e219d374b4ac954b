//! Exits with the code given as `argv[1]` (default 1), after one line on stdout
//! and one on stderr, so tests see both streams and a non-zero exit.
//!
//! `std::process::exit(n)` cannot be used: on wasm32-wasip2 std reports only
//! success or failure through `wasi:cli/exit.exit(result)`, so every non-zero code
//! would arrive as 1. The exact code needs `exit-with-code` (wasi:cli 0.2.12),
//! which std's WIT does not declare; `build.rs` hands the linker `wit/exit.wit`
//! so that the component declares the import.

use std::io::Write;

#[link(wasm_import_module = "wasi:cli/exit@0.2.12")]
extern "C" {
    #[link_name = "exit-with-code"]
    fn exit_with_code(code: i32);
}

fn main() {
    let code: u8 = match std::env::args().nth(1) {
        Some(a) => a.parse().unwrap_or_else(|_| panic!("bad exit code {a:?} (want 0..=255)")),
        None => 1,
    };
    println!("exiting with code {code}");
    eprintln!("this line goes to stderr");
    std::io::stdout().flush().expect("flush stdout");
    // SAFETY: the import takes one u8 (passed as i32 by the canonical ABI) and
    // does not return; nothing is left to clean up that the host needs.
    unsafe { exit_with_code(i32::from(code)) };
    unreachable!("exit-with-code returned");
}
