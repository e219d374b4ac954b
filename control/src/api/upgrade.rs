//! Proxies an upgrading request (SPDY/3.1 or WebSocket, as `kubectl exec` sends) to a
//! plain-HTTP backend and then splices the two upgraded connections, like Kubernetes'
//! `UpgradeAwareHandler`. The stream protocol itself is the client's and the backend's
//! business; only the handshake passes through here.

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::errors::ApiError;
use super::routes::Body;

/// Request headers that belong to this hop (or to the client's credentials) and are not
/// forwarded.
const NOT_FORWARDED: &[HeaderName] = &[
    header::HOST,
    header::AUTHORIZATION,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
];

fn unavailable(target: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!(
        "error dialing the container runtime at {target}: {e}"
    ))
}

/// Sends `req`'s handshake to `target` (an `http://host:port/path?query` URL). If the
/// backend switches protocols, so does the client, and the bytes of both flow through a
/// task until either side closes; otherwise the backend's answer is the response.
pub async fn proxy(mut req: Request<Incoming>, target: &str) -> Result<Response<Body>, ApiError> {
    let uri: Uri = target
        .parse()
        .map_err(|e| ApiError::Internal(format!("streaming URL {target:?}: {e}")))?;
    let authority = match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(a)) => a.clone(),
        _ => {
            return Err(ApiError::Internal(format!(
                "streaming URL {target:?} is not a plain-HTTP URL"
            )))
        }
    };
    let client_upgrade = hyper::upgrade::on(&mut req);
    let tcp = tokio::net::TcpStream::connect(authority.as_str())
        .await
        .map_err(|e| unavailable(target, e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| unavailable(target, e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "streaming backend connection ended");
        }
    });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut forward = Request::builder()
        .method(req.method().clone())
        .uri(path)
        .header(header::HOST, authority.as_str());
    for (name, value) in req.headers() {
        if !NOT_FORWARDED.contains(name) {
            forward = forward.header(name, value);
        }
    }
    let forward = forward
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut answer = sender
        .send_request(forward)
        .await
        .map_err(|e| unavailable(target, e))?;
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        response = response.header(name, value);
    }
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        let body = answer
            .into_body()
            .collect()
            .await
            .map_err(|e| unavailable(target, e))?
            .to_bytes();
        let full = http_body_util::Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync();
        return response
            .body(full)
            .map_err(|e| ApiError::Internal(e.to_string()));
    }
    let backend_upgrade = hyper::upgrade::on(&mut answer);
    tokio::spawn(async move {
        match futures::future::try_join(client_upgrade, backend_upgrade).await {
            Ok((client, backend)) => {
                let (mut client, mut backend) = (TokioIo::new(client), TokioIo::new(backend));
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
                    tracing::debug!(error = %e, "stream ended");
                }
            }
            Err(e) => tracing::warn!(error = %e, "upgrading a stream failed"),
        }
    });
    let empty = http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    response
        .body(empty)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::service::service_fn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Serves HTTP/1.1 on a loopback port with `handle`; returns the port.
    async fn serve<F, Fut>(handle: F) -> u16
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Response<Body>, std::convert::Infallible>>
            + Send
            + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let handle = handle.clone();
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(handle))
                        .with_upgrades()
                        .await;
                });
            }
        });
        port
    }

    fn empty() -> Body {
        Empty::new().map_err(|never| match never {}).boxed_unsync()
    }

    /// A backend that switches to an echo protocol when asked for `Upgrade: echo` and says
    /// which path and `X-Stream-Protocol-Version` it saw; anything else is a 400.
    async fn echo_backend() -> u16 {
        serve(|mut req: Request<Incoming>| async move {
            if req
                .headers()
                .get(header::UPGRADE)
                .is_none_or(|u| u != "echo")
            {
                let body = http_body_util::Full::new(Bytes::from("no upgrade asked"))
                    .map_err(|never| match never {})
                    .boxed_unsync();
                return Ok(Response::builder().status(400).body(body).unwrap());
            }
            let seen = format!(
                "{} {}",
                req.uri(),
                req.headers()["x-stream-protocol-version"].to_str().unwrap()
            );
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let mut io = TokioIo::new(upgrade.await.unwrap());
                io.write_all(format!("{seen}\n").as_bytes()).await.unwrap();
                let mut buf = [0u8; 64];
                loop {
                    let n = io.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    io.write_all(&buf[..n]).await.unwrap();
                }
            });
            Ok(Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header(header::CONNECTION, "Upgrade")
                .header(header::UPGRADE, "echo")
                .body(empty())
                .unwrap())
        })
        .await
    }

    async fn proxy_to(backend: u16) -> u16 {
        let target = format!("http://127.0.0.1:{backend}/exec/token?x=1");
        serve(move |req| {
            let target = target.clone();
            async move {
                Ok(proxy(req, &target)
                    .await
                    .unwrap_or_else(|e| panic!("proxy: {e}")))
            }
        })
        .await
    }

    /// Reads until the end of the response head.
    async fn read_head(io: &mut TcpStream) -> String {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8];
            assert_eq!(io.read(&mut byte).await.unwrap(), 1, "closed in the head");
            head.push(byte[0]);
        }
        String::from_utf8(head).unwrap()
    }

    #[tokio::test]
    async fn an_upgraded_stream_flows_through_both_ways() {
        let port = proxy_to(echo_backend().await).await;
        let mut io = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        io.write_all(
            b"POST /api/v1/namespaces/default/pods/p/exec?command=sh HTTP/1.1\r\nHost: api\r\n\
              Authorization: Bearer secret\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\
              X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n",
        )
        .await
        .unwrap();
        let head = read_head(&mut io).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let mut line = Vec::new();
        while !line.ends_with(b"\n") {
            let mut byte = [0u8];
            io.read_exact(&mut byte).await.unwrap();
            line.push(byte[0]);
        }
        // The backend got its own path and the stream protocol header.
        assert_eq!(line, b"/exec/token?x=1 v4.channel.k8s.io\n");
        io.write_all(b"ping").await.unwrap();
        let mut echoed = [0u8; 4];
        io.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"ping");
    }

    #[tokio::test]
    async fn a_refused_upgrade_returns_the_backends_answer() {
        let port = proxy_to(echo_backend().await).await;
        let mut io = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        io.write_all(b"GET /x HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut all = String::new();
        io.read_to_string(&mut all).await.unwrap();
        assert!(all.starts_with("HTTP/1.1 400"), "{all}");
        assert!(all.ends_with("no upgrade asked"), "{all}");
    }
}
