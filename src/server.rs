//! `wkube server`: wires the store, the API server, the scheduler and the node agent of
//! one control-plane member together, and runs them until a signal or a fatal error.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use tokio::sync::watch;

use control::api::admission::DefaultTolerationSeconds;
use control::api::cluster::ClusterAccess;
use control::api::metrics::ClusterMetrics;
use control::api::routes::Router;
use control::api::{server as https, Api};
use control::controllers;
use control::leadership::run_while_leading;
use control::member_nodes::MemberNodes;
use control::namespaces::NamespaceController;
use control::pki::{ClusterPki, JoinToken};
use control::scheduler::Scheduler;
use control::store::{
    new_member_id, FreshStart, Kek, LogRetention, Member, PeerLinks, Store, StoreConfig,
};
use node::agent::NodeAgent;
use node::client::InProcess;
use node::containerd::streams::ContainerStreams;
use node::images::ImageStore;
use node::pod_logs::NodeLogs;
use node::pod_worker::{Backoff, NodeContext};
use node::resource_metrics::Sampler;

use crate::peer_metrics::PeerMetrics;
use node::runtime::oci::{OciRuntime, OciSettings, PoolSettings};
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
    /// Where to listen (QUIC) for the other control-plane members; default: the API's
    /// address, port + 1.
    #[arg(long)]
    peer_listen: Option<SocketAddr>,
    /// Join the cluster of the member serving the API at this address (host:port), instead
    /// of starting a new cluster. Only used when the data directory is empty.
    #[arg(long, requires = "token")]
    join: Option<String>,
    /// The cluster's join token (printed by its first member).
    #[arg(long, env = "WKUBE_TOKEN")]
    token: Option<JoinToken>,
    /// Raft log entries kept behind the applied index when the log is compacted; a member
    /// further behind than this catches up from a snapshot.
    #[arg(long, default_value_t = LogRetention::default().keep)]
    raft_log_keep: u64,
    /// How many applied entries beyond `--raft-log-keep` trigger a compaction.
    #[arg(long, default_value_t = LogRetention::default().compact_every)]
    raft_compact_every: u64,
    /// Run OCI containers on the containerd serving this CRI socket, instead of the node's
    /// own containerd (started under the data directory on the first OCI pod).
    #[arg(long, value_name = "PATH")]
    containerd_socket: Option<PathBuf>,
    /// A registry reached over plain HTTP (e.g. a test registry on loopback); repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure_registries: Vec<String>,
    /// How long a node may go without heartbeat before it is marked Unknown (NotReady)
    /// and tainted unreachable (Go duration: `40s`, `1m`).
    #[arg(long, default_value = "40s", value_parser = crate::go_duration::parse)]
    node_monitor_grace_period: Duration,
    /// How long this node's heartbeat Lease holds; it is renewed every quarter of it
    /// (kubelet's nodeLeaseDurationSeconds). Keep the grace period of the members above the
    /// renewal interval.
    #[arg(long, default_value_t = node::agent::DEFAULT_LEASE_DURATION_SECONDS,
          value_parser = clap::value_parser!(u64).range(1..))]
    node_lease_duration_seconds: u64,
    /// How many pods this node takes (kubelet's `--max-pods`; WASI pods are light, so a
    /// node may take many more than Kubernetes' default).
    #[arg(long, default_value_t = node::agent::DEFAULT_MAX_PODS)]
    max_pods: u32,
    /// How many pod sandboxes (network namespace, IP and pause container) the node keeps
    /// made ahead of time for its next OCI pods, once it runs containerd: a pod given one
    /// starts in about half the time. Each costs a pause process and its shim. Only with
    /// the node's own containerd (not with `--containerd-socket`); 0 turns it off.
    #[arg(long, default_value_t = 2)]
    sandbox_pool: usize,
    /// How often the node samples its own and its containers' CPU and memory usage for
    /// `kubectl top`, which shows the usage over the last such window (metrics-server's
    /// `--metric-resolution`; Go duration: `10s`, `1s`).
    #[arg(long, alias = "metrics-resolution", value_parser = crate::go_duration::parse,
          default_value = "10s")]
    metric_resolution: Duration,
    /// How long pods without their own toleration stay on an unreachable node (the member
    /// that takes a pod's creation applies it: give every member the same).
    #[arg(long, default_value_t = DefaultTolerationSeconds::default().unreachable)]
    default_unreachable_toleration_seconds: i64,
    /// How long pods without their own toleration stay on a not-ready node (as above).
    #[arg(long, default_value_t = DefaultTolerationSeconds::default().not_ready)]
    default_not_ready_toleration_seconds: i64,
}

impl ServerArgs {
    fn peer_listen(&self) -> SocketAddr {
        self.peer_listen.unwrap_or_else(|| {
            let port = match self.listen.port() {
                0 => 0,
                p => p.wrapping_add(1),
            };
            SocketAddr::new(self.listen.ip(), port)
        })
    }

