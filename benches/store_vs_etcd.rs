//! The replicated store against etcd, side by side in one run: three wkube members and three
//! etcd 3.4 members (Debian's `etcd-server`), all on loopback.
//!
//! One load generator drives both: `clients` concurrent clients, each writing 1 KiB objects
//! one after another, spread over the three members. wkube is measured through its whole API
//! (HTTPS, JSON, validation: creating ConfigMaps with the `kube` client); etcd through its own
//! v3 API (puts through its HTTP gateway, plain HTTP). Then, for each: `kill -9` of the leader
//! and the time until the next write succeeds, with every surviving member tried in turn.
//!
//! Usage: `cargo bench --bench store_vs_etcd` (needs `etcd` on PATH: `apt-get install
//! etcd-server`).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::future::join_all;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client as HttpClient};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

const VALUE: usize = 1024;
/// The most concurrent writers on one member (100 clients over three members).
const CLIENTS_PER_MEMBER: usize = 34;
/// Writes per phase, whatever the number of clients, unless `WKUBE_BENCH_WRITES` says
/// otherwise (more writes give steadier tails when comparing builds).
const WRITES: usize = 10_000;
/// Bound on every wait (a cluster to form, a write to succeed after a kill).
const PATIENCE: Duration = Duration::from_secs(60);
const RUN_LIMIT: Duration = Duration::from_secs(600);
/// How long a write after a leader kill may take before the next attempt.
const ATTEMPT: Duration = Duration::from_millis(500);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut etcd = Etcd::start(dir.path())?;
    let mut wkube = Wkube::start(dir.path()).await?;
    let result = tokio::time::timeout(RUN_LIMIT, run(&mut etcd, &mut wkube)).await;
    etcd.stop();
    wkube.stop();
    result.map_err(|_| anyhow::anyhow!("the bench took more than {RUN_LIMIT:?}"))?
}

async fn run(etcd: &mut Etcd, wkube: &mut Wkube) -> anyhow::Result<()> {
    println!("| system | clients | writes/s | p50 | p99 | CPU per write | client CPU per write |");
    println!("|---|---|---|---|---|---|---|");
    for clients in [1, 100] {
        // Interleaved, so both see the same state of the machine.
        let e = load(&etcd.members, clients, |c, i| {
            etcd.put(c % 3, format!("bench/{clients}/{c}/{i}"))
        })
        .await?;
        e.print("etcd 3.4 (v3 API, HTTP gateway)", clients);
        let w = load(&wkube.members, clients, |c, i| {
            wkube.create(c % 3, c / 3, format!("b{clients}-{c}-{i}"))
        })
        .await?;
        w.print("wkube (Kubernetes API, HTTPS)", clients);
    }
    let e = failover("etcd", etcd.kill_leader().await?, |m, i| {
        etcd.put(m, format!("failover/{i}"))
    })
    .await?;
    let w = failover("wkube", wkube.kill_leader().await?, |m, i| {
        wkube.create(m, 0, format!("failover-{i}"))
    })
    .await?;
    println!("\n| system | leader kill -> first successful write |\n|---|---|\n| etcd 3.4 | {} |\n| wkube | {} |", ms(e), ms(w));
    Ok(())
}

struct Figures {
    latencies: Vec<Duration>,
    wall: Duration,
    errors: usize,
    /// CPU time the members spent, all of them together (less noisy than the rates on a
    /// shared machine).
    cpu: Duration,
    /// CPU time of this load generator: on a machine with few cores it competes with the
    /// members, and wkube's clients (TLS, the `kube` client) cost more than etcd's.
    client_cpu: Duration,
}

impl Figures {
    fn print(&self, system: &str, clients: usize) {
        let mut l = self.latencies.clone();
        l.sort();
        let at = |q: f64| l[((l.len() - 1) as f64 * q) as usize];
        let rate = l.len() as f64 / self.wall.as_secs_f64();
        let cpu = self.cpu / l.len().max(1) as u32;
        let client_cpu = self.client_cpu / l.len().max(1) as u32;
        println!(
            "| {system} | {clients} | {rate:.0} | {} | {} | {} | {} |{}",
            ms(at(0.5)),
            ms(at(0.99)),
            ms(cpu),
            ms(client_cpu),
            if self.errors > 0 {
                format!(" ({} errors)", self.errors)
            } else {
                String::new()
            }
        );
    }
}

