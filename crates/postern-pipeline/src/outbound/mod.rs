//! The outbound queue: deliveries that talk to a peer which may be down
//! (Relay, Send, DeliverToMailbox, Bounce, InvokeLambda EVENT,
//! DeliverToQBusiness) wait here, on disk, until each recipient has a final
//! outcome; then a DSN goes to the sender for those that failed.
//!
//! # Layout
//! - `mod.rs`: [`Outbound`]: queueing, releasing, the dispatcher, one attempt.
//! - `job.rs`: what a job is: its meta and the state its journal records.
//! - `route.rs`: one attempt against the peer of a route.
//! - `schedule.rs`: retry timing.
//! - `dsn.rs`: delivery status notifications.
//!
//! # Durability
//! Jobs live in their own spool (`DataDir/outbound`), with the inbound
//! spool's guarantees: a job is on disk before the action that queued it
//! counts as done. Each recipient's final outcome is journaled as soon as
//! the peer has answered for it, so a restart retries only the rest.
//!
//! Queueing is idempotent: a job's `origin` names the inbound message and
//! the action, and queueing an origin that is already queued returns that
//! job. A new job is *held* until its parent (the inbound message, or the
//! job a DSN reports on) has recorded it in its own journal and calls
//! [`Outbound::release`]; so a crash between the two cannot leave a job
//! that was delivered and removed while its parent, not knowing, queues it
//! again. At start, held jobs whose parent is gone are released.
//!
//! What cannot be made exactly-once is the peer's side: if the process
//! dies after a peer accepted a message and before that was journaled, the
//! message is sent again (RFC 5321 §6.1 accepts duplicates over loss).

pub mod dsn;
pub mod job;
pub mod route;
pub mod schedule;

use crate::Runtime;
use crate::trace::{TraceLog, now};
use arc_swap::ArcSwap;
use job::{ATTEMPT, AttemptRecord, DSN, JobMeta, JobState, RELEASED, Route, recipient_key};
use postern_delivery::RecipientOutcome;
use postern_spool::{QueueId, Spool};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::{Semaphore, mpsc, watch};

#[derive(Default)]
struct Index {
    /// Every job in the queue, by origin.
    by_origin: HashMap<String, QueueId>,
    /// Every job, with its parent and destination.
    jobs: HashMap<QueueId, (String, String)>,
    /// Jobs not yet released, by parent.
    held: HashMap<String, Vec<QueueId>>,
}

pub struct Outbound {
    spool: Spool,
    index: Mutex<Index>,
    schedule: mpsc::UnboundedSender<(f64, QueueId)>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<(f64, QueueId)>>>,
    destinations: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Jobs with an attempt in progress: one at a time per job.
    running: Mutex<std::collections::HashSet<QueueId>>,
    trace: Arc<TraceLog>,
}

/// A job's record in the message trace, written when it is finished.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct DeliveryTrace<'a> {
    kind: &'static str,
    queue_id: &'a str,
    parent: &'a str,
    rule: &'a str,
    action: &'a str,
    destination: String,
    mail_from: &'a str,
    attempts: u32,
    finished_at: f64,
    recipients: Vec<RecipientTrace<'a>>,
    dsn: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct RecipientTrace<'a> {
    recipient: &'a str,
    outcome: String,
}

/// How long a job waits when its destination is at its bound.
const DESTINATION_BUSY_MS: u64 = 1000;

fn io_other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

impl Outbound {
    /// Opens the queue under `dir` and schedules what it holds. `parents`
    /// are the inbound messages still in their spool: jobs held for one
    /// of them wait for its release; other held jobs are released.
    pub async fn open(
        dir: &Path,
        parents: &[QueueId],
        trace: Arc<TraceLog>,
    ) -> std::io::Result<Arc<Outbound>> {
        let (spool, ids) = Spool::open(dir).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let outbound = Arc::new(Outbound {
            spool,
            index: Mutex::new(Index::default()),
            schedule: tx,
            receiver: Mutex::new(Some(rx)),
            destinations: Mutex::new(HashMap::new()),
            running: Mutex::new(Default::default()),
            trace,
        });
        let parents: std::collections::HashSet<&str> =
            parents.iter().map(QueueId::as_str).collect();
        let mut held = Vec::new();
        for id in ids {
            let spooled = outbound.spool.read(&id).await?;
            let meta: JobMeta = serde_json::from_slice(&spooled.meta).map_err(io_other)?;
            let state = JobState::from_steps(outbound.spool.steps(&id).await?);
            {
                let mut index = outbound.index.lock().expect("index");
                index.by_origin.insert(meta.origin.clone(), id.clone());
                index
                    .jobs
                    .insert(id.clone(), (meta.parent.clone(), meta.route.destination()));
                if !state.released {
                    index
                        .held
                        .entry(meta.parent.clone())
                        .or_default()
                        .push(id.clone());
                }
            }
            if state.released {
                let _ = outbound.schedule.send((state.attempt.next_at, id));
            } else {
                held.push(meta.parent);
            }
        }
        for parent in held {
            let parent_is_job = QueueId::parse(&parent)
                .is_some_and(|p| outbound.index.lock().expect("index").jobs.contains_key(&p));
            if !parents.contains(parent.as_str()) && !parent_is_job {
                outbound.release(&parent).await?;
            }
        }
        Ok(outbound)
    }

