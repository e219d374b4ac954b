//! `wkube version`: this binary's version, then the server's `/version`.

use clap::Args;

use super::Connection;

#[derive(Args)]
pub struct VersionArgs {
    #[command(flatten)]
    conn: Connection,
}

pub async fn run(args: VersionArgs) -> anyhow::Result<()> {
    // Printed before connecting, so it shows even when no server answers (as kubectl's).
    println!("Client Version: v{}", env!("CARGO_PKG_VERSION"));
    let cluster = args.conn.connect().await?;
    let server = cluster.server_version().await?;
    println!(
        "Server Version: {}",
        server["gitVersion"].as_str().unwrap_or("<unknown>")
    );
    Ok(())
}
