//! The spool as the SMTP sessions' store: a committed message is durable,
//! then handed to the pipeline's queue.

use postern_spool::{QueueId, Spool};
use std::io;
use tokio::sync::mpsc;

pub struct SpoolStore {
    pub spool: Spool,
    pub queue: mpsc::Sender<QueueId>,
    /// Messages waiting in the spool at which new mail is refused (452);
    /// from half of it on, MAIL is answered more and more slowly.
    pub max_depth: usize,
}

pub struct SpoolIncoming {
    incoming: postern_spool::Incoming,
    queue: mpsc::Sender<QueueId>,
}

impl postern_smtp::Store for SpoolStore {
    type Incoming = SpoolIncoming;

    fn pressure(&self) -> postern_smtp::Pressure {
        let depth = self.spool.depth();
        let soft = self.max_depth / 2;
        if depth >= self.max_depth {
            postern_smtp::Pressure::Full
        } else if depth > soft {
            // Up to one second, growing with the backlog.
            let share = (depth - soft) as f64 / (self.max_depth - soft).max(1) as f64;
            postern_smtp::Pressure::Slow(std::time::Duration::from_secs_f64(share))
        } else {
            postern_smtp::Pressure::Normal
        }
    }

    async fn create(&self, meta: &[u8]) -> io::Result<SpoolIncoming> {
        Ok(SpoolIncoming {
            incoming: self.spool.create(meta).await?,
            queue: self.queue.clone(),
        })
    }
}

impl postern_smtp::Incoming for SpoolIncoming {
    async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.incoming.write(data).await
    }

    async fn commit(self) -> io::Result<String> {
        let id = self.incoming.commit().await?;
        let text = id.to_string();
        // Durable now; if the pipeline's queue is gone (shutting down), the
        // message is picked up from the spool at the next start.
        let _ = self.queue.send(id).await;
        Ok(text)
    }

    async fn abort(self) {
        self.incoming.abort().await;
    }
}
