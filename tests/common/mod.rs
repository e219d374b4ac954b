//! Test harness: real `wkube server` processes on loopback, driven by the real `kubectl`.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod registry;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long one kubectl call may take; the longest waits in the tests (`rollout status`,
/// `wait`) have timeouts well below it.
const KUBECTL_DEADLINE: Duration = Duration::from_secs(180);

/// The kubectl versions the acceptance tests run with: the oldest and the newest here.
pub const KUBECTL_VERSIONS: &[&str] = &["1.27", "1.33"];

/// One test per kubectl version under test (the oldest and the newest), named
/// `<flow>::oldest_kubectl` and `<flow>::newest_kubectl` (`#[macro_use] mod common;`).
#[allow(unused_macros)] // each test binary uses a different part of the harness
macro_rules! with_each_kubectl {
    ($($flow:ident),*) => {$(
        mod $flow {
            #[test]
            fn oldest_kubectl() {
                super::$flow(super::common::KUBECTL_VERSIONS[0]);
            }

            #[test]
            fn newest_kubectl() {
                super::$flow(super::common::KUBECTL_VERSIONS[1]);
            }
        }
    )*};
}

/// The cells of each line of kubectl's table output, the header first.
pub fn table_rows(table: &str) -> Vec<Vec<&str>> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect()
}

pub fn kubectl_path(version: &str) -> PathBuf {
    let kubectl = which("kubectl").expect("kubectl on PATH");
    let dir = std::fs::canonicalize(&kubectl).expect("resolve kubectl");
    dir.parent()
        .expect("kubectl dir")
        .join(format!("kubectl.{version}"))
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(bin))
            .find(|p| p.exists())
    })
}

pub fn guest(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("guests/out")
        .join(format!("{name}.wasm"));
    assert!(p.exists(), "{} missing: run guests/build.sh", p.display());
    p
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Which of `members` leads (asked of `members[0]`, which must be up).
pub fn leader(members: &[Server]) -> usize {
    wait_for("a leader", Duration::from_secs(30), || {
        let rows = members[0].cluster_status();
        let api = rows.iter().find(|r| r[2] == "Leader")?[1]
            .trim_start_matches("https://")
            .to_string();
        members.iter().position(|m| m.api_addr() == api)
    })
}

pub struct Server {
    /// Removes the sandboxes and the containerd the node may have started (they outlive a
    /// killed server); declared before `data_dir` so it runs before that is deleted.
    _containerd: node::testing::ContainerdCleanup,
    pub data_dir: tempfile::TempDir,
    child: Option<Child>,
    kubectl_cache: tempfile::TempDir,
    /// `wkube server` arguments besides `--data-dir`, the same at every (re)start.
    args: Vec<String>,
}

/// A port nothing listens on right now, over TCP (the API) or UDP (QUIC between members),
/// for members that must keep their addresses across restarts.
/// A loopback port free for TCP and UDP now, taken from below the kernel's ephemeral range:
/// a port-0 bind by any other process never gets it, so a member that restarts on the same
/// port later finds it still free. Starting points are random so that test processes
/// running side by side rarely try the same port.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, span) = (10_000u32, u32::from(ephemeral_low.max(10_001)) - 10_000);
    let start = RandomState::new().hash_one(std::process::id()) as u32;
    (0..span)
        .map(|i| (low + (start % span + i) % span) as u16)
        .find(|&port| {
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
                && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        })
        .expect("a free port below the ephemeral range")
}

impl Server {
    /// A one-member cluster on ports the OS picks.
    pub fn start() -> Server {
        Server::start_with(&["--listen", "127.0.0.1:0", "--node-name", "node-1"])
    }

    /// A one-member cluster that pulls from the registry at `address` over plain HTTP.
    pub fn pulling_from(address: &str) -> Server {
        Server::start_with(&[
            "--listen",
            "127.0.0.1:0",
            "--node-name",
            "node-1",
            "--insecure-registry",
            address,
        ])
    }

    pub fn start_with(args: &[&str]) -> Server {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let mut s = Server {
            _containerd: node::testing::ContainerdCleanup(data_dir.path().join("containerd")),
            data_dir,
            child: None,
            kubectl_cache: tempfile::tempdir().expect("tempdir"),
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        s.spawn();
        s
    }

    /// A control-plane member named `name` on fixed loopback ports; the first one starts a
    /// cluster, the others join `join`'s.
    pub fn start_member(name: &str, join: Option<&Server>) -> Server {
        Server::start_member_with(name, join, &[])
    }

    /// [`Server::start_member`] with more `wkube server` arguments.
    pub fn start_member_with(name: &str, join: Option<&Server>, extra: &[&str]) -> Server {
        let listen = format!("127.0.0.1:{}", free_port());
        let peers = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            "--listen",
            &listen,
            "--peer-listen",
            &peers,
            "--node-name",
            name,
        ];
        args.extend_from_slice(extra);
        let (join_addr, token);
        if let Some(first) = join {
            join_addr = first.api_addr();
            token = first.join_token();
            args.extend(["--join", &join_addr, "--token", &token]);
        }
        Server::start_with(&args)
    }

