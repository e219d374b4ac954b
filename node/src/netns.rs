//! A pod's network namespace for its WASI guests. Guests run in-process, so to share
//! `localhost` and the pod IP with the OCI containers of their pod they run on a thread of
//! their own that has joined the sandbox's network namespace (`setns(2)` is per thread),
//! under a current-thread tokio runtime: every socket a guest opens is then created in
//! the pod's namespace. Threads that runtime starts (its blocking pool) inherit it.

use std::os::fd::AsFd;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("opening {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("joining the network namespace {path}: {source}")]
    Join {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the pod's runtime thread: {0}")]
    Thread(std::io::Error),
}

/// The runtime thread of one pod's network namespace; it ends when this is dropped (and
/// with it every task still spawned on it).
pub struct PodNetns {
    handle: Handle,
    _stop: oneshot::Sender<()>,
}

impl PodNetns {
    /// Joins the network namespace of process `pid` (the sandbox's pause process).
    pub fn of_process(pid: u32) -> Result<PodNetns, NetnsError> {
        let path = format!("/proc/{pid}/ns/net");
        let ns = std::fs::File::open(&path).map_err(|source| NetnsError::Open {
            path: path.clone(),
            source,
        })?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("pod-netns-{pid}"))
            .spawn(move || {
                let joined = rustix::thread::move_into_link_name_space(
                    ns.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(|e| NetnsError::Join {
                    path,
                    source: e.into(),
                });
                let runtime = joined.and_then(|()| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(NetnsError::Thread)
                });
                match runtime {
                    Ok(runtime) => {
                        let _ = ready_tx.send(Ok(runtime.handle().clone()));
                        runtime.block_on(async {
                            let _ = stopped.await;
                        });
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(NetnsError::Thread)?;
        let handle = ready_rx.recv().map_err(|_| {
            NetnsError::Thread(std::io::Error::other("the pod's runtime thread ended"))
        })??;
        Ok(PodNetns {
            handle,
            _stop: stop,
        })
    }

    /// Where to spawn what must run in the pod's network namespace.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}