    /// Jobs in the queue.
    pub fn depth(&self) -> usize {
        self.spool.depth()
    }

    /// Queues a job (held until [`Outbound::release`]); returns the job
    /// already queued for the same origin if there is one.
    pub async fn enqueue(&self, meta: &JobMeta, body: &[u8]) -> std::io::Result<QueueId> {
        if let Some(id) = self
            .index
            .lock()
            .expect("index")
            .by_origin
            .get(&meta.origin)
        {
            return Ok(id.clone());
        }
        let encoded = serde_json::to_vec(meta).map_err(io_other)?;
        let mut incoming = self.spool.create(&encoded).await?;
        incoming.write(body).await?;
        let id = incoming.commit().await?;
        let mut index = self.index.lock().expect("index");
        index.by_origin.insert(meta.origin.clone(), id.clone());
        index
            .jobs
            .insert(id.clone(), (meta.parent.clone(), meta.route.destination()));
        index
            .held
            .entry(meta.parent.clone())
            .or_default()
            .push(id.clone());
        metrics::gauge!("postern_outbound_queue_depth").set(self.spool.depth() as f64);
        Ok(id)
    }

    /// Releases every held job of `parent` for delivery.
    pub async fn release(&self, parent: &str) -> std::io::Result<()> {
        let held = self.index.lock().expect("index").held.remove(parent);
        let mut pending = held.unwrap_or_default().into_iter();
        while let Some(id) = pending.next() {
            if let Err(e) = self.spool.record_step(&id, RELEASED, b"").await {
                // Keep what is not released for the next call.
                let mut rest = vec![id];
                rest.extend(pending);
                self.index
                    .lock()
                    .expect("index")
                    .held
                    .insert(parent.to_string(), rest);
                return Err(e);
            }
            let _ = self.schedule.send((0.0, id));
        }
        Ok(())
    }