    fn join_url(&self) -> Option<String> {
        self.join.as_ref().map(|j| {
            if j.starts_with("https://") {
                j.clone()
            } else {
                format!("https://{j}")
            }
        })
    }
}

/// How long a joining member waits to catch up with the cluster before it gives up.
const CATCH_UP: Duration = Duration::from_secs(60);

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
    let store_dir = data.join("store");
    let fresh = !store_dir.exists();
    let join = args.join_url();
    if let (Some(url), Some(token), true) = (&join, &args.token, fresh) {
        let (ca, kek) = crate::join::fetch_ca(url, token).await?;
        ClusterPki::adopt(data, &ca, token)?;
        kek.write(data)?;
    }
    let kek = Kek::load_or_create(data)?;
    let encryption_key = kek.encoded();
    let pki = ClusterPki::load_or_create(data, &names)?;
    // Bound before the kubeconfig is written, so `--listen 127.0.0.1:0` works: the
    // kubeconfig names the port actually taken.
    let listener = https::bind(args.listen).await?;
    let url = format!("https://{}", listener.local_addr()?);
    let kubeconfig = data.join("kubeconfig");

    let start = match &join {
        Some(_) => FreshStart::Join {
            id: new_member_id(),
        },
        None => FreshStart::Bootstrap {
            api_url: url.clone(),
            node_name: node_name.clone(),
        },
    };
    let config = StoreConfig {
        fresh: start,
        retention: LogRetention {
            keep: args.raft_log_keep,
            compact_every: args.raft_compact_every,
        },
        peers: Some(PeerLinks {
            listen: args.peer_listen(),
            ca: pki.ca.clone(),
            certificate: pki.member.clone(),
        }),
        kek: Some(kek),
    };
    let (store, driver) = Store::open_with(&store_dir, config)
        .with_context(|| format!("cannot open the store in {}", store_dir.display()))?;
    if let Some(join_url) = &join {
        join_cluster(&store, join_url, &pki, &url, &node_name).await?;
    }
    catch_up(&store).await?;
    record_addresses(&store, &url, &node_name).await?;
    let api = Api::new(store.clone()).with_default_tolerations(DefaultTolerationSeconds {
        not_ready: args.default_not_ready_toleration_seconds,
        unreachable: args.default_unreachable_toleration_seconds,
    });
    control::bootstrap::ensure(&api).await?;

    let (shutdown_tx, shutdown) = watch::channel(false);
    // Once per cluster: on the raft leader only.
    let scheduler = {
        let api = api.clone();
        tokio::spawn(run_while_leading(store.leading(), move || {
            Scheduler::new(api.clone()).run()
        }))
    };
    let member_nodes = {
        let api = api.clone();
        tokio::spawn(run_while_leading(store.leading(), move || {
            MemberNodes::new(api.clone()).run()
        }))
    };
    let namespaces = {
        let api = api.clone();
        tokio::spawn(run_while_leading(store.leading(), move || {
            NamespaceController::new(api.clone()).run()
        }))
    };
    let workloads = {
        let api = api.clone();
        let settings = controllers::Settings {
            node_monitor_grace_period: args.node_monitor_grace_period,
        };
        tokio::spawn(run_while_leading(store.leading(), move || {
            controllers::run(api.clone(), settings)
        }))
    };

    let log_root = data.join("logs");
    let active_logs = Arc::default();
    let oci = Arc::new(OciRuntime::new(OciSettings {
        dir: data.join("containerd"),
        socket: args.containerd_socket.clone(),
        insecure_registries: args.insecure_registries.clone(),
        sandbox_pool: Some(PoolSettings {
            node: node_name.clone(),
            size: args.sandbox_pool,
        }),
    }));
    let wasm = WasmRuntime::new(&data.join("cache"))?;
    let sampler = Sampler::new(
        &node_name,
        wasm.clone(),
        Some(oci.clone()),
        args.metric_resolution,
    );
    let metrics = Arc::new(ClusterMetrics::new(Arc::new(sampler.measured())));
    let sampling = tokio::spawn(sampler.run(shutdown.clone()));
    let ctx = Arc::new(NodeContext {
        client: Arc::new(InProcess::new(api.clone(), &node_name)),
        runtime: Arc::new(wasm),
        oci: Some(oci.clone()),
        images: ImageStore::open(&crate::image::store_dir(data))?,
        log_root: log_root.clone(),
        volume_root: data.join("pods"),
        host_ip,
        backoff: Backoff::default(),
        insecure_registries: args.insecure_registries.clone(),
        active_logs: Arc::clone(&active_logs),
    });
    let agent = tokio::spawn(
        NodeAgent::new(ctx, &node_name)
            .with_lease_duration(args.node_lease_duration_seconds)
            .with_max_pods(args.max_pods)
            .run(shutdown.clone()),
    );

    let logs = NodeLogs {
        root: log_root,
        active: active_logs,
    };
    let access = ClusterAccess {
        token: pki.join_token()?,
        ca: pki.ca.clone(),
        encryption_key,
    };
    let streams = ContainerStreams::new(oci);
    let router = Arc::new(
        Router::new(api, Some(Arc::new(logs)))
            .with_streams(Arc::new(streams))
            .with_metrics(metrics.clone())
            .with_cluster(access),
    );
    let tls = https::tls_config(&pki)?;
    let server = tokio::spawn(https::serve(listener, tls, router, shutdown.clone()));
    let peer_metrics = PeerMetrics {
        store: store.clone(),
        ca_pem: pki.ca.cert_pem.clone(),
        admin: pki.admin.clone(),
        metrics,
        every: args.metric_resolution,
    };
    let peer_metrics = tokio::spawn(peer_metrics.run(shutdown.clone()));
    pki.write_admin_kubeconfig(&kubeconfig, &url)?;
    eprintln!("wkube is serving the Kubernetes API at {url}");
    eprintln!("export KUBECONFIG={}", kubeconfig.display());
    eprintln!(
        "more members: wkube server --join {} --token {}",
        listener_addr(&url),
        pki.join_token()?
    );

    let driver = tokio::task::spawn_blocking(move || driver.join());
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let outcome = tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = sigterm.recv() => Ok(()),
        r = driver => Err(match r {
            Ok(Ok(Err(e))) => anyhow::Error::new(e).context("the store stopped"),
            other => anyhow::anyhow!("the store stopped: {other:?}"),
        }),
        r = scheduler => Err(anyhow::anyhow!("the scheduler stopped: {r:?}")),
        r = namespaces => Err(anyhow::anyhow!("the namespace controller stopped: {r:?}")),
        r = member_nodes => Err(anyhow::anyhow!("the member-node controller stopped: {r:?}")),
        r = workloads => Err(anyhow::anyhow!("the workload and node controllers stopped: {r:?}")),
        r = agent => Err(anyhow::anyhow!("the node agent stopped: {r:?}")),
        r = sampling => Err(anyhow::anyhow!("the resource metrics sampler stopped: {r:?}")),
        r = peer_metrics => Err(anyhow::anyhow!("gathering the members' resource metrics stopped: {r:?}")),
    };
    let _ = shutdown_tx.send(true);
    let _ = server.await;
    outcome
}

