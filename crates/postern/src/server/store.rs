//! The spool as the SMTP sessions' store: a committed message is durable,
//! then handed to the pipeline's queue.

use postern_spool::{QueueId, Spool};
use std::io;
use tokio::sync::mpsc;

pub struct SpoolStore {
    pub spool: Spool,
    pub queue: mpsc::Sender<QueueId>,
}

pub struct SpoolIncoming {
    incoming: postern_spool::Incoming,
    queue: mpsc::Sender<QueueId>,
}

impl postern_smtp::Store for SpoolStore {
    type Incoming = SpoolIncoming;

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
