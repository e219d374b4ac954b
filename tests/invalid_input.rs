//! Bad input gets the Kubernetes error kubectl prints, and nothing is stored.

mod common;

use common::Server;

fn apply(server: &Server, version: &str, manifest: &str) -> (bool, String) {
    let out = server.kubectl_with_stdin(version, &["apply", "-f", "-"], Some(manifest));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pod_count(server: &Server) -> usize {
    server
        .kubectl_ok("1.33", &["get", "pods", "-A", "-o", "name"])
        .lines()
        .count()
}

#[test]
fn invalid_manifests_are_refused_and_nothing_is_stored() {
    let server = Server::start();
    for version in common::KUBECTL_VERSIONS {
        let before = pod_count(&server);

        let (ok, err) = apply(
            &server,
            version,
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n  labels: [oops\n",
        );
        assert!(!ok);
        assert!(err.contains("error"), "bad YAML: {err}");

        let (ok, err) = apply(
            &server,
            version,
            "apiVersion: v1\nkind: Widget\nmetadata:\n  name: w\n",
        );
        assert!(!ok);
        assert!(err.contains("Widget"), "unknown kind: {err}");

        let (ok, err) = apply(&server, version, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: Bad_Name\nspec:\n  containers:\n  - name: a\n    image: hello:1.0\n");
        assert!(!ok);
        assert!(
            err.contains("is invalid")
                && err.contains("metadata.name: Invalid value: \"Bad_Name\""),
            "invalid name: {err}"
        );

        let (ok, err) = apply(&server, version, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: noimage\nspec:\n  containers:\n  - name: a\n");
        assert!(!ok);
        assert!(
            err.contains("spec.containers[0].image: Required value"),
            "missing image: {err}"
        );

        let (ok, err) = apply(&server, version, "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: bad\nspec:\n  holderIdentity: x\n  leaseDurationSeconds: 0\n");
        assert!(!ok);
        assert!(
            err.contains("The Lease \"bad\" is invalid: spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"),
            "lease duration: {err}"
        );

        assert_eq!(
            pod_count(&server),
            before,
            "nothing stored with kubectl {version}"
        );
    }
}

#[test]
fn stale_resource_version_is_a_conflict() {
    let server = Server::start();
    server.kubectl_ok("1.33", &["create", "configmap", "c", "--from-literal=a=1"]);
    let obj = server.kubectl_ok("1.33", &["get", "configmap", "c", "-o", "json"]);
    let mut v: serde_json::Value = serde_json::from_str(&obj).unwrap();
    server.kubectl_ok(
        "1.33",
        &["patch", "configmap", "c", "-p", r#"{"data":{"a":"2"}}"#],
    );
    v["data"]["a"] = "3".into();
    for version in common::KUBECTL_VERSIONS {
        let out = server.kubectl_with_stdin(version, &["replace", "-f", "-"], Some(&v.to_string()));
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("the object has been modified; please apply your changes to the latest version and try again"), "{err}");
    }
    assert_eq!(
        server.jsonpath("1.33", &["configmap", "c"], "{.data.a}"),
        "2"
    );
}

#[test]
fn requests_without_a_client_certificate_are_unauthorized() {
    let server = Server::start();
    // A kubeconfig with the cluster CA but no client certificate; kubectl would prompt for a
    // username if the user had no credentials at all, so it presents a token wkube does not know.
    let kc = std::fs::read_to_string(server.kubeconfig()).unwrap();
    let anonymous: String = kc
        .lines()
        .filter(|l| !l.contains("client-certificate-data") && !l.contains("client-key-data"))
        .map(|l| {
            if l.trim() == "user:" {
                "  user: {token: not-a-valid-token}".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = server.data_dir.path().join("anonymous.kubeconfig");
    std::fs::write(&path, anonymous).unwrap();
    let out = std::process::Command::new(common::kubectl_path("1.33"))
        .env("KUBECONFIG", &path)
        .args(["get", "pods"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // kubectl turns a 401 into exactly this message.
    assert!(err.contains("You must be logged in to the server"), "{err}");
}