    /// Where this server serves the API (`host:port`), from its kubeconfig.
    pub fn api_addr(&self) -> String {
        let kubeconfig = std::fs::read_to_string(self.kubeconfig()).expect("kubeconfig");
        let server = kubeconfig
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "));
        server
            .expect("a server line")
            .trim_start_matches("https://")
            .to_string()
    }

    /// The join token the server printed at start.
    pub fn join_token(&self) -> String {
        let log = self.server_log();
        let token = log.split_whitespace().find(|w| w.starts_with("K10"));
        token.expect("a join token in the server log").to_string()
    }

    /// The value of a `wkube server` argument this server was started with.
    pub fn arg(&self, name: &str) -> &str {
        let at = self
            .args
            .iter()
            .position(|a| a == name)
            .unwrap_or_else(|| panic!("no {name}"));
        &self.args[at + 1]
    }

    /// `wkube cluster status` as this server's member sees it, one row per member: ID, API,
    /// ROLE, VOTER, TERM, APPLIED, LAG.
    pub fn cluster_status(&self) -> Vec<Vec<String>> {
        let out = self
            .wkube()
            .args(["cluster", "status"])
            .output()
            .expect("wkube cluster status");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .skip(1)
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect()
    }

    /// Every ConfigMap in `default` as `name=resourceVersion `, read through this server.
    pub fn config_maps(&self) -> String {
        let path = "jsonpath={range .items[*]}{.metadata.name}={.metadata.resourceVersion} {end}";
        self.kubectl_ok("1.33", &["get", "configmaps", "-o", path])
    }

    /// Gives a stopped member new ports for its next start.
    pub fn move_to_new_ports(&mut self) {
        for flag in ["--listen", "--peer-listen"] {
            let at = self
                .args
                .iter()
                .position(|a| a == flag)
                .unwrap_or_else(|| panic!("no {flag}"));
            self.args[at + 1] = format!("127.0.0.1:{}", free_port());
        }
    }

    /// The port of this member's QUIC listener for the others.
    pub fn peer_port(&self) -> u16 {
        let addr = self.arg("--peer-listen");
        addr.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port")
    }

    fn node_name(&self) -> &str {
        self.arg("--node-name")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.path().join("kubeconfig")
    }

    /// A Rust client (kube-rs) with this server's admin kubeconfig.
    pub async fn kube_client(&self) -> kube::Client {
        let kubeconfig =
            kube::config::Kubeconfig::read_from(self.kubeconfig()).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("config");
        kube::Client::try_from(config).expect("client")
    }

    pub fn wkube(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_wkube"));
        c.env("KUBECONFIG", self.kubeconfig())
            .env("WKUBE_DATA_DIR", self.data_dir.path());
        c
    }

    /// Starts the server process; returns once its API answers.
    pub fn spawn(&mut self) {
        self.spawn_in_background();
        self.wait_until_serving();
    }

