//! The WASI runtime against real wasmtime and the real test guests (`guests/out`,
//! built by `guests/build.sh`): argv/env in, CRI logs out, exit codes, the compile
//! cache, the stop path and the pooling allocator, and mounts: virtual (in-memory,
//! updated atomically) beside host directories.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use node::images::{ImageStore, ResolvedImage};
use node::logs::LogWriter;
use node::runtime::wasm::{WasmConfig, WasmRuntime};
use node::runtime::{
    ContainerConfig, ExitReason, Mount, MountSource, RunningContainer, Runtime, RuntimeError,
    KILLED_EXIT_CODE,
};
use node::testing::{snapshot, Guest};
use node::vfs::Snapshot;
use std::sync::Arc;
use tempfile::TempDir;
use tokio::sync::watch;

/// Bound for anything that should take milliseconds; generous because the machine is
/// shared and a debug build compiles the guests on first use.
const PATIENCE: Duration = Duration::from_secs(60);

/// A node's worth of state in a temporary directory: an image store, a compile cache
/// directory and log files.
struct Node {
    dir: TempDir,
    images: ImageStore,
}

impl Node {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let images = ImageStore::open(&dir.path().join("images")).unwrap();
        Node { dir, images }
    }

    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn runtime(&self) -> WasmRuntime {
        WasmRuntime::new(&self.cache_dir()).unwrap()
    }

    /// Imports `guest` the way `wkube image import` does and resolves it as a pod would.
    fn image(&self, guest: Guest) -> ResolvedImage {
        let reference = format!("{}:test", guest.name());
        self.images.import_wasm(&guest.bytes(), &reference).unwrap();
        self.images.resolve(&reference).unwrap().unwrap()
    }

    /// A container config whose log goes to `<dir>/logs/<id>.log`.
    fn config(&self, id: &str, argv: &[&str], env: &[(&str, &str)]) -> (ContainerConfig, PathBuf) {
        let path = self.dir.path().join("logs").join(format!("{id}.log"));
        let config = ContainerConfig {
            network: false,
            id: id.into(),
            pod_uid: "pod-uid".into(),
            name: id.into(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log: LogWriter::create(&path).unwrap(),
            mounts: Vec::new(),
            memory_limit: None,
        };
        (config, path)
    }
}

/// The records of a CRI log file as `(stream, tag, content)`, timestamps checked and dropped.
fn records(path: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let mut fields = line.splitn(4, ' ');
            let ts = fields.next().unwrap();
            assert!(
                chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
                "bad timestamp in {line:?}"
            );
            let stream = fields.next().unwrap().to_string();
            let tag = fields.next().unwrap().to_string();
            (stream, tag, fields.next().unwrap_or("").to_string())
        })
        .collect()
}

fn stdout_lines(path: &Path) -> Vec<String> {
    records(path)
        .into_iter()
        .filter(|(stream, _, _)| stream == "stdout")
        .map(|(_, _, content)| content)
        .collect()
}

