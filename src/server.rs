//! `wkube server`: wires the store, the API server, the scheduler and the node agent of
//! one control-plane member together, and runs them until a signal or a fatal error.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use tokio::sync::watch;

use control::api::routes::Router;
use control::api::{server as https, Api};
use control::namespaces::NamespaceController;
use control::pki::ClusterPki;
use control::scheduler::Scheduler;
use control::store::Store;
use node::agent::NodeAgent;
use node::client::InProcess;
use node::images::ImageStore;
use node::pod_logs::NodeLogs;
use node::pod_worker::{Backoff, NodeContext};
use node::runtime::wasm::WasmRuntime;

#[derive(Args)]
pub struct ServerArgs {
    /// Where the member keeps its state (store, certificates, images, logs).
    #[arg(long, env = "WKUBE_DATA_DIR", default_value_os_t = crate::default_data_dir())]
    data_dir: PathBuf,
    /// Address of the Kubernetes API (HTTPS).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Name of this machine's Node object.
    #[arg(long)]
    node_name: Option<String>,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_lowercase())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "wkube".into())
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WKUBE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(args))
}

async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    let data = &args.data_dir;
    std::fs::create_dir_all(data)
        .with_context(|| format!("cannot create data directory {}", data.display()))?;
    let node_name = args.node_name.clone().unwrap_or_else(hostname);
    let host_ip = args.listen.ip().to_string();
    let mut names = vec!["localhost".to_string(), host_ip.clone(), node_name.clone()];
    if !args.listen.ip().is_loopback() {
        names.push("127.0.0.1".into());
    }
    let pki = ClusterPki::load_or_create(data, &names)?;
    // Bound before the kubeconfig is written, so `--listen 127.0.0.1:0` works: the
    // kubeconfig names the port actually taken.
    let listener = https::bind(args.listen).await?;
    let url = format!("https://{}", listener.local_addr()?);
    let kubeconfig = data.join("kubeconfig");

    let (store, driver) = Store::open(&data.join("store"))
        .with_context(|| format!("cannot open the store in {}", data.join("store").display()))?;
    let api = Api::new(store);
    control::bootstrap::ensure(&api).await?;

    let (shutdown_tx, shutdown) = watch::channel(false);
    let scheduler = tokio::spawn(Scheduler::new(api.clone()).run());
    let namespaces = tokio::spawn(NamespaceController::new(api.clone()).run());

    let log_root = data.join("logs");
    let active_logs = Arc::default();
    let ctx = Arc::new(NodeContext {
        client: Arc::new(InProcess::new(api.clone(), &node_name)),
        runtime: Arc::new(WasmRuntime::new(&data.join("cache"))?),
        images: ImageStore::open(&crate::image::store_dir(data))?,
        log_root: log_root.clone(),
        host_ip,
        backoff: Backoff::default(),
        active_logs: Arc::clone(&active_logs),
    });
    let agent = tokio::spawn(NodeAgent::new(ctx, &node_name).run(shutdown.clone()));

    let router = Arc::new(Router::new(
        api,
        Some(Arc::new(NodeLogs {
            root: log_root,
            active: active_logs,
        })),
    ));
    let tls = https::tls_config(&pki)?;
    let server = tokio::spawn(https::serve(listener, tls, router, shutdown.clone()));
    pki.write_admin_kubeconfig(&kubeconfig, &url)?;
    eprintln!("wkube is serving the Kubernetes API at {url}");
    eprintln!("export KUBECONFIG={}", kubeconfig.display());

    let driver = tokio::task::spawn_blocking(move || driver.join());
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let outcome = tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = sigterm.recv() => Ok(()),
        r = driver => Err(anyhow::anyhow!("the store stopped: {r:?}")),
        r = scheduler => Err(anyhow::anyhow!("the scheduler stopped: {r:?}")),
        r = namespaces => Err(anyhow::anyhow!("the namespace controller stopped: {r:?}")),
        r = agent => Err(anyhow::anyhow!("the node agent stopped: {r:?}")),
    };
    let _ = shutdown_tx.send(true);
    let _ = server.await;
    outcome
}
