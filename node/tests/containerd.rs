//! The node's own containerd, for real: started under a data directory, spoken to over CRI
//! v1, and started again when it dies. Needs root and Debian's `containerd` (the README's
//! test command installs it).

use std::time::{Duration, Instant};

use node::containerd::network::PodNetwork;
use node::containerd::sandbox::{sandbox_config, ContainerSpec, PodIdentity};
use node::containerd::supervisor::{running, Settings, Supervisor};
use node::containerd::{connect, ContainerdError};
use node::testing::{ContainerdCleanup, Registry};

fn settings(dir: &std::path::Path) -> Settings {
    Settings {
        dir: dir.join("containerd"),
        sandbox_image: node::containerd::pause::IMAGE.into(),
        insecure_registries: Vec::new(),
        network: PodNetwork::for_dir(&dir.join("containerd")),
    }
}

async fn version_within(
    socket: &std::path::Path,
    limit: Duration,
) -> Result<String, ContainerdError> {
    let deadline = Instant::now() + limit;
    loop {
        let attempt = async {
            let mut client = connect(socket).await?;
            client.version().await
        }
        .await;
        match attempt {
            Ok(v) => return Ok(format!("{} {}", v.runtime_name, v.runtime_api_version)),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test]
async fn the_nodes_containerd_serves_cri_v1_from_its_own_directory() {
    let dir = tempfile::tempdir().unwrap();
    let supervisor = Supervisor::start(settings(dir.path())).await.unwrap();
    let version = version_within(&supervisor.socket(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(version, "containerd v1");
    // The sandbox image is built in and loaded.
    let mut cri = connect(&supervisor.socket()).await.unwrap();
    let pause = cri
        .image_status(node::containerd::pause::IMAGE)
        .await
        .unwrap();
    assert!(pause.is_some());
    // Its stores are under the data directory, not /var/lib/containerd.
    assert!(dir.path().join("containerd/root").is_dir());
    assert!(dir.path().join("containerd/state").is_dir());
    supervisor.stop().await;
    assert!(running(&dir.path().join("containerd/config.toml")).is_none());
}

#[tokio::test]
async fn a_killed_containerd_is_started_again() {
    let dir = tempfile::tempdir().unwrap();
    let supervisor = Supervisor::start(settings(dir.path())).await.unwrap();
    let config = dir.path().join("containerd/config.toml");
    let first = running(&config).expect("containerd runs");
    rustix::process::kill_process(first, rustix::process::Signal::KILL).unwrap();
    let version = version_within(&supervisor.socket(), Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(version, "containerd v1");
    let second = running(&config).expect("containerd runs again");
    assert_ne!(first, second);
    supervisor.stop().await;
}

#[tokio::test]
async fn an_image_is_pulled_from_an_insecure_registry_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path());
    let supervisor = Supervisor::start(Settings {
        insecure_registries: vec![registry.address.clone()],
        ..settings(dir.path())
    })
    .await
    .unwrap();
    let mut cri = connect(&supervisor.socket()).await.unwrap();
    let reference = format!("{}/busybox:test", registry.address);
    assert!(cri.image_status(&reference).await.unwrap().is_none());
    let id = cri.pull_image(&reference, None).await.unwrap();
    assert!(id.starts_with("sha256:"), "{id}");
    let image = cri.image_status(&reference).await.unwrap().unwrap();
    assert_eq!(image.id, id);
    assert!(
        image.repo_tags.contains(&reference),
        "{:?}",
        image.repo_tags
    );

    // A tag the registry does not have: the registry's answer reaches the caller.
    let missing = format!("{}/busybox:nope", registry.address);
    let error = cri
        .pull_image(&missing, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("not found"), "{error}");
    supervisor.stop().await;
}

/// Polls a container until it has exited; returns its status.
async fn exited(
    cri: &mut node::containerd::CriClient,
    id: &str,
    limit: Duration,
) -> cri::v1::ContainerStatus {
    let deadline = Instant::now() + limit;
    loop {
        let status = cri.container_status(id).await.unwrap();
        if status.state == cri::v1::ContainerState::ContainerExited as i32 {
            return status;
        }
        assert!(Instant::now() < deadline, "{id} still runs: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn containers_of_a_pod_share_localhost_on_the_pods_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path());
    let settings = Settings {
        insecure_registries: vec![registry.address.clone()],
        ..settings(dir.path())
    };
    let _cleanup = ContainerdCleanup(settings.dir.clone());
    let subnet_prefix = settings.network.subnet.trim_end_matches("0/24").to_string();
    let supervisor = Supervisor::start(settings).await.unwrap();
    let mut cri = connect(&supervisor.socket()).await.unwrap();
    let image = format!("{}/busybox:test", registry.address);
    cri.pull_image(&image, None).await.unwrap();

    let pod = PodIdentity {
        name: "web".into(),
        namespace: "default".into(),
        uid: "uid-web".into(),
        node: "node-1".into(),
        attempt: 0,
        share_process_namespace: false,
        hostname: "web".into(),
    };
    let logs = dir.path().join("pods/uid-web");
    std::fs::create_dir_all(&logs).unwrap();
    let config = sandbox_config(&pod, logs.clone());
    let sandbox = cri.run_sandbox(&config).await.unwrap();
    let ip = cri
        .sandbox_ip(&sandbox)
        .await
        .unwrap()
        .expect("the pod has an address");
    assert!(
        ip.starts_with(&subnet_prefix),
        "{ip} not in {subnet_prefix}0/24"
    );

    let sh = |script: &str| vec!["sh".to_string(), "-c".to_string(), script.to_string()];
    let web = ContainerSpec {
        name: "web".into(),
        image: image.clone(),
        command: sh("echo hello from web > /var/www/index.html; exec httpd -f -p 80 -h /var/www"),
        log_path: "web/0.log".into(),
        ..Default::default()
    };
    let web_id = cri.start_container(&sandbox, &config, &web).await.unwrap();
    let client = ContainerSpec {
        name: "client".into(),
        image: image.clone(),
        command: sh("until wget -qO- http://127.0.0.1:80/; do sleep 0.1; done; exit 3"),
        env: vec![("GREETING".into(), "hi".into())],
        log_path: "client/0.log".into(),
        ..Default::default()
    };
    let client_id = cri
        .start_container(&sandbox, &config, &client)
        .await
        .unwrap();
    let status = exited(&mut cri, &client_id, Duration::from_secs(20)).await;
    assert_eq!((status.exit_code, status.reason.as_str()), (3, "Error"));
    let log = std::fs::read_to_string(logs.join("client/0.log")).unwrap();
    assert!(log.contains(" stdout F hello from web"), "{log}");

    // The node reaches the pod at its own address, on the bridge the node made.
    let mut reached = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reached.contains("hello from web") {
        assert!(
            Instant::now() < deadline,
            "{ip}:80 did not answer: {reached:?}"
        );
        if let Ok(mut stream) = std::net::TcpStream::connect((ip.as_str(), 80)) {
            use std::io::{Read, Write};
            stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            reached.clear();
            let _ = stream.read_to_string(&mut reached);
        }
    }

    cri.stop_container(&web_id, 1).await.unwrap();
    let web_status = exited(&mut cri, &web_id, Duration::from_secs(10)).await;
    assert_ne!(web_status.exit_code, 0);
    cri.remove_sandbox(&sandbox).await.unwrap();
    supervisor.stop().await;
}
