//! `exec` and `attach`: the seam through which the API server reaches a running
//! container's streams on the node that runs it (kubelet's role), and the parsing of the
//! requests `kubectl exec` / `kubectl attach` send.
//!
//! As in Kubernetes, the node answers with the URL of the container runtime's streaming
//! server (CRI `Exec`/`Attach`), and the API server proxies the client's upgraded
//! connection (SPDY or WebSocket) there byte for byte ([`super::upgrade`]): the stream
//! protocol is between kubectl and the runtime.

use futures::future::BoxFuture;
use serde_json::Value;

use super::errors::ApiError;

/// Which stream subresource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Exec,
    Attach,
}

/// The parameters of an `exec` or `attach` request (`PodExecOptions`, `PodAttachOptions`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamRequest {
    pub container: String,
    /// Only for `exec`: the command to run.
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl StreamRequest {
    /// Parses the query string; every parameter may repeat (`command` does), as Go's
    /// `url.Values`.
    pub fn parse(kind: StreamKind, query: Option<&str>) -> Result<StreamRequest, ApiError> {
        let mut r = StreamRequest::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let on = matches!(&*v, "true" | "1");
            match &*k {
                "container" => r.container = v.into_owned(),
                "command" => r.command.push(v.into_owned()),
                "stdin" => r.stdin = on,
                "stdout" => r.stdout = on,
                "stderr" => r.stderr = on,
                "tty" => r.tty = on,
                _ => {}
            }
        }
        // `ValidatePodExecOptions` / `ValidatePodAttachOptions`.
        if kind == StreamKind::Exec && r.command.is_empty() {
            return Err(ApiError::BadRequest(
                "you must specify at least 1 command".into(),
            ));
        }
        if !(r.stdin || r.stdout || r.stderr) {
            return Err(ApiError::BadRequest(
                "you must specify at least 1 of stdin, stdout, stderr".into(),
            ));
        }
        if r.tty && r.stderr {
            // kubectl never asks for both; Kubernetes refuses it.
            return Err(ApiError::BadRequest(
                "tty and stderr cannot both be true".into(),
            ));
        }
        Ok(r)
    }
}

pub trait PodStreams: Send + Sync + 'static {
    /// The URL of the runtime's streaming endpoint for `request` on `pod`
    /// (`request.container` is one of its containers, already checked).
    fn stream_url<'a>(
        &'a self,
        pod: &'a Value,
        kind: StreamKind,
        request: &'a StreamRequest,
    ) -> BoxFuture<'a, Result<String, ApiError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_like_kubernetes() {
        let q =
            "command=sh&command=-c&command=echo%20hi&container=web&stdin=true&stdout=true&tty=true";
        let r = StreamRequest::parse(StreamKind::Exec, Some(q)).unwrap();
        assert_eq!(r.command, ["sh", "-c", "echo hi"]);
        assert_eq!(r.container, "web");
        assert!(r.stdin && r.stdout && r.tty && !r.stderr);
        let attach = StreamRequest::parse(StreamKind::Attach, Some("stdout=true")).unwrap();
        assert!(attach.command.is_empty());
        let refused = [
            (
                StreamKind::Exec,
                "stdout=true",
                "you must specify at least 1 command",
            ),
            (
                StreamKind::Exec,
                "command=ls",
                "you must specify at least 1 of stdin, stdout, stderr",
            ),
            (
                StreamKind::Exec,
                "command=ls&stdout=true&stderr=true&tty=true",
                "tty and stderr cannot both be true",
            ),
        ];
        for (kind, q, want) in refused {
            let e = StreamRequest::parse(kind, Some(q)).unwrap_err();
            assert!(e.to_string().contains(want), "{q}: {e}");
        }
    }
}