/// `clients` concurrent writers, [`writes`] in all; each writer waits for each answer.
/// Each writer's connection is made before the clock starts.
async fn load<F, Fut>(members: &Members, clients: usize, write: F) -> anyhow::Result<Figures>
where
    F: Fn(usize, usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let per_client = writes() / clients;
    let write = &write;
    // One unmeasured write per client first, so every client has its connection (and
    // wkube's its TLS session): what is measured is writing, not connecting.
    let warm = join_all((0..clients).map(|c| write(c, per_client))).await;
    warm.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let cpu_before = members.cpu_time()?;
    let client_before = cpu_of(std::process::id())?;
    let started = Instant::now();
    let results = join_all((0..clients).map(|c| async move {
        let mut latencies = Vec::with_capacity(per_client);
        let mut errors = 0;
        for i in 0..per_client {
            let sent = Instant::now();
            match write(c, i).await {
                Ok(()) => latencies.push(sent.elapsed()),
                Err(_) => errors += 1,
            }
        }
        (latencies, errors)
    }))
    .await;
    let wall = started.elapsed();
    let cpu = members.cpu_time()?.saturating_sub(cpu_before);
    let client_cpu = cpu_of(std::process::id())?.saturating_sub(client_before);
    let errors = results.iter().map(|r| r.1).sum();
    Ok(Figures {
        latencies: results.into_iter().flat_map(|r| r.0).collect(),
        wall,
        errors,
        cpu,
        client_cpu,
    })
}

fn writes() -> usize {
    std::env::var("WKUBE_BENCH_WRITES")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(WRITES)
}

/// Time from killing the leader (member `killed`) to the first write that succeeds through
/// one of the others.
async fn failover<F, Fut>(
    system: &str,
    killed: (usize, Instant),
    write: F,
) -> anyhow::Result<Duration>
where
    F: Fn(usize, usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let (leader, at) = killed;
    let others: Vec<usize> = (0..3).filter(|m| *m != leader).collect();
    for i in 0.. {
        if at.elapsed() > PATIENCE {
            anyhow::bail!("{system}: no write succeeded within {PATIENCE:?} of the leader kill");
        }
        // A short bound per attempt, the same for both: a server may hold a write for
        // seconds while it has no leader (etcd: up to its request timeout, 7 s).
        if let Ok(Ok(())) = tokio::time::timeout(ATTEMPT, write(others[i % 2], i)).await {
            return Ok(at.elapsed());
        }
    }
    unreachable!()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn value() -> String {
    "x".repeat(VALUE)
}

async fn eventually<T, Fut: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> Fut,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// User and system CPU time of process `pid`, from `/proc/<pid>/stat` (fields 14 and 15, in
/// clock ticks of 1/100 s, Linux's USER_HZ).
fn cpu_of(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name, field 2, is in parentheses and may hold spaces.
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let mut ticks = 0u64;
    for field in [11, 12] {
        ticks += fields
            .get(field)
            .ok_or_else(|| anyhow::anyhow!("short /proc stat: {stat}"))?
            .parse::<u64>()?;
    }
    Ok(Duration::from_millis(ticks * 10))
}

/// The processes of one cluster's members.
struct Members(Vec<Option<Child>>);

impl Members {
    /// `kill -9` of member `i`; returns when it was sent.
    fn kill(&mut self, i: usize) -> anyhow::Result<Instant> {
        let mut child = self.0[i]
            .take()
            .ok_or_else(|| anyhow::anyhow!("member {i} is not running"))?;
        let _ = child.kill();
        let killed = Instant::now();
        child.wait()?;
        Ok(killed)
    }

    /// User and system CPU time of the running members together.
    fn cpu_time(&self) -> anyhow::Result<Duration> {
        let mut total = Duration::ZERO;
        for child in self.0.iter().flatten() {
            total += cpu_of(child.id())?;
        }
        Ok(total)
    }

    fn stop(&mut self) {
        for mut child in self.0.iter_mut().filter_map(Option::take) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Etcd {
    members: Members,
    urls: Vec<String>,
    http: HttpClient<HttpConnector, Full<Bytes>>,
}

impl Etcd {
    fn start(dir: &Path) -> anyhow::Result<Etcd> {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let cluster: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}"))
            .collect();
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let log = std::fs::File::create(dir.join(format!("etcd-{i}.log")))?;
            let child = Command::new("etcd")
                .args(["--name", &format!("e{i}")])
                .arg("--data-dir")
                .arg(dir.join(format!("etcd-{i}")))
                .args([
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                ])
                .args([
                    "--advertise-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                ])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                ])
                .args([
                    "--initial-cluster",
                    &cluster.join(","),
                    "--initial-cluster-state",
                    "new",
                ])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|e| anyhow::anyhow!("starting etcd (apt-get install etcd-server): {e}"))?;
            members.push(Some(child));
        }
        let urls = ports
            .iter()
            .map(|(client, _)| format!("http://127.0.0.1:{client}"))
            .collect();
        let http = HttpClient::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        Ok(Etcd {
            members: Members(members),
            urls,
            http,
        })
    }

    async fn call(&self, member: usize, path: &str, body: Value) -> anyhow::Result<Value> {
        let request = http::Request::post(format!("{}{path}", self.urls[member]))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))?;
        let response =
            tokio::time::timeout(Duration::from_secs(10), self.http.request(request)).await??;
        let ok = response.status().is_success();
        let body: Value =
            serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
        anyhow::ensure!(ok && body.get("error").is_none(), "etcd: {body}");
        Ok(body)
    }

    async fn put(&self, member: usize, key: String) -> anyhow::Result<()> {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        self.call(
            member,
            "/v3/kv/put",
            json!({"key": b64(&key), "value": b64(&value())}),
        )
        .await
        .map(drop)
    }

    async fn kill_leader(&mut self) -> anyhow::Result<(usize, Instant)> {
        let leader = eventually("an etcd leader", || async {
            for m in 0..3 {
                let Ok(status) = self.call(m, "/v3/maintenance/status", json!({})).await else {
                    continue;
                };
                if status["leader"] == status["header"]["member_id"] {
                    return Some(m);
                }
            }
            None
        })
        .await?;
        Ok((leader, self.members.kill(leader)?))
    }

    fn stop(&mut self) {
        self.members.stop();
    }
}

