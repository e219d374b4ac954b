//! Test helpers for this crate's tests and other crates' (the pod worker, end-to-end
//! tests): virtual mount contents, and the guests built by `guests/build.sh`.

use std::path::PathBuf;
use std::sync::Arc;

use crate::vfs::{Dir, File, Snapshot};

/// The content of a virtual mount holding `(path, content, mode)` files.
///
/// # Panics
/// If two files share a path.
pub fn snapshot(files: &[(&str, &str, u32)]) -> Arc<Snapshot> {
    let files = files.iter().map(|(path, content, mode)| {
        let file = File {
            data: content.as_bytes().to_vec().into(),
            mode: *mode,
        };
        (path.to_string(), file)
    });
    Snapshot::new(Dir::from_files(files).expect("distinct paths"))
}

/// A guest component in `guests/out/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guest {
    /// Prints `Hello from wkube!`, its args and `GREETING`/`POD_NAME`; exits 0.
    Hello,
    /// Prints `tick N` every second (or every `argv[1]` ms) forever.
    Ticker,
    /// Prints a line to stdout and one to stderr; exits with `argv[1]` (default 1).
    ExitCode,
    /// `env`, `cat FILE...`, `ls DIR`, or `watch DIR KEY...`: prints the environment and
    /// files it sees; `watch` prints `seen K=V ...` on every change, read through one
    /// directory descriptor.
    Confwatch,
}

impl Guest {
    pub const ALL: [Guest; 4] = [
        Guest::Hello,
        Guest::Ticker,
        Guest::ExitCode,
        Guest::Confwatch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Guest::Hello => "hello",
            Guest::Ticker => "ticker",
            Guest::ExitCode => "exit-code",
            Guest::Confwatch => "confwatch",
        }
    }

    pub fn path(self) -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../guests/out"))
            .join(format!("{}.wasm", self.name()))
    }

    /// The component's bytes.
    ///
    /// # Panics
    /// If the guest has not been built, with a message saying how to build it.
    pub fn bytes(self) -> Vec<u8> {
        let path = self.path();
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "test guest {} not found at {} ({e}): run guests/build.sh",
                self.name(),
                path.display()
            )
        })
    }
}
