//! The client side of Kubernetes' WebSocket channel protocol (`v5.channel.k8s.io`, else
//! `v4.channel.k8s.io`) for `exec`: each binary message starts with its channel, 0 stdin,
//! 1 stdout, 2 stderr, 3 the session's final `Status` (JSON), 4 terminal sizes
//! (`{"Width":..,"Height":..}`); v5 adds 255, whose message `[255, channel]` closes a
//! channel, the only way to tell the remote side that stdin ended.
//!
//! Under v4 the end of stdin cannot be told. Closing the whole WebSocket instead makes the
//! runtime's streaming server (containerd 1.6 speaks only v4) drop the session at once,
//! stdin not yet passed on and output included, so the session stays open: everything
//! typed or piped reaches the command, all its output and its exit code come back, and a
//! command that waits for the end of its input waits until it is stopped. A notice on
//! stderr says so when it happens.

use futures::{SinkExt as _, StreamExt as _};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::client::Connection;
use thiserror::Error;
use tokio::io::AsyncReadExt as _;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_tungstenite::tungstenite::Message;

use super::terminal;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// Said when stdin ends under v4 (see the module doc).
const STDIN_END_UNTOLD: &str = "stdin ended, but the server's stream protocol \
    (v4.channel.k8s.io) cannot pass that on: the command runs until it ends by itself";

#[derive(Debug, Error)]
pub enum ChannelError {
    #[error("the stream broke: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("the session's status is not a Status: {0}")]
    Status(serde_json::Error),
    #[error("the session ended on {0}")]
    Signalled(&'static str),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What the session copies: stdin (`-i`), and the local terminal's size when it drives a
/// remote one (`-t`).
pub struct Local {
    pub stdin: bool,
    pub terminal: bool,
}

/// Runs the session until the remote side ends it; returns its final `Status` (none when
/// the stream ended without one). One of `stops` ends the session with an error.
pub async fn run(
    connection: Connection,
    local: Local,
    mut stops: Stops,
) -> Result<Option<Status>, ChannelError> {
    let closes_channels = connection.supports_stream_close();
    let (mut remote_in, mut remote_out) = connection.into_stream().split();
    let mut stdin = local.stdin.then(read_stdin);
    let mut resized = match local.terminal {
        true => Some(signal(SignalKind::window_change())?),
        false => None,
    };
    if local.terminal {
        if let Some(size) = resize_message() {
            remote_in.send(size).await?;
        }
    }
    let mut status = None;
    loop {
        tokio::select! {
            message = remote_out.next() => match message.transpose()? {
                Some(Message::Binary(data)) => match data.split_first() {
                    Some((&STDOUT, bytes)) => write_all(&mut std::io::stdout(), bytes)?,
                    Some((&STDERR, bytes)) => write_all(&mut std::io::stderr(), bytes)?,
                    Some((&STATUS, json)) if !json.is_empty() => {
                        status = Some(serde_json::from_slice(json).map_err(ChannelError::Status)?);
                    }
                    // The empty first message of each channel, and channels a client
                    // does not read.
                    _ => {}
                },
                Some(Message::Close(_)) | None => return Ok(status),
                Some(_) => {}
            },
            chunk = next_chunk(&mut stdin) => match chunk {
                Some(bytes) => remote_in.send(Message::binary([&[STDIN], &bytes[..]].concat())).await?,
                None => {
                    stdin = None;
                    if closes_channels {
                        remote_in.send(Message::binary(vec![CLOSE, STDIN])).await?;
                    } else {
                        eprintln!("{STDIN_END_UNTOLD}");
                    }
                }
            },
            Some(()) = next_signal(&mut resized) => {
                if let Some(size) = resize_message() {
                    remote_in.send(size).await?;
                }
            }
            stop = stops.next() => return Err(ChannelError::Signalled(stop)),
        }
    }
}

fn write_all(out: &mut impl std::io::Write, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(bytes)?;
    out.flush()
}

/// The local terminal's size on channel 4, when it has one.
fn resize_message() -> Option<Message> {
    let (width, height) = terminal::size()?;
    let json = serde_json::json!({"Width": width, "Height": height}).to_string();
    Some(Message::binary([&[RESIZE], json.as_bytes()].concat()))
}

/// Stdin's chunks as they are read; the channel ends with stdin. Read on tokio's blocking
/// pool, which cannot cancel a read: see the runtime's shutdown in [`super::run`].
fn read_stdin() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0; 32 * 1024];
        // A read error ends stdin as its end would.
        while let Ok(n @ 1..) = stdin.read(&mut buf).await {
            if tx.send(buf[..n].to_vec()).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// The next chunk of stdin; pending forever once stdin is not read (any more).
async fn next_chunk(stdin: &mut Option<tokio::sync::mpsc::Receiver<Vec<u8>>>) -> Option<Vec<u8>> {
    match stdin {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_signal(signal: &mut Option<Signal>) -> Option<()> {
    match signal {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// The signals that end a session: a SIGINT, SIGTERM or SIGHUP that reaches this process
/// (not a Ctrl-C typed in raw mode, which goes to the remote terminal), so that the caller
/// can restore the terminal before the process goes. Caught from before the terminal is
/// made raw.
pub struct Stops {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Stops {
    pub fn new() -> std::io::Result<Stops> {
        Ok(Stops {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}
