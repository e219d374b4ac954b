//! Controllers that must run once per cluster (the scheduler, the namespace controller) run on
//! the raft leader only: started when this member becomes leader, stopped when it stops
//! being leader. Their writes stay safe under any overlap (optimistic concurrency), so the
//! handover needs no lease of its own.

use std::future::Future;

use tokio::sync::watch;

/// Runs `controller` while `leading` says this member leads, restarting it at each new term
/// of leadership. Returns when the controller itself returns (the store closed, or it
/// failed). When `leading`'s sender is gone (the store stopped), it stops the controller and
/// waits forever: why the store stopped is for the store's owner to report.
pub async fn run_while_leading<F, Fut, E>(
    mut leading: watch::Receiver<bool>,
    controller: F,
) -> Result<(), E>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Send + 'static,
{
    loop {
        let store_gone = leading.wait_for(|l| *l).await.is_err();
        if store_gone {
            return std::future::pending().await;
        }
        let mut task = tokio::spawn(controller());
        tokio::select! {
            outcome = &mut task => {
                return outcome.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            }
            store_gone = async { leading.wait_for(|l| !*l).await.is_err() } => {
                task.abort();
                if store_gone {
                    return std::future::pending().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_controller_runs_only_while_leading() {
        let (tx, rx) = watch::channel(false);
        let (starts, running) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (s, r) = (starts.clone(), running.clone());
        let supervisor = tokio::spawn(run_while_leading(rx, move || {
            let (s, r) = (s.clone(), r.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                r.fetch_add(1, Ordering::SeqCst);
                // Counts itself out when aborted (dropped).
                struct Out(Arc<AtomicUsize>);
                impl Drop for Out {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                let _out = Out(r);
                std::future::pending::<Result<(), ()>>().await
            }
        }));
        // Polls for a condition with a deadline; yields first so the supervisor gets to run.
        let until = |what: &str, cond: &dyn Fn() -> bool| {
            let what = what.to_string();
            let ok = (0..5000).any(|_| {
                std::thread::sleep(Duration::from_millis(1));
                cond()
            });
            assert!(ok, "timed out waiting until {what}");
        };
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            starts.load(Ordering::SeqCst),
            0,
            "not started as a follower"
        );
        tx.send_replace(true);
        tokio::task::yield_now().await;
        until("started", &|| running.load(Ordering::SeqCst) == 1);
        tx.send_replace(false);
        until("stopped when leadership is lost", &|| {
            running.load(Ordering::SeqCst) == 0
        });
        tx.send_replace(true);
        until("started again", &|| {
            starts.load(Ordering::SeqCst) == 2 && running.load(Ordering::SeqCst) == 1
        });
        drop(tx);
        until("stopped with the store", &|| {
            running.load(Ordering::SeqCst) == 0
        });
        assert!(
            !supervisor.is_finished(),
            "the store's end is not the controller's to report"
        );
        supervisor.abort();
    }
}
