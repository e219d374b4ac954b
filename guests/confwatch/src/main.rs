//! Shows what a pod's configuration looks like from inside a guest.
//!
//! - `confwatch env`: prints every environment variable as `K=V`, sorted; exits 0.
//! - `confwatch cat FILE...`: prints each file's content followed by a newline; exits 0,
//!   or 1 with `cat: FILE: error` on stderr for a file it cannot read.
//! - `confwatch ls DIR`: prints `name size` per entry, sorted; exits 0.
//! - `confwatch write FILE TEXT`: writes `TEXT` to `FILE`; exits 0, or 1 with
//!   `write: FILE: error` on stderr.
//! - `confwatch watch DIR KEY...`: prints the environment once (as `env` does, each line
//!   prefixed `env `), then forever: opens `DIR`, reads every `KEY` relative to that
//!   directory descriptor (so all keys come from the version the open pinned), and prints
//!   `seen K1=V1 K2=V2 ...` whenever the tuple changes. It polls every 5 ms.

use std::ffi::CString;
use std::fs::File;
use std::io::Read as _;
use std::os::fd::{AsRawFd as _, FromRawFd as _};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("env") => print_env(""),
        Some("cat") => {
            let mut failed = false;
            for f in &args[1..] {
                match std::fs::read_to_string(f) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("cat: {f}: {e}");
                        failed = true;
                    }
                }
            }
            std::process::exit(i32::from(failed));
        }
        Some("ls") => {
            let mut entries: Vec<(String, u64)> = std::fs::read_dir(&args[1])
                .expect("read_dir")
                .map(|e| {
                    let e = e.expect("entry");
                    let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                    (e.file_name().to_string_lossy().into_owned(), len)
                })
                .collect();
            entries.sort();
            for (name, len) in entries {
                println!("{name} {len}");
            }
        }
        Some("write") => {
            if let Err(e) = std::fs::write(&args[1], &args[2]) {
                eprintln!("write: {}: {e}", args[1]);
                std::process::exit(1);
            }
        }
        Some("watch") => watch(&args[1], &args[2..]),
        _ => {
            eprintln!("usage: confwatch env | cat FILE... | ls DIR | write FILE TEXT | watch DIR KEY...");
            std::process::exit(2);
        }
    }
}

fn print_env(prefix: &str) {
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.sort();
    for (k, v) in vars {
        println!("{prefix}{k}={v}");
    }
}

fn watch(dir: &str, keys: &[String]) {
    print_env("env ");
    let mut last = String::new();
    loop {
        let seen = read_keys(dir, keys);
        if seen != last {
            println!("seen {seen}");
            last = seen;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `K1=V1 K2=V2 ...` for the keys as one opened directory shows them (`?` for a key
/// that cannot be read).
fn read_keys(dir: &str, keys: &[String]) -> String {
    let Ok(d) = File::open(dir) else {
        return "<no dir>".into();
    };
    let values: Vec<String> = keys
        .iter()
        .map(|k| {
            let value = read_at(&d, k).unwrap_or_else(|| "?".into());
            format!("{k}={value}")
        })
        .collect();
    values.join(" ")
}

fn read_at(dir: &File, name: &str) -> Option<String> {
    let path = CString::new(name).ok()?;
    // SAFETY: `path` is NUL-terminated and outlives the call; the returned descriptor is
    // owned by the `File` built from it and closed when that drops.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), path.as_ptr(), libc::O_RDONLY) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    let mut f = unsafe { File::from_raw_fd(fd) };
    let mut s = String::new();
    f.read_to_string(&mut s).ok()?;
    Some(s)
}
