//! The worker pool: queue ids come in (from sessions after commit, and from
//! the spool's recovery at start); a fixed number of workers process them.
//! A message that cannot be finished now stays in the spool and is tried
//! again after a delay.

use crate::Runtime;
use crate::process::{Context, process};
use arc_swap::ArcSwap;
use postern_spool::QueueId;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc, watch};

pub struct Pipeline {
    pub context: Arc<Context>,
    pub runtime: Arc<ArcSwap<Runtime>>,
}

impl Pipeline {
    /// Starts `workers` tasks taking ids from `queue`; `retry` feeds ids
    /// back after a delay. Returns when `stop` turns true (each worker
    /// finishes the message it has) or the queue is closed. Messages still
    /// queued stay in the spool for the next start.
    pub async fn run(
        self: Arc<Self>,
        queue: mpsc::Receiver<QueueId>,
        retry: mpsc::Sender<QueueId>,
        workers: usize,
        stop: watch::Receiver<bool>,
    ) {
        let queue = Arc::new(Mutex::new(queue));
        let mut tasks = Vec::new();
        for _ in 0..workers.max(1) {
            let queue = queue.clone();
            let pipeline = self.clone();
            let retry = retry.clone();
            let mut stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let next = tokio::select! {
                        next = async { queue.lock().await.recv().await } => next,
                        _ = stop.wait_for(|s| *s) => None,
                    };
                    let Some(id) = next else { break };
                    // Messages in flight finish under the config they started with.
                    let runtime = pipeline.runtime.load_full();
                    metrics::gauge!("postern_spool_depth").set(pipeline.context.spool.depth() as f64);
                    if let Err(e) = process(&pipeline.context, &runtime, &id).await {
                        tracing::warn!(queue_id = %id, reason = %e, "message deferred, will retry");
                        metrics::counter!("postern_pipeline_messages_total", "rule_set" => "", "outcome" => "deferred").increment(1);
                        let retry = retry.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            let _ = retry.send(id).await;
                        });
                    }
                    metrics::gauge!("postern_spool_depth").set(pipeline.context.spool.depth() as f64);
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}
