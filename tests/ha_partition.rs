//! A real network partition (iptables drops a member's QUIC traffic on loopback): the
//! isolated side cannot commit, the majority goes on, and after healing every member holds
//! the same objects at the same resourceVersions.

mod common;

use std::time::Duration;

use common::{Partition, Server};

const KUBECTL: &str = "1.33";

#[test]
fn the_minority_cannot_commit_and_everything_converges_after_healing() {
    let first = Server::start_member("a", None);
    let b = Server::start_member("b", Some(&first));
    let c = Server::start_member("c", Some(&first));
    let members = [first, b, c];
    let caught_up = |rows: &[Vec<String>]| {
        rows.len() == 3 && rows.iter().all(|r| r[3] == "true" && r[6] == "0")
    };
    common::wait_for("three voters", Duration::from_secs(30), || {
        caught_up(&members[0].cluster_status()).then_some(())
    });
    members[0].kubectl_ok(KUBECTL, &["create", "configmap", "before"]);

    let leader = common::leader(&members);
    let majority: Vec<&Server> = members
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, m)| m)
        .collect();
    let partition = Partition::isolate(members[leader].peer_port());

    // The isolated old leader cannot get a write committed: its client gets an error.
    let out = members[leader].kubectl(
        KUBECTL,
        &["create", "configmap", "minority", "--request-timeout=20s"],
    );
    assert!(
        !out.status.success(),
        "a write on the minority side succeeded"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Timeout")
            || err.contains("ServiceUnavailable")
            || err.contains("may or may not"),
        "{err}"
    );

    // The majority elects a leader of its own and goes on.
    common::wait_for(
        "a write on the majority side",
        Duration::from_secs(30),
        || {
            majority[0]
                .kubectl(
                    KUBECTL,
                    &["create", "configmap", "majority", "--request-timeout=5s"],
                )
                .status
                .success()
                .then_some(())
        },
    );
    majority[1].kubectl_ok(KUBECTL, &["create", "configmap", "majority-2"]);

    drop(partition);
    common::wait_for("all three caught up again", Duration::from_secs(30), || {
        let rows = majority[0].cluster_status();
        (caught_up(&rows) && rows.iter().filter(|r| r[2] == "Leader").count() == 1).then_some(())
    });
    let views: Vec<String> = members.iter().map(Server::config_maps).collect();
    assert!(
        views.iter().all(|v| *v == views[0]),
        "members disagree after healing: {views:?}"
    );
    for name in ["before=", "majority=", "majority-2="] {
        assert!(views[0].contains(name), "{name} missing: {}", views[0]);
    }
    assert!(
        !views[0].contains("minority="),
        "the unacknowledged minority write was applied: {}",
        views[0]
    );
}