fn listener_addr(url: &str) -> &str {
    url.trim_start_matches("https://")
}

/// Has this (new) member added to the cluster at `join_url`. A member that already knows
/// its cluster (a restart) skips the request.
async fn join_cluster(
    store: &Store,
    join_url: &str,
    pki: &ClusterPki,
    api_url: &str,
    node_name: &str,
) -> anyhow::Result<()> {
    if !store.status().await?.members.is_empty() {
        return Ok(());
    }
    let peer_addr = store
        .peer_addr()
        .context("a joining member needs member links")?;
    let me = Member {
        id: store.member_id(),
        peer_addr,
        api_url: api_url.to_string(),
        node_name: node_name.to_string(),
    };
    let deadline = Instant::now() + CATCH_UP;
    // Members joining at the same time take turns: raft has one membership change in
    // flight at a time.
    while let Err(e) = crate::join::add_member(join_url, pki, &me).await {
        if Instant::now() > deadline {
            return Err(e);
        }
        tracing::info!(error = %e, "not added yet; trying again");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Waits until this member knows its cluster and has applied what the cluster committed:
/// after a restart or a join, nothing is served from stale state.
async fn catch_up(store: &Store) -> anyhow::Result<()> {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        match store.read_barrier().await {
            Ok(()) if !store.status().await?.members.is_empty() => return Ok(()),
            Ok(()) | Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => return other.context("catching up with the cluster").map(drop),
        }
    }
}

/// Brings this member's record up to date when it restarted on other addresses (the others
/// found it already, where it dialed in from; the record makes that last).
async fn record_addresses(store: &Store, api_url: &str, node_name: &str) -> anyhow::Result<()> {
    let Some(peer_addr) = store.peer_addr() else {
        return Ok(());
    };
    let me = Member {
        id: store.member_id(),
        peer_addr,
        api_url: api_url.to_string(),
        node_name: node_name.to_string(),
    };
    let recorded = store
        .status()
        .await?
        .members
        .into_iter()
        .find(|m| m.member.id == me.id);
    if recorded.is_some_and(|r| r.member != me) {
        tracing::info!(peer = %me.peer_addr, api = %me.api_url, "recording this member's new addresses");
        // Another membership change may be in flight (a promotion): take turns.
        let deadline = Instant::now() + CATCH_UP;
        while let Err(e) = store.update_member(me.clone()).await {
            if Instant::now() > deadline {
                return Err(e.into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}