    /// Starts the server process without waiting for it (a member that cannot serve until
    /// others are back).
    pub fn spawn_in_background(&mut self) {
        let _ = std::fs::remove_file(self.kubeconfig());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.path().join("server.log"))
            .expect("server log");
        let child = Command::new(env!("CARGO_BIN_EXE_wkube"))
            .arg("server")
            .args(&self.args)
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .env("WKUBE_LOG", "info,control=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn wkube server");
        self.child = Some(child);
    }

    /// Waits until the server's API answers and its node is Ready.
    pub fn wait_until_serving(&mut self) {
        wait_for("the server's kubeconfig", Duration::from_secs(60), || {
            self.assert_alive();
            self.kubeconfig().exists().then_some(())
        });
        wait_for("the node to be Ready", Duration::from_secs(30), || {
            let ready = "jsonpath={.status.conditions[?(@.type=='Ready')].status}";
            let out = self.kubectl("1.33", &["get", "node", self.node_name(), "-o", ready]);
            (out.status.success() && String::from_utf8_lossy(&out.stdout).contains("True"))
                .then_some(())
        });
    }

    fn assert_alive(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "wkube server exited ({status}); log:\n{}",
                    self.server_log()
                );
            }
        }
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("server.log")).unwrap_or_default()
    }

    /// Waits for the server to exit on its own; returns its status and log.
    pub fn wait_exit(&mut self, timeout: Duration) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().expect("a running server");
        let status = wait_for("the server to exit", timeout, || {
            child.try_wait().expect("try_wait")
        });
        (status, self.server_log())
    }

    /// `kill -9`: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9");
            child.wait().expect("reap");
        }
    }

    pub fn kubectl(&self, version: &str, args: &[&str]) -> Output {
        self.kubectl_with_stdin(version, args, None)
    }

    pub fn kubectl_with_stdin(&self, version: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = Command::new(kubectl_path(version));
        c.env("KUBECONFIG", self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.kubectl_cache.path().join(version))
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn kubectl");
        if let Some(input) = stdin {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        // A kubectl that never returns would hang the test binary with no word of which
        // step it was: past the deadline it is killed and the test fails naming it.
        let pid = child.id();
        let (done, output) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(child.wait_with_output()));
        match output.recv_timeout(KUBECTL_DEADLINE) {
            Ok(out) => out.expect("kubectl output"),
            Err(_) => {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                panic!(
                    "kubectl {} did not return within {KUBECTL_DEADLINE:?}",
                    args.join(" ")
                );
            }
        }
    }

    /// Runs kubectl and returns stdout, failing the test with stderr on error.
    /// Waits until `count` nodes report Ready.
    pub fn wait_ready_nodes(&self, version: &str, count: usize, timeout: Duration) {
        let ready = "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}";
        wait_for(&format!("{count} ready nodes"), timeout, || {
            let out = self.kubectl_ok(version, &["get", "nodes", "-o", ready]);
            (out.split_whitespace().filter(|s| *s == "True").count() == count).then_some(())
        });
    }

    /// `kubectl apply -f -` of `manifest`, which must succeed.
    pub fn apply(&self, version: &str, manifest: &str) {
        let out = self.kubectl_with_stdin(version, &["apply", "-f", "-"], Some(manifest));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn kubectl_ok(&self, version: &str, args: &[&str]) -> String {
        let out = self.kubectl(version, args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn import(&self, guest_name: &str, reference: &str) {
        let out = self
            .wkube()
            .args(["image", "import"])
            .arg(guest(guest_name))
            .arg(reference)
            .output()
            .expect("wkube image import");
        assert!(
            out.status.success(),
            "import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A jsonpath query on one object.
    pub fn jsonpath(&self, version: &str, kind_name: &[&str], path: &str) -> String {
        let mut args = vec!["get"];
        args.extend_from_slice(kind_name);
        let expr = format!("jsonpath={path}");
        args.extend_from_slice(&["-o", &expr]);
        let out = self.kubectl(version, &args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.server_log());
        }
    }
}

fn iptables(args: &[&str]) {
    let out = Command::new("iptables")
        .args(args)
        .output()
        .expect("iptables (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "iptables {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network partition on loopback: drops every UDP packet to or from one port (a member's
/// QUIC links) while it lives, in an iptables chain of its own so that removing it cannot
/// touch anything else.
pub struct Partition {
    chain: String,
}

impl Partition {
    pub fn isolate(port: u16) -> Partition {
        let chain = format!("WKUBE-{}-{port}", std::process::id());
        iptables(&["-N", &chain]);
        let port = port.to_string();
        iptables(&["-A", &chain, "-p", "udp", "--dport", &port, "-j", "DROP"]);
        iptables(&["-A", &chain, "-p", "udp", "--sport", &port, "-j", "DROP"]);
        iptables(&["-I", "INPUT", "-i", "lo", "-j", &chain]);
        Partition { chain }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        let _ = Command::new("iptables")
            .args(["-D", "INPUT", "-i", "lo", "-j", &self.chain])
            .status();
        let _ = Command::new("iptables").args(["-F", &self.chain]).status();
        let _ = Command::new("iptables").args(["-X", &self.chain]).status();
    }
}

/// `kubectl get RESOURCE -l SELECTOR -w --output-watch-events -o json` of one kubectl
/// version: each watch event goes to `on_event` on a reader thread, in order. Dropping it
/// stops kubectl and joins the reader.
pub struct WatchProcess {
    child: Child,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl WatchProcess {
    pub fn start(
        server: &Server,
        version: &str,
        resource: &str,
        selector: &str,
        mut on_event: impl FnMut(&serde_json::Value) + Send + 'static,
    ) -> WatchProcess {
        let mut child = Command::new(kubectl_path(version))
            .env("KUBECONFIG", server.kubeconfig())
            .args([
                "get",
                resource,
                "-l",
                selector,
                "-w",
                "--output-watch-events",
            ])
            .args(["-o", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl get -w");
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let events = serde_json::Deserializer::from_reader(std::io::BufReader::new(stdout))
                .into_iter::<serde_json::Value>();
            for event in events.map_while(Result::ok) {
                on_event(&event);
            }
        });
        WatchProcess {
            child,
            reader: Some(reader),
        }
    }
}

impl Drop for WatchProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}