/// Waits until the log at `path` has a stdout line equal to `line`.
async fn wait_for_line(path: &Path, line: &str) {
    let deadline = Instant::now() + PATIENCE;
    while !stdout_lines(path).iter().any(|l| l == line) {
        assert!(
            Instant::now() < deadline,
            "no {line:?} in {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the exit; a container that does not exit in time fails the test.
async fn wait_exit(run: &mut RunningContainer) -> node::runtime::ExitStatus {
    tokio::time::timeout(PATIENCE, run.wait())
        .await
        .unwrap_or_else(|_| panic!("{} did not exit", run.id()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argv_and_env_reach_the_guest_and_output_lands_in_the_cri_log() {
    let node = Node::new();
    let runtime = node.runtime();
    let (config, log) = node.config(
        "hello",
        &["hello", "first", "with space"],
        &[
            ("GREETING", "bonjour"),
            ("POD_NAME", "web-0"),
            ("OTHER", "x"),
        ],
    );
    let mut run = runtime
        .start(&node.image(Guest::Hello), config)
        .await
        .unwrap();
    assert_eq!(wait_exit(&mut run).await.code, 0);

    assert_eq!(
        records(&log),
        [
            ("stdout", "F", "Hello from wkube!"),
            ("stdout", "F", r#"args: ["hello", "first", "with space"]"#),
            ("stdout", "F", "GREETING=bonjour"),
            ("stdout", "F", "POD_NAME=web-0"),
        ]
        .map(|(s, t, c)| (s.to_string(), t.to_string(), c.to_string()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_come_back_exactly_and_stderr_is_logged() {
    let node = Node::new();
    let runtime = node.runtime();
    let image = node.image(Guest::ExitCode);
    for (code, reason) in [(0, ExitReason::Completed), (3, ExitReason::Error)] {
        let id = format!("exit-{code}");
        let (config, log) = node.config(&id, &["exit-code", &code.to_string()], &[]);
        let mut run = runtime.start(&image, config).await.unwrap();
        let status = wait_exit(&mut run).await;
        assert_eq!((status.code, status.reason), (code, reason), "{status:?}");
        assert_eq!(status.message, None, "an exit is not a trap");
        let records = records(&log);
        assert!(
            records.contains(&(
                "stdout".into(),
                "F".into(),
                format!("exiting with code {code}")
            )),
            "{records:?}"
        );
        assert!(
            records.contains(&(
                "stderr".into(),
                "F".into(),
                "this line goes to stderr".into()
            )),
            "{records:?}"
        );
    }
}

/// `resources.limits.memory` holds for a guest: one that grows past it is killed and
/// reported as the kernel reports a container it OOM-killed; under the limit it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_growing_past_its_memory_limit_is_oom_killed() {
    let node = Node::new();
    let runtime = node.runtime();
    let image = node.image(Guest::Ticker);
    let (mut config, _) = node.config("hungry", &["ticker", "hold", "64"], &[]);
    config.memory_limit = Some(32 << 20);
    let mut run = runtime.start(&image, config).await.unwrap();
    let status = wait_exit(&mut run).await;
    assert_eq!(
        (status.code, status.reason),
        (KILLED_EXIT_CODE, ExitReason::OomKilled),
        "{status:?}"
    );

    let (mut config, log) = node.config("fits", &["ticker", "hold", "64"], &[]);
    config.memory_limit = Some(128 << 20);
    let run = runtime.start(&image, config).await.unwrap();
    wait_for_line(&log, "holding 64 MiB").await;
    run.stop(Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_image_started_twice_compiles_once() {
    let node = Node::new();
    let runtime = node.runtime();
    let image = node.image(Guest::Hello);
    for id in ["first", "second"] {
        let (config, _) = node.config(id, &["hello"], &[]);
        let mut run = runtime.start(&image, config).await.unwrap();
        assert_eq!(wait_exit(&mut run).await.code, 0);
    }
    let stats = runtime.cache_stats();
    assert_eq!((stats.compiled, stats.loaded_from_cache), (1, 0));
    let (digest, _) = image.wasm_layer.as_ref().unwrap();
    assert!(runtime.cache_path(digest).exists(), "compiled form cached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_runtime_loads_from_the_disk_cache_without_compiling() {
    let node = Node::new();
    let image = node.image(Guest::Hello);
    let first = node.runtime();
    first.prepare(&image).await.unwrap();
    assert_eq!(first.cache_stats().compiled, 1);
    drop(first);

    // A node restart: same cache directory, fresh engine.
    let second = node.runtime();
    let (config, log) = node.config("after-restart", &["hello"], &[]);
    let mut run = second.start(&image, config).await.unwrap();
    assert_eq!(wait_exit(&mut run).await.code, 0);
    assert_eq!(stdout_lines(&log)[0], "Hello from wkube!");
    let stats = second.cache_stats();
    assert_eq!((stats.compiled, stats.loaded_from_cache), (0, 1));
}

/// Starts `ticker` with `argv`, waits for its first tick, stops it with the pod default
/// grace period (30 s) and returns how long the stop took to take effect.
async fn stop_ticker(argv: &[&str]) -> Duration {
    let node = Node::new();
    let runtime = node.runtime();
    let (config, log) = node.config("ticker", argv, &[]);
    let mut run = runtime
        .start(&node.image(Guest::Ticker), config)
        .await
        .unwrap();
    wait_for_line(&log, "tick 1").await;
    assert_eq!(run.try_status(), None, "ticker runs forever");

    let stopping = Instant::now();
    run.stop(Duration::from_secs(30));
    let status = wait_exit(&mut run).await;
    let took = stopping.elapsed();
    // What kubelet reports for a container it had to kill: 137 (128 + SIGKILL),
    // reason "Error"; a wasm guest has no signal handler, so the stop is a kill.
    assert_eq!(
        (status.code, status.reason),
        (KILLED_EXIT_CODE, ExitReason::Killed)
    );
    assert_eq!(KILLED_EXIT_CODE, 137);
    assert_eq!(status.reason.as_k8s_reason(), "Error");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_kills_a_sleeping_ticker_at_once_whatever_the_grace_period() {
    let took = stop_ticker(&["ticker"]).await;
    assert!(took < Duration::from_secs(2), "stop took {took:?}");
}

/// `ticker 0` never sleeps (std skips a zero sleep) and its log writes return at once,
/// so it never gives control back to tokio by itself: only the epoch deadline makes its
/// `run` future yield, and only then can the stop be seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_interrupts_a_busy_guest_through_epoch_yields() {
    let took = stop_ticker(&["ticker", "0"]).await;
    assert!(took < Duration::from_secs(2), "stop took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_kills_the_guest_and_frees_its_slot() {
    let node = Node::new();
    let runtime = WasmRuntime::with_config(
        &node.cache_dir(),
        WasmConfig {
            max_instances: 1,
            ..WasmConfig::default()
        },
    )
    .unwrap();
    let image = node.image(Guest::Ticker);
    let (config, log) = node.config("dropped", &["ticker", "10"], &[]);
    let run = runtime.start(&image, config).await.unwrap();
    wait_for_line(&log, "tick 1").await;
    drop(run);

    // The only pool slot comes back once the dropped guest is gone.
    let deadline = Instant::now() + PATIENCE;
    let mut next = loop {
        let (config, _) = node.config("next", &["ticker"], &[]);
        match runtime.start(&image, config).await {
            Ok(run) => break run,
            Err(RuntimeError::Instantiate { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(e) => panic!("slot never freed: {e}"),
        }
    };
    // Its log is closed and no longer grows.
    let len = std::fs::metadata(&log).unwrap().len();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(std::fs::metadata(&log).unwrap().len(), len);
    next.stop(Duration::ZERO);
    wait_exit(&mut next).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_tickers_run_concurrently_from_one_instance_pre_and_all_stop() {
    const N: usize = 50;
    let node = Node::new();
    // A pool of exactly N instances: the 51st start proves the pooling allocator is
    // the one in use, and the start after the stops proves every slot was returned.
    let runtime = WasmRuntime::with_config(
        &node.cache_dir(),
        WasmConfig {
            max_instances: N as u32,
            ..WasmConfig::default()
        },
    )
    .unwrap();
    let image = node.image(Guest::Ticker);
    let mut runs = Vec::new();
    let mut logs = Vec::new();
    for i in 0..N {
        let (config, log) = node.config(&format!("ticker-{i}"), &["ticker", "100"], &[]);
        runs.push(runtime.start(&image, config).await.unwrap());
        logs.push(log);
    }
    for log in &logs {
        wait_for_line(log, "tick 2").await;
    }
    assert!(runs.iter().all(|r| r.try_status().is_none()));
    let stats = runtime.cache_stats();
    assert_eq!(
        (stats.compiled, stats.loaded_from_cache),
        (1, 0),
        "one compile, one InstancePre for all"
    );

    let (config, _) = node.config("one-too-many", &["ticker"], &[]);
    match runtime.start(&image, config).await {
        Err(RuntimeError::Instantiate { message, .. }) => {
            assert!(message.contains("limit"), "{message}")
        }
        other => panic!("expected the pool to be full, got {other:?}"),
    }

    let stopping = Instant::now();
    for run in &runs {
        run.stop(Duration::from_secs(30));
    }
    for run in &mut runs {
        assert_eq!(wait_exit(run).await.code, KILLED_EXIT_CODE);
    }
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(2), "stopping {N} took {took:?}");

    let (config, log) = node.config("after", &["ticker", "10"], &[]);
    let mut after = runtime.start(&image, config).await.unwrap();
    wait_for_line(&log, "tick 1").await;
    after.stop(Duration::ZERO);
    assert_eq!(wait_exit(&mut after).await.code, KILLED_EXIT_CODE);
}

/// Runs `confwatch` with `args` and `mounts` to its exit; returns its exit code and
/// stdout and stderr lines.
async fn confwatch(node: &Node, id: &str, args: &[&str], mounts: Vec<Mount>) -> (i32, Vec<String>) {
    let runtime = node.runtime();
    let mut argv = vec!["confwatch"];
    argv.extend_from_slice(args);
    let (mut config, log) = node.config(id, &argv, &[]);
    config.mounts = mounts;
    let mut run = runtime
        .start(&node.image(Guest::Confwatch), config)
        .await
        .unwrap();
    let code = wait_exit(&mut run).await.code;
    let lines = records(&log).into_iter().map(|(_, _, l)| l).collect();
    (code, lines)
}

fn virtual_mount(at: &str, content: &watch::Receiver<Arc<Snapshot>>) -> Mount {
    Mount {
        guest_path: at.into(),
        source: MountSource::Virtual(content.clone()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_mount_serves_files_read_only_with_their_modes() {
    let node = Node::new();
    let (_tx, content) = watch::channel(snapshot(&[
        ("GREETING", "hello", 0o644),
        ("nested/deep.conf", "x=1", 0o400),
        ("locked", "nope", 0o200),
    ]));
    let mounts = || vec![virtual_mount("/etc/config", &content)];
    let (code, out) = confwatch(
        &node,
        "cat",
        &[
            "cat",
            "/etc/config/GREETING",
            "/etc/config/nested/deep.conf",
        ],
        mounts(),
    )
    .await;
    assert_eq!(
        (code, out),
        (0, vec!["hello".to_string(), "x=1".to_string()])
    );

    let (code, out) = confwatch(&node, "ls", &["ls", "/etc/config"], mounts()).await;
    assert_eq!(code, 0);
    assert_eq!(out, ["GREETING 5", "locked 4", "nested 1"]);

    let (code, out) = confwatch(
        &node,
        "write",
        &["write", "/etc/config/GREETING", "x"],
        mounts(),
    )
    .await;
    assert_eq!(code, 1);
    assert!(out[0].contains("Read-only file system"), "{out:?}");

    // A mode without read permission: WASI has no permission bits to show, so it is
    // enforced at open.
    let (code, out) = confwatch(&node, "locked", &["cat", "/etc/config/locked"], mounts()).await;
    assert_eq!(code, 1);
    assert!(out[0].contains("ermission denied"), "{out:?}");

    // Nothing of the host is visible, and `..` does not leave the mount.
    let (code, _) = confwatch(
        &node,
        "host",
        &["cat", "/etc/passwd", "/etc/config/../../etc/passwd"],
        mounts(),
    )
    .await;
    assert_eq!(code, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_and_host_directories_coexist_nested() {
    let node = Node::new();
    let host = node.dir.path().join("empty-dir");
    std::fs::create_dir_all(&host).unwrap();
    let (_tx, content) = watch::channel(snapshot(&[("a", "from-configmap", 0o644)]));
    let mounts = || {
        vec![
            Mount {
                guest_path: "/data".into(),
                source: MountSource::Host {
                    path: host.clone(),
                    read_only: false,
                },
            },
            virtual_mount("/data/config", &content),
        ]
    };
    let (code, out) = confwatch(&node, "w", &["write", "/data/out.txt", "written"], mounts()).await;
    assert_eq!((code, out), (0, vec![]));
    assert_eq!(
        std::fs::read_to_string(host.join("out.txt")).unwrap(),
        "written"
    );
    let (code, out) = confwatch(
        &node,
        "r",
        &["cat", "/data/out.txt", "/data/config/a"],
        mounts(),
    )
    .await;
    assert_eq!(
        (code, out),
        (0, vec!["written".to_string(), "from-configmap".to_string()])
    );
}

/// A guest reading three keys through one directory descriptor in a loop while the
/// content is replaced 100 times never sees keys of two versions, and sees the last
/// version promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_are_atomic_per_directory_open_and_prompt() {
    let node = Node::new();
    let version = |n: u32| {
        let v = format!("v{n}");
        snapshot(&[("a", &v, 0o644), ("b", &v, 0o644), ("c", &v, 0o644)])
    };
    let (tx, content) = watch::channel(version(0));
    let runtime = node.runtime();
    let (mut config, log) =
        node.config("watch", &["confwatch", "watch", "/cfg", "a", "b", "c"], &[]);
    config.mounts = vec![virtual_mount("/cfg", &content)];
    let run = runtime
        .start(&node.image(Guest::Confwatch), config)
        .await
        .unwrap();
    wait_for_line(&log, "seen a=v0 b=v0 c=v0").await;
    for n in 1..=100 {
        tx.send_replace(version(n));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let sent = Instant::now();
    wait_for_line(&log, "seen a=v100 b=v100 c=v100").await;
    let took = sent.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "last version seen after {took:?}"
    );
    let seen: Vec<String> = stdout_lines(&log)
        .into_iter()
        .filter(|l| l.starts_with("seen "))
        .collect();
    for line in &seen {
        let values: Vec<&str> = line.split(' ').skip(1).map(|kv| &kv[2..]).collect();
        assert!(values.iter().all(|v| *v == values[0]), "torn read: {line}");
    }
    assert!(seen.len() > 2, "{seen:?}");
    run.stop(Duration::ZERO);
}
