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
use tokio::io::{AsyncRead, AsyncReadExt as _};
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

/// The local ends of the session: stdin (`-i`), the outputs, and whether the local
/// terminal's size is sent (`-t`).
pub struct Local<In, Out, Err> {
    pub stdin: Option<In>,
    pub stdout: Out,
    pub stderr: Err,
    pub terminal: bool,
}

/// Runs the session until the remote side ends it; returns its final `Status` (none when
/// the stream ended without one). One of `stops` ends the session with an error.
pub async fn run<In, Out, Err>(
    connection: Connection,
    mut local: Local<In, Out, Err>,
    mut stops: Stops,
) -> Result<Option<Status>, ChannelError>
where
    In: AsyncRead + Unpin + Send + 'static,
    Out: std::io::Write,
    Err: std::io::Write,
{
    let closes_channels = connection.supports_stream_close();
    let (mut remote_in, mut remote_out) = connection.into_stream().split();
    let mut stdin = local.stdin.take().map(read);
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
                    Some((&STDOUT, bytes)) => write_all(&mut local.stdout, bytes)?,
                    Some((&STDERR, bytes)) => write_all(&mut local.stderr, bytes)?,
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

/// The chunks of `stdin` as they are read; the channel ends with it. (tokio's stdin is
/// read on the blocking pool, which cannot cancel a read: see the runtime's shutdown in
/// [`super::run`].)
fn read(
    mut stdin: impl AsyncRead + Unpin + Send + 'static,
) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
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

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::WebSocketStream;

    type Seen = tokio::sync::mpsc::UnboundedSender<Vec<u8>>;

    /// A streaming server speaking `protocol` on loopback: it reports each binary message
    /// it gets; after `cue` it answers on stdout and stderr, sends a `Status` of exit code
    /// 3 and closes.
    async fn streaming_server(protocol: &'static str, cue: Vec<u8>, seen: Seen) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let serve = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                let (seen, cue) = (seen.clone(), cue.clone());
                async move {
                    let key = req.headers()["sec-websocket-key"].as_bytes().to_vec();
                    let upgrade = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        let io = TokioIo::new(upgrade.await.unwrap());
                        let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
                        session(ws, cue, seen).await;
                    });
                    http::Response::builder()
                        .status(101)
                        .header("connection", "Upgrade")
                        .header("upgrade", "websocket")
                        .header("sec-websocket-accept", derive_accept_key(&key))
                        .header("sec-websocket-protocol", protocol)
                        .body(http_body_util::Empty::<bytes::Bytes>::new())
                }
            });
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), serve)
                .with_upgrades()
                .await
                .unwrap();
        });
        port
    }

    /// Reports what the client sends until it answers the server's close.
    async fn session<S>(mut ws: WebSocketStream<S>, cue: Vec<u8>, seen: Seen)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        while let Some(Ok(message)) = ws.next().await {
            let Message::Binary(data) = message else {
                continue;
            };
            seen.send(data.to_vec()).unwrap();
            if data[..] == cue[..] {
                let status = serde_json::json!({
                    "status": "Failure",
                    "reason": "NonZeroExitCode",
                    "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
                });
                for reply in [
                    [&[STDOUT], &b"out"[..]].concat(),
                    [&[STDERR], &b"err"[..]].concat(),
                    [&[STATUS], status.to_string().as_bytes()].concat(),
                ] {
                    ws.send(Message::binary(reply)).await.unwrap();
                }
                ws.close(None).await.unwrap();
            }
        }
    }

    /// Runs a session with stdin `typed` against a server speaking `protocol` that answers
    /// after `cue`; returns the session's exit code and what the server got.
    async fn exchange(protocol: &'static str, cue: Vec<u8>) -> (Vec<Vec<u8>>, Option<Status>) {
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let port = streaming_server(protocol, cue, seen_tx).await;
        let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let request = http::Request::get("/exec").body(Vec::new()).unwrap();
        let connection = client.connect(request).await.unwrap();
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let local = Local {
            stdin: Some(&b"typed"[..]),
            stdout: &mut stdout,
            stderr: &mut stderr,
            terminal: false,
        };
        let status = run(connection, local, Stops::new().unwrap()).await.unwrap();
        assert_eq!((&stdout[..], &stderr[..]), (&b"out"[..], &b"err"[..]));
        let mut got = Vec::new();
        // Until the server's session ends (its sender with it).
        while let Some(message) = seen.recv().await {
            got.push(message);
        }
        (got, status)
    }

    #[tokio::test]
    async fn v5_tells_the_end_of_stdin() {
        let (got, status) = exchange("v5.channel.k8s.io", vec![CLOSE, STDIN]).await;
        assert_eq!(
            got,
            [[&[STDIN], &b"typed"[..]].concat(), vec![CLOSE, STDIN]]
        );
        assert_eq!(status.unwrap().reason.as_deref(), Some("NonZeroExitCode"));
    }

    #[tokio::test]
    async fn v4_keeps_the_session_open_at_the_end_of_stdin() {
        let typed = [&[STDIN], &b"typed"[..]].concat();
        let (got, status) = exchange("v4.channel.k8s.io", typed.clone()).await;
        assert_eq!(got, [typed]);
        assert!(status.is_some());
    }
}
