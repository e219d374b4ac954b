//! The local terminal of `wkube exec -t`: raw mode for as long as the remote terminal is
//! attached (restored on drop, so on every way out of the verb, errors and caught signals
//! included), and its size for the remote one.

use std::io::IsTerminal as _;
use std::os::fd::AsFd;

use rustix::termios::{self, OptionalActions, Termios};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TerminalError {
    #[error("cannot read the terminal's settings: {0}")]
    Read(rustix::io::Errno),
    #[error("cannot put the terminal into raw mode: {0}")]
    Raw(rustix::io::Errno),
}

/// Whether stdin is a terminal, the condition for `-t` as in kubectl.
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// The size of the terminal on stdout, else on stdin, as `(width, height)`; `None` when
/// neither is a terminal or it reports no size (a fresh pty is 0x0).
pub fn size() -> Option<(u16, u16)> {
    let on = |fd: std::os::fd::BorrowedFd<'_>| {
        termios::tcgetwinsize(fd)
            .ok()
            .filter(|w| w.ws_col > 0 && w.ws_row > 0)
            .map(|w| (w.ws_col, w.ws_row))
    };
    on(std::io::stdout().as_fd()).or_else(|| on(std::io::stdin().as_fd()))
}

/// Stdin's terminal in raw mode: keys reach the remote terminal as typed (Ctrl-C included,
/// which the remote side turns into its own SIGINT); the settings before are restored when
/// this is dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    pub fn enter() -> Result<RawMode, TerminalError> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).map_err(TerminalError::Read)?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw)
            .map_err(TerminalError::Raw)?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Nothing is left to tell about a failure here: the terminal went away.
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &self.saved);
    }
}