    /// Runs due jobs until `stop` turns true. Call once.
    pub async fn run(
        self: Arc<Self>,
        runtime: Arc<ArcSwap<Runtime>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let Some(mut rx) = self.receiver.lock().expect("receiver").take() else {
            return;
        };
        let max = runtime.load().peers.outbound.max_concurrency;
        let slots = Arc::new(Semaphore::new(max.max(1)));
        let mut heap: BinaryHeap<Reverse<(u64, QueueId)>> = BinaryHeap::new();
        let millis = |t: f64| (t.max(0.0) * 1000.0) as u64;
        loop {
            let now_ms = millis(now());
            while heap.peek().is_some_and(|Reverse((due, _))| *due <= now_ms) {
                let Some(Reverse((_, id))) = heap.pop() else {
                    break;
                };
                let Some(destination) = self
                    .index
                    .lock()
                    .expect("index")
                    .jobs
                    .get(&id)
                    .map(|(_, d)| d.clone())
                else {
                    // Finished meanwhile.
                    continue;
                };
                // A destination at its bound waits without holding one of
                // the global slots, so it cannot starve the others.
                let per_destination = runtime.load().peers.outbound.max_per_destination;
                let Ok(destination_permit) = self
                    .destination_slots(&destination, per_destination)
                    .try_acquire_owned()
                else {
                    heap.push(Reverse((now_ms + DESTINATION_BUSY_MS, id)));
                    continue;
                };
                let permit = tokio::select! {
                    p = slots.clone().acquire_owned() => p,
                    _ = stop.wait_for(|s| *s) => return,
                };
                let Ok(permit) = permit else { return };
                let this = self.clone();
                let runtime = runtime.load_full();
                tokio::spawn(async move {
                    if !this.running.lock().expect("running").insert(id.clone()) {
                        // An attempt is in progress; look again shortly.
                        let _ = this.schedule.send((now() + 1.0, id));
                        return;
                    }
                    let result = this.attempt(&runtime, &id).await;
                    this.running.lock().expect("running").remove(&id);
                    if let Err(e) = result {
                        tracing::warn!(job = %id, error = %e, "outbound job could not be read or updated; retrying in 60 s");
                        let _ = this.schedule.send((now() + 60.0, id));
                    }
                    drop(permit);
                    drop(destination_permit);
                    this.forget_idle_destination(&destination);
                });
            }
            let wait = heap
                .peek()
                .map(|Reverse((due, _))| {
                    std::time::Duration::from_millis(due.saturating_sub(now_ms))
                })
                .unwrap_or(std::time::Duration::from_secs(3600));
            tokio::select! {
                next = rx.recv() => match next {
                    Some((due, id)) => heap.push(Reverse((millis(due), id))),
                    None => return,
                },
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Drops the bound of a destination nothing is delivering to, so the
    /// map holds only destinations in use.
    fn forget_idle_destination(&self, destination: &str) {
        let mut map = self.destinations.lock().expect("destinations");
        if map
            .get(destination)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            map.remove(destination);
        }
    }

    fn destination_slots(&self, destination: &str, max: usize) -> Arc<Semaphore> {
        self.destinations
            .lock()
            .expect("destinations")
            .entry(destination.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(max.max(1))))
            .clone()
    }

    /// One attempt of one job: deliver to the recipients still pending,
    /// journal each final outcome, then either schedule the next attempt or
    /// finish the job.
    async fn attempt(&self, runtime: &Arc<Runtime>, id: &QueueId) -> std::io::Result<()> {
        let spooled = match self.spool.read(id).await {
            Ok(s) => s,
            // Finished by an earlier attempt that was scheduled twice.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let meta: JobMeta = serde_json::from_slice(&spooled.meta).map_err(io_other)?;
        let mut state = JobState::from_steps(self.spool.steps(id).await?);
        if state.attempt.next_at > now() + 0.5 {
            // An older schedule entry: the one for next_at is in the heap.
            return Ok(());
        }
        let pending: Vec<String> = state.pending(&meta).into_iter().cloned().collect();
        if !pending.is_empty() {
            let settings = &runtime.peers.outbound;
            let results = route::deliver(runtime, &meta, &pending, &spooled.message).await;
            let kind = route_kind(&meta.route);
            let mut deferred = Vec::new();
            for (recipient, outcome) in pending.iter().zip(results) {
                let label = match &outcome {
                    RecipientOutcome::Delivered(_) => "delivered",
                    RecipientOutcome::Deferred { .. } => "deferred",
                    RecipientOutcome::Failed { .. } => "failed",
                };
                metrics::counter!("postern_outbound_deliveries_total", "route" => kind, "outcome" => label).increment(1);
                if let RecipientOutcome::Deferred { reason, .. } = &outcome {
                    deferred.push((recipient.clone(), reason.clone(), outcome.clone()));
                    continue;
                }
                let value = serde_json::to_vec(&outcome).map_err(io_other)?;
                self.spool
                    .record_step(id, &recipient_key(recipient), &value)
                    .await?;
                state.finished.insert(recipient.clone(), outcome);
            }
            if !deferred.is_empty() {
                let attempts = state.attempt.attempts + 1;
                let last_error = deferred[0].1.clone();
                match schedule::next_attempt(
                    now(),
                    meta.expires_at,
                    attempts,
                    settings.retry_initial,
                    settings.retry_max,
                ) {
                    Some(next_at) => {
                        let record = AttemptRecord {
                            attempts,
                            next_at,
                            last_error: last_error.clone(),
                        };
                        self.spool
                            .record_step(
                                id,
                                ATTEMPT,
                                &serde_json::to_vec(&record).map_err(io_other)?,
                            )
                            .await?;
                        tracing::info!(job = %id, attempts, next_in = next_at - now(), error = %last_error, "delivery deferred");
                        let _ = self.schedule.send((next_at, id.clone()));
                        return Ok(());
                    }
                    None => {
                        // Out of time: what is still deferred fails for good.
                        for (recipient, reason, outcome) in deferred {
                            let reply = match outcome {
                                RecipientOutcome::Deferred { reply, .. } => reply,
                                _ => None,
                            };
                            let failed = RecipientOutcome::Failed {
                                reason: format!("gave up after {attempts} attempts: {reason}"),
                                reply,
                            };
                            let value = serde_json::to_vec(&failed).map_err(io_other)?;
                            self.spool
                                .record_step(id, &recipient_key(&recipient), &value)
                                .await?;
                            state.finished.insert(recipient, failed);
                        }
                    }
                }
                state.attempt.attempts = attempts;
            } else {
                state.attempt.attempts += 1;
            }
        }
        self.finish(runtime, id, &meta, &state, &spooled.message)
            .await
    }

    /// Every recipient has its final outcome: a DSN for those that failed,
    /// the trace, and the job leaves the queue.
    async fn finish(
        &self,
        runtime: &Arc<Runtime>,
        id: &QueueId,
        meta: &JobMeta,
        state: &JobState,
        body: &[u8],
    ) -> std::io::Result<()> {
        let failed: Vec<dsn::FailedRecipient> = meta
            .recipients
            .iter()
            .filter_map(|r| match state.finished.get(r) {
                Some(RecipientOutcome::Failed { reason, reply }) => Some(dsn::FailedRecipient {
                    recipient: r.clone(),
                    // A failure is permanent even when the last answer
                    // was temporary (the lifetime ran out): class 5.
                    status: reply
                        .as_ref()
                        .and_then(|r| r.status.clone())
                        .filter(|s| s.starts_with('5') || s.starts_with('4'))
                        .map(|s| format!("5{}", &s[1..]))
                        .unwrap_or_else(|| "5.0.0".into()),
                    remote_mta: None,
                    diagnostic: match reply {
                        Some(reply) => format!("smtp; {reply}"),
                        None => format!("x-postern; {reason}"),
                    },
                }),
                _ => None,
            })
            .collect();
        let mut dsn_outcome = state.dsn.clone();
        if dsn_outcome.is_none() && !failed.is_empty() {
            let text = match meta.dsn_to.as_deref() {
                Some(to) if !to.is_empty() && meta.route.carries_mail() => {
                    let peers = &runtime.peers.outbound;
                    let message = dsn::build(&dsn::Report {
                        reporting_mta: &runtime.hostname,
                        from: &peers.bounce_sender,
                        to,
                        queue_id: meta.parent.as_str(),
                        report_id: id.as_str(),
                        arrival: meta.received_at,
                        recipients: &failed,
                        text: None,
                        original: body,
                    });
                    let job = self
                        .enqueue(
                            &dsn_job(runtime, id.as_str(), &format!("{id}/dsn"), to, meta),
                            &message,
                        )
                        .await?;
                    metrics::counter!("postern_dsn_total", "reason" => "delivery_failed")
                        .increment(1);
                    format!("DSN queued as {job}")
                }
                _ => "no DSN: the sender is <> or the job is not mail".to_string(),
            };
            self.spool.record_step(id, DSN, text.as_bytes()).await?;
            dsn_outcome = Some(text);
        }
        self.release(id.as_str()).await?;

        let record = DeliveryTrace {
            kind: "Delivery",
            queue_id: id.as_str(),
            parent: &meta.parent,
            rule: &meta.rule,
            action: &meta.action,
            destination: meta.route.destination(),
            mail_from: &meta.mail_from,
            attempts: state.attempt.attempts.max(1),
            finished_at: now(),
            recipients: meta
                .recipients
                .iter()
                .map(|r| RecipientTrace {
                    recipient: r,
                    outcome: state.finished.get(r).map(outcome_text).unwrap_or_default(),
                })
                .collect(),
            dsn: dsn_outcome,
        };
        let trace = self.trace.clone();
        let line = serde_json::to_value(&record).map_err(io_other)?;
        let _ = tokio::task::spawn_blocking(move || trace.append(&line)).await;
        tracing::info!(job = %id, parent = %meta.parent, destination = %meta.route.destination(), "delivery finished");

        self.spool.remove(id).await?;
        let mut index = self.index.lock().expect("index");
        index.jobs.remove(id);
        index.by_origin.remove(&meta.origin);
        metrics::gauge!("postern_outbound_queue_depth").set(self.spool.depth() as f64);
        Ok(())
    }
}

/// A DSN job: to the sender's exchangers (or the bounce relay), from <>,
/// and never a DSN about a DSN.
pub fn dsn_job(
    runtime: &Runtime,
    parent: &str,
    origin: &str,
    to: &str,
    about: &JobMeta,
) -> JobMeta {
    let route = match &runtime.peers.outbound.bounce_relay {
        Some(relay_id) => Route::Relay {
            relay_id: relay_id.clone(),
        },
        None => Route::Mx {
            domain: to
                .rsplit_once('@')
                .map(|(_, d)| d.to_ascii_lowercase())
                .unwrap_or_default(),
        },
    };
    let t = now();
    JobMeta {
        origin: origin.to_string(),
        parent: parent.to_string(),
        route,
        mail_from: String::new(),
        recipients: vec![to.to_string()],
        dsn_to: None,
        queued_at: t,
        expires_at: t + runtime.peers.outbound.lifetime.as_secs_f64(),
        rule: about.rule.clone(),
        action: "DSN".into(),
        received_at: about.received_at,
        original_mail_from: String::new(),
    }
}

pub fn outcome_text(outcome: &RecipientOutcome) -> String {
    match outcome {
        RecipientOutcome::Delivered(reply) => format!("delivered: {reply}"),
        RecipientOutcome::Deferred { reason, .. } => format!("deferred: {reason}"),
        RecipientOutcome::Failed { reason, .. } => format!("failed: {reason}"),
    }
}

fn route_kind(route: &Route) -> &'static str {
    match route {
        Route::Relay { .. } => "relay",
        Route::Mx { .. } => "mx",
        Route::Mailbox { .. } => "mailbox",
        Route::Http { .. } => "http",
    }
}
