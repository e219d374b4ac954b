//! `wkube logs`: a container's log through the pod's `log` subresource, copied to stdout as
//! it arrives (so `-f` shows each line when the container writes it).

use std::io::Write as _;

use clap::Args;
use futures::AsyncReadExt as _;

use super::Connection;

#[derive(Args)]
pub struct LogsArgs {
    /// The pod.
    pod: String,
    /// The container; needed when the pod has several.
    #[arg(short = 'c', long)]
    container: Option<String>,
    /// Keep streaming until the container ends.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only the last N lines; -1 for all.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    tail: i64,
    /// The log of the previous, terminated instance of the container.
    #[arg(short = 'p', long)]
    previous: bool,
    /// Prefix each line with its RFC 3339 timestamp.
    #[arg(long)]
    timestamps: bool,
    #[command(flatten)]
    conn: Connection,
}

impl LogsArgs {
    /// The `log` subresource's query, as kubectl sends it.
    fn query(&self) -> String {
        let mut q = Vec::new();
        if let Some(c) = &self.container {
            q.push(format!("container={c}"));
        }
        for (set, name) in [
            (self.follow, "follow"),
            (self.previous, "previous"),
            (self.timestamps, "timestamps"),
        ] {
            if set {
                q.push(format!("{name}=true"));
            }
        }
        if self.tail >= 0 {
            q.push(format!("tailLines={}", self.tail));
        }
        q.join("&")
    }
}

pub async fn run(args: LogsArgs) -> anyhow::Result<()> {
    let cluster = args.conn.connect().await?;
    let pods = cluster.discovery.for_name("pods")?;
    let ns = args.conn.namespace_or(&cluster);
    let path = format!("{}/{}/log?{}", pods.path(Some(&ns)), args.pod, args.query());
    let body = cluster.stream(&path).await?;
    futures::pin_mut!(body);
    let mut out = std::io::stdout();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = body.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])?;
        out.flush()?;
    }
}
