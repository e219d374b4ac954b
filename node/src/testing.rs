//! Test guests built by `guests/build.sh`, for this crate's tests and for other
//! crates' tests (the pod worker, end-to-end tests).

use std::path::PathBuf;

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
