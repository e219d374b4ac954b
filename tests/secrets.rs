//! Secrets with the real kubectl (oldest and newest): the typed generators, `stringData`,
//! Kubernetes' validation messages, and encryption at rest: after writes on every member, a
//! compacted raft log, a member that joined from a snapshot and a key rotation, no file
//! under any member's data directory holds a Secret's plaintext or its base64, while
//! kubectl still reads the values.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use common::{Server, KUBECTL_VERSIONS};

/// Small enough that the writes below compact the log and a late joiner needs a snapshot.
const SMALL_LOG: &[&str] = &["--raft-log-keep", "5", "--raft-compact-every", "10"];

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if kind.is_file() {
            // A file may vanish between listing and reading (sled, logs): nothing to find.
            let bytes = std::fs::read(&path).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path);
            }
        }
    }
    found
}

fn wkube_ok(server: &Server, args: &[&str]) -> String {
    let out = server.wkube().args(args).output().expect("run wkube");
    assert!(
        out.status.success(),
        "wkube {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The secrets kubectl `version` creates through `server`, each holding a distinctive
/// plaintext; returns (secret, key, plaintext).
fn create_secrets(server: &Server, version: &str) -> Vec<(String, String, String)> {
    let tag = version.replace('.', "");
    let literal = format!("Pl41n-literal-{tag}-x7");
    let string_data = format!("Pl41n-stringdata-{tag}-q9");
    let (generic, declared, registry, tls) = (
        format!("generic-{tag}"),
        format!("declared-{tag}"),
        format!("registry-{tag}"),
        format!("tls-{tag}"),
    );
    server.kubectl_ok(
        version,
        &[
            "create",
            "secret",
            "generic",
            &generic,
            &format!("--from-literal=password={literal}"),
        ],
    );
    // Declared with stringData and applied: kubectl also keeps the manifest, plaintext
    // included, in the last-applied-configuration annotation.
    let manifest = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {declared}\ntype: kubernetes.io/basic-auth\nstringData:\n  username: admin\n  password: {string_data}\n"
    );
    let out = server.kubectl_with_stdin(version, &["apply", "-f", "-"], Some(&manifest));
    assert!(out.status.success(), "{out:?}");
    server.kubectl_ok(
        version,
        &[
            "create",
            "secret",
            "docker-registry",
            &registry,
            "--docker-server=registry.example",
            "--docker-username=robot",
            "--docker-password=hunter2",
        ],
    );
    let pki = server.data_dir.path().join("tls");
    server.kubectl_ok(
        version,
        &[
            "create",
            "secret",
            "tls",
            &tls,
            &format!("--cert={}", pki.join("server.crt").display()),
            &format!("--key={}", pki.join("server.key").display()),
        ],
    );
    vec![
        (generic, "password".into(), literal),
        (declared, "password".into(), string_data),
    ]
}

#[test]
fn secrets_are_encrypted_at_rest_on_every_member_and_read_back_by_kubectl() {
    let a = Server::start_member_with("a", None, SMALL_LOG);
    let b = Server::start_member_with("b", Some(&a), SMALL_LOG);
    let mut plaintexts = Vec::new();
    for (server, version) in [&a, &b].into_iter().zip(KUBECTL_VERSIONS) {
        plaintexts.extend(create_secrets(server, version));
        let table = server.kubectl_ok(version, &["get", "secrets"]);
        let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(header, ["NAME", "TYPE", "DATA", "AGE"]);
        let tag = version.replace('.', "");
        for (name, ty, data) in [
            ("generic", "Opaque", "1"),
            ("declared", "kubernetes.io/basic-auth", "2"),
            ("registry", "kubernetes.io/dockerconfigjson", "1"),
            ("tls", "kubernetes.io/tls", "2"),
        ] {
            let name = format!("{name}-{tag}");
            let row = table
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} in {table}"));
            let cells: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(cells[1..3], [ty, data], "{row}");
        }
    }
    // A WASI guest on member a gets a Secret as a volume and in its environment; it prints
    // only the file's length. The node keeps the bytes in memory (checked with the rest).
    let (name, key, plain) = &plaintexts[0];
    a.import("confwatch", "confwatch:1.0");
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: reader}}\nspec:\n  nodeName: a\n  restartPolicy: Never\n  containers:\n  - name: app\n    image: confwatch:1.0\n    command: [confwatch, ls, /etc/secret]\n    env:\n    - name: PASSWORD\n      valueFrom: {{secretKeyRef: {{name: {name}, key: {key}}}}}\n    volumeMounts: [{{name: s, mountPath: /etc/secret}}]\n  volumes: [{{name: s, secret: {{secretName: {name}}}}}]\n"
    );
    let out = a.kubectl_with_stdin(KUBECTL_VERSIONS[1], &["apply", "-f", "-"], Some(&pod));
    assert!(out.status.success(), "{out:?}");
    let want = format!("{key} {}", plain.len());
    common::wait_for(
        "the guest to list the secret volume",
        Duration::from_secs(60),
        || {
            let out = a.kubectl(KUBECTL_VERSIONS[1], &["logs", "reader"]);
            String::from_utf8_lossy(&out.stdout)
                .contains(&want)
                .then_some(())
        },
    );

    // Enough writes for both members to compact their logs past the Secrets' entries.
    for i in 0..30 {
        a.kubectl_ok(
            KUBECTL_VERSIONS[1],
            &["create", "configmap", &format!("filler-{i}")],
        );
    }
    // Joins after the compaction: it gets the Secrets from a snapshot.
    let c = Server::start_member_with("c", Some(&a), SMALL_LOG);
    let members = [&a, &b, &c];
    let read_all = |what: &str| {
        for (m, version) in members.iter().zip(KUBECTL_VERSIONS.iter().cycle()) {
            for (name, key, plain) in &plaintexts {
                let got = common::wait_for(what, Duration::from_secs(10), || {
                    let v = m.jsonpath(version, &["secret", name], &format!("{{.data.{key}}}"));
                    (!v.is_empty()).then_some(v)
                });
                assert_eq!(got, b64(plain), "{name} through {}", m.api_addr());
            }
        }
    };
    read_all("the secrets on every member");

    let rotated = wkube_ok(&c, &["secrets", "rotate-key"]);
    assert!(rotated.contains("re-encrypted Secrets: 8\n"), "{rotated}");
    let current = rotated.split_whitespace().nth(2).unwrap().to_string();
    read_all("the secrets after rotation");
    for m in members {
        let report = common::wait_for(
            "every member to apply the rotation",
            Duration::from_secs(10),
            || {
                let report = wkube_ok(m, &["secrets", "check"]);
                report
                    .contains(&format!("encrypted with data key {current}: 8\n"))
                    .then_some(report)
            },
        );
        assert!(report.contains("plaintext: 0\n"), "{report}");
        assert!(
            report.contains(&format!("(keyring: {current})")),
            "{report}"
        );
    }

    // The bytes: no plaintext and no base64 of it in any file of any member (store, logs,
    // caches, the server's own log). The search does see what the store holds in plaintext.
    assert!(!files_holding(&a.data_dir.path().join("store"), b"filler-29").is_empty());
    let mut leaks = Vec::new();
    for m in members {
        for (_, _, plain) in &plaintexts {
            for needle in [plain.clone(), b64(plain)] {
                for file in files_holding(m.data_dir.path(), needle.as_bytes()) {
                    leaks.push(format!("{needle} in {}", file.display()));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "{leaks:#?}");

    // A stopped member is checked from its files.
    let mut c = c;
    c.kill9();
    let out = c
        .wkube()
        .args(["secrets", "check", "--data-dir"])
        .arg(c.data_dir.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("plaintext: 0\n"), "{report}");
}

#[test]
fn bad_secrets_get_kubernetes_messages() {
    let server = Server::start();
    for version in KUBECTL_VERSIONS {
        let cases = [
            (
                "apiVersion: v1\nkind: Secret\nmetadata: {name: b}\ndata: {a: '!!'}\n",
                "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte 0",
            ),
            (
                "apiVersion: v1\nkind: Secret\nmetadata: {name: t}\ntype: kubernetes.io/tls\ndata: {tls.crt: eA==}\n",
                "The Secret \"t\" is invalid: data[tls.key]: Required value",
            ),
            (
                "apiVersion: v1\nkind: Secret\nmetadata: {name: d}\ntype: kubernetes.io/dockerconfigjson\nstringData: {.dockerconfigjson: 'not json'}\n",
                "The Secret \"d\" is invalid: data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\"",
            ),
            (
                "apiVersion: v1\nkind: Secret\nmetadata: {name: k}\nstringData: {'a/b': x}\n",
                "The Secret \"k\" is invalid: data[a/b]: Invalid value: \"a/b\": a valid config key must consist of alphanumeric characters",
            ),
            (
                "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/service-account-token\n",
                "The Secret \"s\" is invalid: metadata.annotations[kubernetes.io/service-account.name]: Required value",
            ),
        ];
        for (manifest, want) in cases {
            let out = server.kubectl_with_stdin(version, &["create", "-f", "-"], Some(manifest));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success() && err.contains(want),
                "{version}: {err}"
            );
        }
        // `type` cannot change.
        let name = format!("typed-{}", version.replace('.', ""));
        server.kubectl_ok(
            version,
            &["create", "secret", "generic", &name, "--from-literal=a=b"],
        );
        let out = server.kubectl(
            version,
            &[
                "patch",
                "secret",
                &name,
                "-p",
                r#"{"type":"kubernetes.io/basic-auth","stringData":{"username":"u"}}"#,
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && err.contains(
                    "type: Invalid value: \"kubernetes.io/basic-auth\": field is immutable"
                ),
            "{err}"
        );
        // stringData in a patch is merged into data and not kept.
        server.kubectl_ok(
            version,
            &[
                "patch",
                "secret",
                &name,
                "-p",
                r#"{"stringData":{"c":"d"}}"#,
            ],
        );
        let data = server.jsonpath(version, &["secret", &name], "{.data.c} {.stringData}");
        assert_eq!(data.trim(), b64("d"));
    }
}
