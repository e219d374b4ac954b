//! Control-plane membership with real processes: five members, removing one, a member that
//! was down while the log was compacted catching up from a snapshot, and a full restart.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Server;

const KUBECTL: &str = "1.33";

fn voters_caught_up(server: &Server, n: usize) -> bool {
    let rows = server.cluster_status();
    rows.len() == n && rows.iter().all(|r| r[3] == "true" && r[6] == "0")
}

/// `wkube cluster remove MEMBER` through `server`, which must succeed; returns its output.
fn remove_member(server: &Server, member: &str) -> String {
    let out = server
        .wkube()
        .args(["cluster", "remove", member])
        .output()
        .expect("wkube");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn create_config_maps(server: &Server, prefix: &str, n: usize) {
    let manifests: Vec<String> = (0..n)
        .map(|i| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {prefix}-{i}\n"))
        .collect();
    let out = server.kubectl_with_stdin(
        KUBECTL,
        &["apply", "-f", "-"],
        Some(&manifests.join("---\n")),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn five_members_form_and_a_removed_member_leaves() {
    let first = Server::start_member("a", None);
    let mut members = vec![first];
    for name in ["b", "c", "d", "e"] {
        let joiner = Server::start_member(name, Some(&members[0]));
        members.push(joiner);
    }
    common::wait_for("five voters", Duration::from_secs(30), || {
        voters_caught_up(&members[0], 5).then_some(())
    });

    let removed = remove_member(&members[0], "d");
    assert!(removed.contains("node \"d\" deleted"));
    // The removed member applies its own removal and stops, saying why.
    let (exit, log) = members[3].wait_exit(Duration::from_secs(30));
    assert!(!exit.success());
    assert!(
        log.contains("this member has been removed from the cluster"),
        "{log}"
    );

    common::wait_for("four voters", Duration::from_secs(30), || {
        voters_caught_up(&members[0], 4).then_some(())
    });
    let nodes = members[4].kubectl_ok(KUBECTL, &["get", "nodes", "-o", "name"]);
    assert!(!nodes.contains("node/d"), "{nodes}");
    // The four go on writing.
    members[1].kubectl_ok(KUBECTL, &["create", "configmap", "after-removal"]);
    assert!(members[4].config_maps().contains("after-removal="));
}

#[test]
fn a_member_down_during_compaction_catches_up_from_a_snapshot() {
    // A tiny log: ten applied entries past the last compaction trigger the next one.
    let small_log = ["--raft-log-keep", "2", "--raft-compact-every", "10"];
    let first = Server::start_member_with("a", None, &small_log);
    let b = Server::start_member_with("b", Some(&first), &small_log);
    let mut c = Server::start_member_with("c", Some(&first), &small_log);
    common::wait_for("three voters", Duration::from_secs(30), || {
        voters_caught_up(&first, 3).then_some(())
    });

    c.kill9();
    create_config_maps(&first, "while-down", 60);
    // The log c would need to replay is gone from the others.
    let applied_before: u64 = b
        .cluster_status()
        .iter()
        .map(|r| r[5].parse::<u64>().unwrap_or(0))
        .max()
        .unwrap();
    assert!(applied_before > 60);

    c.spawn();
    common::wait_for("c to catch up", Duration::from_secs(30), || {
        voters_caught_up(&first, 3).then_some(())
    });
    assert_eq!(c.config_maps(), first.config_maps());
    assert!(c.config_maps().contains("while-down-59="));
    let log = c.server_log();
    assert!(
        log.contains("installed a snapshot"),
        "c caught up from a snapshot: {log}"
    );
}

#[test]
fn a_full_restart_keeps_the_state() {
    let first = Server::start_member("a", None);
    let mut members = vec![first];
    for name in ["b", "c"] {
        let joiner = Server::start_member(name, Some(&members[0]));
        members.push(joiner);
    }
    common::wait_for("three voters", Duration::from_secs(30), || {
        voters_caught_up(&members[0], 3).then_some(())
    });
    create_config_maps(&members[1], "kept", 20);
    let before = members[2].config_maps();

    for m in &mut members {
        m.kill9();
    }
    // All at once, in reverse: none of them can serve until a majority is back.
    for m in members.iter_mut().rev() {
        m.spawn_in_background();
    }
    for m in &mut members {
        m.wait_until_serving();
    }
    common::wait_for("three voters again", Duration::from_secs(30), || {
        voters_caught_up(&members[0], 3).then_some(())
    });
    for m in &members {
        assert_eq!(m.config_maps(), before);
    }
}

#[test]
fn a_fourth_member_joins_under_load_and_another_is_removed() {
    let first = Server::start_member("a", None);
    let b = Server::start_member("b", Some(&first));
    let c = Server::start_member("c", Some(&first));
    common::wait_for("three voters", Duration::from_secs(30), || {
        voters_caught_up(&first, 3).then_some(())
    });

    // A client writing through b the whole time; every write it saw acknowledged is counted.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let writer = {
        let (stop, acked, kubeconfig) = (stop.clone(), acked.clone(), b.kubeconfig());
        std::thread::spawn(move || {
            for i in 0..2_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let name = format!("load-{i}");
                let out = std::process::Command::new(common::kubectl_path(KUBECTL))
                    .env("KUBECONFIG", &kubeconfig)
                    .args(["create", "configmap", &name, "--request-timeout=10s"])
                    .output()
                    .expect("kubectl");
                if out.status.success() {
                    acked.lock().unwrap().push(name);
                }
            }
        })
    };
    // Each membership change happens with writes before and after it.
    let more_writes = || {
        let target = acked.lock().unwrap().len() + 5;
        common::wait_for("more acknowledged writes", Duration::from_secs(30), || {
            (acked.lock().unwrap().len() >= target).then_some(())
        });
    };

    more_writes();
    let d = Server::start_member("d", Some(&first));
    common::wait_for("four voters", Duration::from_secs(30), || {
        voters_caught_up(&first, 4).then_some(())
    });
    more_writes();
    remove_member(&first, "c");
    common::wait_for("three voters again", Duration::from_secs(30), || {
        voters_caught_up(&first, 3).then_some(())
    });
    more_writes();

    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let on_d = d.config_maps();
    for name in acked.lock().unwrap().iter() {
        assert!(
            on_d.contains(&format!("{name}=")),
            "{name} missing on the new member"
        );
    }
    assert_eq!(first.config_maps(), on_d);
    drop(c);
}

#[test]
fn a_member_restarted_on_other_ports_is_found_again() {
    let first = Server::start_member("a", None);
    let b = Server::start_member("b", Some(&first));
    let mut c = Server::start_member("c", Some(&first));
    common::wait_for("three voters", Duration::from_secs(30), || {
        voters_caught_up(&first, 3).then_some(())
    });

    c.kill9();
    c.move_to_new_ports();
    c.spawn();
    let new_api = format!("https://{}", c.api_addr());
    common::wait_for(
        "c's new address recorded and c caught up",
        Duration::from_secs(30),
        || {
            let rows = b.cluster_status();
            (voters_caught_up(&b, 3) && rows.iter().any(|r| r[1] == new_api)).then_some(())
        },
    );
    c.kubectl_ok(KUBECTL, &["create", "configmap", "from-the-moved-member"]);
    assert_eq!(first.config_maps(), c.config_maps());
}

#[test]
fn deleting_a_members_node_removes_the_member() {
    let first = Server::start_member("a", None);
    let b = Server::start_member("b", Some(&first));
    let mut c = Server::start_member("c", Some(&first));
    common::wait_for("three voters", Duration::from_secs(30), || {
        voters_caught_up(&first, 3).then_some(())
    });

    b.kubectl_ok(KUBECTL, &["delete", "node", "c"]);
    let (exit, log) = c.wait_exit(Duration::from_secs(30));
    assert!(!exit.success());
    assert!(
        log.contains("this member has been removed from the cluster"),
        "{log}"
    );
    common::wait_for("two voters", Duration::from_secs(30), || {
        voters_caught_up(&first, 2).then_some(())
    });
    b.kubectl_ok(KUBECTL, &["create", "configmap", "after"]);
}
