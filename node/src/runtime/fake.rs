//! A scripted [`Runtime`] for the pod worker's tests: no wasm, no processes.
//!
//! Behaviour is set per image reference (as in `ResolvedImage::reference`);
//! unscripted images run until stopped. Timers are tokio timers, so tests can use
//! `tokio::time::pause()` and advance time deterministically.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;

use super::{ContainerConfig, ExitStatus, RunningContainer, Runtime, RuntimeError};
use crate::images::ResolvedImage;
use crate::logs::Stream;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeBehavior {
    /// Exits with `code` after `after`.
    Exit { code: i32, after: Duration },
    /// Runs until stopped. With `on_stop: Some((code, delay))` it behaves like a
    /// process that handles SIGTERM: exits with `code` after `delay` if that is
    /// within the grace period, and is killed (137) at the end of the grace period
    /// otherwise. With `None` it is killed at once.
    RunUntilStopped { on_stop: Option<(i32, Duration)> },
    /// `prepare` (and so `start`) fails with this message, like a bad image.
    FailPrepare(String),
    /// `start` fails with this message, like an instantiation error.
    FailStart(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeScript {
    pub behavior: FakeBehavior,
    /// Lines written to the container's stdout when it starts.
    pub stdout: Vec<String>,
}

impl From<FakeBehavior> for FakeScript {
    fn from(behavior: FakeBehavior) -> Self {
        FakeScript {
            behavior,
            stdout: Vec::new(),
        }
    }
}

/// What the fake saw of one `start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRecord {
    pub id: String,
    pub reference: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

#[derive(Clone, Default)]
pub struct FakeRuntime {
    state: Arc<Mutex<FakeState>>,
}

#[derive(Default)]
struct FakeState {
    scripts: HashMap<String, FakeScript>,
    prepared: Vec<String>,
    started: Vec<StartRecord>,
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    /// Scripts the containers of `reference` (exact, normalized reference).
    pub fn script(&self, reference: &str, script: impl Into<FakeScript>) {
        self.lock()
            .scripts
            .insert(reference.to_owned(), script.into());
    }

    /// References passed to `prepare` (and to `start`, which prepares), in order.
    pub fn prepared(&self) -> Vec<String> {
        self.lock().prepared.clone()
    }

    pub fn started(&self) -> Vec<StartRecord> {
        self.lock().started.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn script_for(&self, reference: &str) -> FakeScript {
        self.lock()
            .scripts
            .get(reference)
            .cloned()
            .unwrap_or_else(|| FakeBehavior::RunUntilStopped { on_stop: None }.into())
    }

    fn do_prepare(&self, image: &ResolvedImage) -> Result<FakeScript, RuntimeError> {
        self.lock().prepared.push(image.reference.clone());
        let script = self.script_for(&image.reference);
        if let FakeBehavior::FailPrepare(msg) = &script.behavior {
            return Err(RuntimeError::Other(msg.clone()));
        }
        Ok(script)
    }
}

impl Runtime for FakeRuntime {
    fn prepare<'a>(&'a self, image: &'a ResolvedImage) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move { self.do_prepare(image).map(drop) })
    }

    fn start<'a>(
        &'a self,
        image: &'a ResolvedImage,
        config: ContainerConfig,
    ) -> BoxFuture<'a, Result<RunningContainer, RuntimeError>> {
        Box::pin(async move {
            let script = self.do_prepare(image)?;
            if let FakeBehavior::FailStart(msg) = &script.behavior {
                return Err(RuntimeError::Instantiate {
                    id: config.id,
                    message: msg.clone(),
                });
            }
            self.lock().started.push(StartRecord {
                id: config.id.clone(),
                reference: image.reference.clone(),
                argv: config.argv.clone(),
                env: config.env.clone(),
            });
            for line in &script.stdout {
                let mut data = line.clone().into_bytes();
                data.push(b'\n');
                config
                    .log
                    .write_stream(Stream::Stdout, &data)
                    .map_err(|e| RuntimeError::Other(format!("writing fake log: {e}")))?;
            }

            let (handle, mut task) = RunningContainer::new(config.id, Utc::now());
            let log = config.log;
            tokio::spawn(async move {
                let status = match script.behavior {
                    FakeBehavior::Exit { code, after } => tokio::select! {
                        _ = tokio::time::sleep(after) => ExitStatus::exited(code),
                        _ = task.stop_requested() => ExitStatus::killed(),
                    },
                    FakeBehavior::RunUntilStopped { on_stop } => {
                        let grace = task.stop_requested().await;
                        match on_stop {
                            Some((code, delay)) if delay <= grace => {
                                tokio::time::sleep(delay).await;
                                ExitStatus::exited(code)
                            }
                            Some(_) => {
                                tokio::time::sleep(grace).await;
                                ExitStatus::killed()
                            }
                            None => ExitStatus::killed(),
                        }
                    }
                    FakeBehavior::FailPrepare(_) | FakeBehavior::FailStart(_) => {
                        unreachable!("handled before start")
                    }
                };
                let _ = log.close();
                task.exited(status);
            });
            Ok(handle)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::ArtifactKind;
    use crate::logs::{read_log, LogOptions, LogWriter};
    use crate::runtime::ExitReason;

    fn image(reference: &str) -> ResolvedImage {
        ResolvedImage {
            reference: reference.into(),
            manifest_digest: "sha256:00".into(),
            artifact: ArtifactKind::Wasm,
            wasm_layer: None,
        }
    }

    fn config(dir: &std::path::Path, id: &str) -> ContainerConfig {
        ContainerConfig {
            network: false,
            id: id.into(),
            pod_uid: "uid".into(),
            name: "app".into(),
            argv: vec!["app".into()],
            env: vec![("A".into(), "1".into())],
            log: LogWriter::create(&dir.join(format!("{id}.log"))).unwrap(),
            mounts: Vec::new(),
            memory_limit: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn scripted_exit_after_delay() {
        let dir = tempfile::tempdir().unwrap();
        let rt = FakeRuntime::new();
        rt.script(
            "img",
            FakeScript {
                behavior: FakeBehavior::Exit {
                    code: 2,
                    after: Duration::from_secs(5),
                },
                stdout: vec!["hi".into()],
            },
        );
        let mut c = rt
            .start(&image("img"), config(dir.path(), "c1"))
            .await
            .unwrap();
        let status = c.wait().await;
        assert_eq!((status.code, status.reason), (2, ExitReason::Error));
        let log = read_log(&dir.path().join("c1.log"), &LogOptions::default()).unwrap();
        assert_eq!(log, b"hi\n");
        assert_eq!(rt.started()[0].argv, ["app"]);
    }

    #[tokio::test(start_paused = true)]
    async fn graceful_stop_within_grace_and_kill_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let rt = FakeRuntime::new();
        rt.script(
            "img",
            FakeBehavior::RunUntilStopped {
                on_stop: Some((0, Duration::from_secs(3))),
            },
        );
        let mut c = rt
            .start(&image("img"), config(dir.path(), "a"))
            .await
            .unwrap();
        c.stop(Duration::from_secs(10));
        assert_eq!(c.wait().await.reason, ExitReason::Completed);

        let mut c = rt
            .start(&image("img"), config(dir.path(), "b"))
            .await
            .unwrap();
        c.stop(Duration::from_secs(1));
        assert_eq!(c.wait().await.code, 137);
    }

    #[tokio::test]
    async fn failures_are_scripted() {
        let dir = tempfile::tempdir().unwrap();
        let rt = FakeRuntime::new();
        rt.script("bad", FakeBehavior::FailPrepare("no such image".into()));
        rt.script("nostart", FakeBehavior::FailStart("pool exhausted".into()));
        assert!(rt.prepare(&image("bad")).await.is_err());
        assert!(rt
            .start(&image("nostart"), config(dir.path(), "x"))
            .await
            .is_err());
        assert!(rt.started().is_empty());
        assert_eq!(rt.prepared(), ["bad", "nostart"]);
    }
}