struct Wkube {
    members: Members,
    kubeconfigs: Vec<PathBuf>,
    /// Per member, one API client per concurrent writer.
    apis: Vec<Vec<Api<ConfigMap>>>,
}

/// The `wkube` binary built with this bench, or `WKUBE_BENCH_BIN` to compare builds.
fn wkube_bin() -> PathBuf {
    std::env::var_os("WKUBE_BENCH_BIN")
        .map_or_else(|| env!("CARGO_BIN_EXE_wkube").into(), PathBuf::from)
}

impl Wkube {
    async fn start(dir: &Path) -> anyhow::Result<Wkube> {
        let mut members = Vec::new();
        let mut kubeconfigs = Vec::new();
        let mut first_api = String::new();
        for i in 0..3 {
            let data = dir.join(format!("wkube-{i}"));
            let api = format!("127.0.0.1:{}", free_port());
            let mut command = Command::new(wkube_bin());
            command
                .args([
                    "server",
                    "--listen",
                    &api,
                    "--peer-listen",
                    &format!("127.0.0.1:{}", free_port()),
                ])
                .args(["--node-name", &format!("w{i}")])
                .arg("--data-dir")
                .arg(&data)
                .env("WKUBE_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join(format!("wkube-{i}.log")))?);
            if i > 0 {
                let token = std::fs::read_to_string(dir.join("wkube-0/tls/token"))?;
                let ca = std::fs::read_to_string(dir.join("wkube-0/tls/ca.crt"))?;
                let token = control::pki::JoinToken {
                    ca_hash: control::pki::ca_hash(&ca),
                    secret: token.trim().into(),
                };
                command.args(["--join", &first_api, "--token", &token.to_string()]);
            } else {
                first_api = api.clone();
            }
            members.push(Some(command.spawn()?));
            let kubeconfig = data.join("kubeconfig");
            eventually("a wkube member to serve", || async {
                kubeconfig.exists().then_some(())
            })
            .await?;
            kubeconfigs.push(kubeconfig);
        }
        // A client of its own, so a connection of its own, for each concurrent writer (as
        // etcd's side has an HTTP/1.1 connection per request in flight).
        let mut apis = Vec::new();
        for kubeconfig in &kubeconfigs {
            let config = kube::Config::from_custom_kubeconfig(
                kube::config::Kubeconfig::read_from(kubeconfig)?,
                &Default::default(),
            )
            .await?;
            let mut member = Vec::new();
            for _ in 0..CLIENTS_PER_MEMBER {
                member.push(Api::namespaced(
                    kube::Client::try_from(config.clone())?,
                    "default",
                ));
            }
            apis.push(member);
        }
        Ok(Wkube {
            members: Members(members),
            kubeconfigs,
            apis,
        })
    }

    /// Creates a ConfigMap through `member`, on the connection of writer `client`.
    async fn create(&self, member: usize, client: usize, name: String) -> anyhow::Result<()> {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name);
        cm.data = Some([("value".to_string(), value())].into());
        let params = PostParams::default();
        let api = &self.apis[member][client % CLIENTS_PER_MEMBER];
        let created = api.create(&params, &cm);
        tokio::time::timeout(Duration::from_secs(10), created).await??;
        Ok(())
    }

    async fn kill_leader(&mut self) -> anyhow::Result<(usize, Instant)> {
        let kubeconfig = self.kubeconfigs[0].clone();
        let leader = eventually("a wkube leader", || async {
            let out = Command::new(wkube_bin())
                .args(["cluster", "status"])
                .env("KUBECONFIG", &kubeconfig)
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let api = text
                .lines()
                .find(|l| l.split_whitespace().nth(2) == Some("Leader"))?
                .split_whitespace()
                .nth(1)?
                .to_string();
            self.kubeconfigs.iter().position(|k| {
                std::fs::read_to_string(k).is_ok_and(|t| t.contains(&format!("server: {api}")))
            })
        })
        .await?;
        Ok((leader, self.members.kill(leader)?))
    }

    fn stop(&mut self) {
        self.members.stop();
    }
}
