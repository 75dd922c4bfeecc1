//! The shipper: drains the audit queue into batches and streams them to the control
//! plane's `Audit.Ship` (same URL, TLS and token as sync), then waits for each batch's ack.
//!
//! - Connected: a batch goes out when it is full or every `flush_every`; at most `window`
//!   batches are unacknowledged at once. Past that (acks lag) new events go to the spool.
//!   Spooled events are read back and sent as the window allows, and the spool forgets
//!   them once acknowledged.
//! - Not connected: events go to the spool (without one they wait in the queue, which
//!   drops what does not fit). Reconnects back off exponentially with jitter.
//! - A broken stream: unacknowledged batches are sent again on the next stream, same ids
//!   (the control plane removes duplicates): spooled ones from the spool, in-memory ones
//!   through the spool when there is one (so a restart does not lose them).
//! - Events that cannot be kept are counted; once shipping works again a `GapEvent` with
//!   the count and time span goes into the trail.

use canopy_proto::v1 as pb;
use canopy_proto::v1::audit_client::AuditClient;
use prost::Message;
use rand::Rng;
use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use super::queue::Gap;
use super::spool::Spool;
use super::Audit;
use crate::sync::SyncError;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Where and how the shipper sends.
#[derive(Clone)]
pub struct ShipperConfig {
    pub control_plane: String,
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    /// The data-plane token (as for sync; never logged).
    pub token: String,
    /// `None`: no spool (events wait in the in-memory queue only).
    pub spool: Option<PathBuf>,
    pub spool_max_bytes: u64,
    pub batch_max_events: usize,
    /// About this many encoded bytes per batch (the control plane's message limit is 4 MiB).
    pub batch_max_bytes: usize,
    pub flush_every: Duration,
    /// How often the queue is drained. The request path never wakes the shipper (a wake
    /// per event would cost every request a task notification); it polls the queue instead.
    pub drain_every: Duration,
    /// Batches sent and not yet acknowledged, at most.
    pub window: usize,
}

impl ShipperConfig {
    pub fn new(control_plane: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            control_plane: control_plane.into(),
            tls: None,
            token: token.into(),
            spool: None,
            spool_max_bytes: super::DEFAULT_SPOOL_MAX_BYTES,
            batch_max_events: 512,
            batch_max_bytes: 1024 * 1024,
            flush_every: Duration::from_millis(200),
            drain_every: Duration::from_millis(10),
            window: 8,
        }
    }
}

impl std::fmt::Debug for ShipperConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShipperConfig")
            .field("control_plane", &self.control_plane)
            .field("tls", &self.tls.is_some())
            .field("spool", &self.spool)
            .field("spool_max_bytes", &self.spool_max_bytes)
            .finish_non_exhaustive()
    }
}

enum Source {
    /// Sent from memory: kept until acknowledged, to be sent again.
    Memory(Vec<pb::AuditEvent>),
    /// Read from the spool up to this offset.
    Spool(u64),
}

struct InFlight {
    seq: u64,
    count: usize,
    source: Source,
    acked: bool,
}

struct Conn {
    tx: mpsc::Sender<pb::AuditBatch>,
    acks: tonic::Streaming<pb::AuditAck>,
}

struct Shipper {
    audit: Arc<Audit>,
    cfg: ShipperConfig,
    spool: Option<Spool>,
    /// Events taken from the queue, not yet sent or spooled.
    buf: Vec<pb::AuditEvent>,
    /// In-memory batches a broken stream left unacknowledged (without a spool).
    resend: VecDeque<Vec<pb::AuditEvent>>,
    seq: u64,
    /// The queue's senders are gone (the data plane is shutting down).
    closed: bool,
    /// The last connection error logged, so a long outage logs once, not every retry.
    last_error: Option<String>,
}

/// Runs until `stop` fires, then puts what it holds into the spool and returns.
pub async fn run(
    audit: Arc<Audit>,
    mut rx: mpsc::Receiver<pb::AuditEvent>,
    cfg: ShipperConfig,
    mut stop: oneshot::Receiver<()>,
) {
    let spool = cfg.spool.as_deref().and_then(|path| {
        match Spool::open(path, cfg.spool_max_bytes) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot open the audit spool; events wait in memory only");
                None
            }
        }
    });
    if spool.is_none() {
        tracing::info!("no audit spool: while the control plane is unreachable, audit events wait in memory and are dropped when the queue is full");
    }
    let mut sh = Shipper {
        audit,
        cfg,
        spool,
        buf: Vec::new(),
        resend: VecDeque::new(),
        seq: 0,
        closed: false,
        last_error: None,
    };
    sh.gauges();
    let mut backoff = BACKOFF_MIN;
    loop {
        let connect = connect(sh.cfg.clone());
        let conn = match sh.offline(&mut rx, connect, &mut stop).await {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                sh.log_error(&e);
                if !sh.wait(&mut rx, jitter(backoff), &mut stop).await {
                    break;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
            None => break,
        };
        sh.audit.connected.store(true, Relaxed);
        let (acked, stopped) = sh.online(&mut rx, conn, &mut stop).await;
        sh.audit.connected.store(false, Relaxed);
        if stopped {
            break;
        }
        if acked {
            backoff = BACKOFF_MIN;
        }
        if !sh.wait(&mut rx, jitter(backoff), &mut stop).await {
            break;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    sh.shutdown(&mut rx).await;
}

fn jitter(backoff: Duration) -> Duration {
    let ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
}

async fn connect(cfg: ShipperConfig) -> Result<Conn, SyncError> {
    let channel = crate::sync::connect(&cfg.control_plane, cfg.tls.as_ref()).await?;
    let mut client = AuditClient::new(channel);
    let (tx, rx) = mpsc::channel(cfg.window + 1);
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    req.metadata_mut()
        .insert("authorization", crate::sync::bearer(&cfg.token)?);
    let acks = client.ship(req).await?.into_inner();
    Ok(Conn { tx, acks })
}

impl Shipper {
    fn log_error(&mut self, e: &SyncError) {
        let text = canopy_core::error_chain(e);
        if self.last_error.as_deref() != Some(text.as_str()) {
            tracing::warn!(error = %text, "cannot ship audit events to the control plane; retrying (events go to the spool meanwhile)");
            self.last_error = Some(text);
        }
    }

    fn gauges(&self) {
        let bytes = self.spool.as_ref().map_or(0, Spool::pending_bytes);
        self.audit.spool_bytes.store(bytes, Relaxed);
    }

    /// Clears fail-closed once events can be kept again.
    fn maybe_unblock(&self, online: bool) {
        if !self.audit.is_blocked() {
            return;
        }
        let room = match &self.spool {
            Some(s) => {
                s.free_bytes()
                    >= (self.cfg.batch_max_bytes as u64).min(self.cfg.spool_max_bytes / 4)
            }
            None => online,
        };
        if room {
            self.audit.unblock();
        }
    }

    /// Runs a blocking spool operation off the async workers.
    async fn with_spool<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Spool) -> R + Send + 'static,
    ) -> Option<R> {
        let mut spool = self.spool.take()?;
        let done = tokio::task::spawn_blocking(move || {
            let r = f(&mut spool);
            (spool, r)
        })
        .await;
        match done {
            Ok((spool, r)) => {
                self.spool = Some(spool);
                self.gauges();
                Some(r)
            }
            Err(e) => {
                tracing::error!(error = %e, "the audit spool task failed; continuing without a spool");
                None
            }
        }
    }

    /// Puts `events` into the spool; what does not fit (or no spool) is counted as dropped.
    async fn spool_events(&mut self, events: Vec<pb::AuditEvent>, online: bool) {
        if events.is_empty() {
            return;
        }
        let n = events.len();
        let result = self
            .with_spool(move |s| {
                let r = s.append(&events);
                (r, events)
            })
            .await;
        let (kept, lost) = match result {
            Some((Ok(lost), events)) => (n - lost, events),
            Some((Err(e), events)) => {
                tracing::warn!(error = %e, "cannot write the audit spool");
                (0, events)
            }
            None => (0, Vec::new()),
        };
        self.audit.spooled.fetch_add(kept as u64, Relaxed);
        if n > kept {
            self.lost(n - kept, lost.get(kept..).unwrap_or_default());
        } else {
            self.maybe_unblock(online);
        }
    }

    /// `n` events could not be kept (`events`, when still at hand): counted for the next
    /// gap event. A gap event itself is not lost: its count goes back into the next one.
    fn lost(&self, n: usize, events: &[pb::AuditEvent]) {
        let mut requests = n.saturating_sub(events.len()) as u64;
        let (mut from, mut to) = (i64::MAX, i64::MIN);
        for e in events {
            match &e.kind {
                Some(pb::audit_event::Kind::Gap(g)) => self.audit.restore_gap(Gap {
                    dropped: g.dropped,
                    from_unix_nanos: g.from_unix_nanos,
                    to_unix_nanos: g.to_unix_nanos,
                }),
                _ => {
                    requests += 1;
                    from = from.min(e.time_unix_nanos);
                    to = to.max(e.time_unix_nanos);
                }
            }
        }
        if requests > 0 {
            if from > to {
                (from, to) = (0, 0);
            }
            self.audit
                .dropped_events(requests, from, to, "the audit spool is full");
        }
    }

    /// Drives `fut` to completion while events keep going to the spool; `None` if stopped.
    async fn offline<T>(
        &mut self,
        rx: &mut mpsc::Receiver<pb::AuditEvent>,
        fut: impl Future<Output = T>,
        stop: &mut oneshot::Receiver<()>,
    ) -> Option<T> {
        tokio::pin!(fut);
        let mut tick = tokio::time::interval(self.cfg.flush_every);
        let mut drain = tokio::time::interval(self.cfg.drain_every);
        loop {
            // Without a spool, events stay in the queue (bounded) rather than in `buf`.
            let take = !self.closed && self.spool.is_some();
            tokio::select! {
                biased;
                _ = &mut *stop => return None,
                r = &mut fut => return Some(r),
                _ = drain.tick(), if take => {
                    self.drain(rx, self.cfg.batch_max_events * self.cfg.window);
                    if self.buf.len() >= self.cfg.batch_max_events {
                        let events = std::mem::take(&mut self.buf);
                        self.spool_events(events, false).await;
                    }
                }
                // Without a spool, `buf` (left from a stream) waits for the next one.
                _ = tick.tick(), if self.spool.is_some() => {
                    let events = std::mem::take(&mut self.buf);
                    self.spool_events(events, false).await;
                }
            }
        }
    }

    /// Takes up to `max` events from the queue into `buf`, each stamped with this data
    /// plane's node id (here rather than on the request path: one string copy fewer there).
    fn drain(&mut self, rx: &mut mpsc::Receiver<pb::AuditEvent>, max: usize) {
        for _ in 0..max {
            match rx.try_recv() {
                Ok(mut ev) => {
                    if let Some(pb::audit_event::Kind::Request(r)) = &mut ev.kind {
                        if r.data_plane.is_empty() {
                            r.data_plane.clone_from(&self.audit.settings.node_id);
                        }
                    }
                    self.buf.push(ev);
                }
                Err(mpsc::error::TryRecvError::Empty) => return,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.closed = true;
                    return;
                }
            }
        }
    }

    /// Sleeps `d` while spooling; `false` if stopped.
    async fn wait(
        &mut self,
        rx: &mut mpsc::Receiver<pb::AuditEvent>,
        d: Duration,
        stop: &mut oneshot::Receiver<()>,
    ) -> bool {
        self.offline(rx, tokio::time::sleep(d), stop)
            .await
            .is_some()
    }

    fn batch(&mut self, events: Vec<pb::AuditEvent>) -> pb::AuditBatch {
        self.seq += 1;
        pb::AuditBatch {
            seq: self.seq,
            // Sent on every batch: cheap, and any batch may be the first of a stream.
            node_id: self.audit.settings.node_id.clone(),
            events,
        }
    }

    /// One stream's life. Returns (any ack received, stopped).
    async fn online(
        &mut self,
        rx: &mut mpsc::Receiver<pb::AuditEvent>,
        conn: Conn,
        stop: &mut oneshot::Receiver<()>,
    ) -> (bool, bool) {
        let Conn { tx, mut acks } = conn;
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut any_ack = false;
        let mut stopped = false;
        if self.last_error.take().is_some() {
            tracing::info!("shipping audit events to the control plane again");
        }
        if let Some(s) = &mut self.spool {
            s.rewind();
        }
        let resend = std::mem::take(&mut self.resend);
        let mut broken = false;
        for events in resend {
            if !self.send(&tx, &mut in_flight, events).await {
                broken = true;
            }
        }
        let mut tick = tokio::time::interval(self.cfg.flush_every);
        let mut drain = tokio::time::interval(self.cfg.drain_every);
        // A spool that cannot be read is not retried in a loop: it waits for the next stream.
        let mut spool_unreadable = false;
        while !broken {
            // Spooled events go out as the window allows.
            while in_flight.len() < self.cfg.window
                && !spool_unreadable
                && self.spool.as_ref().is_some_and(Spool::has_unsent)
            {
                let (max_events, max_bytes) = (self.cfg.batch_max_events, self.cfg.batch_max_bytes);
                match self
                    .with_spool(move |s| s.read_chunk(max_events, max_bytes))
                    .await
                {
                    Some(Ok(chunk)) if !chunk.events.is_empty() => {
                        let end = chunk.end;
                        if !self
                            .send_events(&tx, &mut in_flight, chunk.events, Source::Spool(end))
                            .await
                        {
                            broken = true;
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "cannot read the audit spool");
                        spool_unreadable = true;
                        break;
                    }
                    _ => break,
                }
            }
            if broken {
                break;
            }
            let window_full = in_flight.len() >= self.cfg.window;
            let take = !self.closed && (self.spool.is_some() || !window_full);
            tokio::select! {
                biased;
                _ = &mut *stop => { stopped = true; break; }
                ack = acks.message() => match ack {
                    Ok(Some(a)) => {
                        any_ack = true;
                        self.acked(&mut in_flight, &a).await;
                        self.maybe_unblock(true);
                    }
                    Ok(None) => {
                        tracing::info!("the control plane closed the audit stream; reconnecting");
                        break;
                    }
                    Err(s) => {
                        self.log_error(&SyncError::Status(s));
                        break;
                    }
                },
                _ = drain.tick(), if take => {
                    // Without a spool, only what the window can take leaves the queue.
                    let room = if self.spool.is_some() {
                        self.cfg.window
                    } else {
                        self.cfg.window.saturating_sub(in_flight.len()).max(1)
                    };
                    self.drain(rx, self.cfg.batch_max_events * room);
                    if self.buf.len() >= self.cfg.batch_max_events
                        && !self.flush(&tx, &mut in_flight).await
                    {
                        break;
                    }
                }
                _ = tick.tick() => {
                    // The gap goes out on its own batch, only when the window has room (a
                    // full spool cannot lose it).
                    if in_flight.len() < self.cfg.window {
                        if let Some(gap) = self.audit.take_gap() {
                            let ev = gap_event(&self.audit.settings.node_id, gap);
                            if !self.send(&tx, &mut in_flight, vec![ev]).await {
                                break;
                            }
                        }
                    }
                    if !self.flush(&tx, &mut in_flight).await {
                        break;
                    }
                }
            }
        }
        // Unacknowledged batches are sent again on the next stream (same ids).
        let mut keep = Vec::new();
        for f in in_flight {
            if let Source::Memory(events) = f.source {
                keep.push(events);
            }
        }
        if let Some(s) = &mut self.spool {
            s.rewind();
        }
        if self.spool.is_some() {
            let events: Vec<_> = keep.into_iter().flatten().collect();
            self.spool_events(events, false).await;
        } else {
            self.resend.extend(keep);
        }
        (any_ack, stopped)
    }

    /// Sends `buf` (window permitting; else it goes to the spool). `false` = stream broken.
    async fn flush(
        &mut self,
        tx: &mpsc::Sender<pb::AuditBatch>,
        in_flight: &mut VecDeque<InFlight>,
    ) -> bool {
        while !self.buf.is_empty() {
            if in_flight.len() >= self.cfg.window {
                if self.spool.is_some() {
                    let events = std::mem::take(&mut self.buf);
                    self.spool_events(events, true).await;
                }
                // Without a spool the events wait in `buf` (bounded by the queue guard).
                return true;
            }
            let events = self.split_batch();
            if !self.send(tx, in_flight, events).await {
                return false;
            }
        }
        true
    }

    /// The front of `buf` that fits one batch.
    fn split_batch(&mut self) -> Vec<pb::AuditEvent> {
        let mut bytes = 0;
        let mut n = 0;
        for ev in &self.buf {
            bytes += ev.encoded_len();
            if n > 0 && (n >= self.cfg.batch_max_events || bytes > self.cfg.batch_max_bytes) {
                break;
            }
            n += 1;
        }
        let rest = self.buf.split_off(n);
        std::mem::replace(&mut self.buf, rest)
    }

    /// Sends in-memory events, kept until acknowledged (to be sent again otherwise).
    async fn send(
        &mut self,
        tx: &mpsc::Sender<pb::AuditBatch>,
        in_flight: &mut VecDeque<InFlight>,
        events: Vec<pb::AuditEvent>,
    ) -> bool {
        let copy = events.clone();
        self.send_events(tx, in_flight, copy, Source::Memory(events))
            .await
    }

    async fn send_events(
        &mut self,
        tx: &mpsc::Sender<pb::AuditBatch>,
        in_flight: &mut VecDeque<InFlight>,
        events: Vec<pb::AuditEvent>,
        source: Source,
    ) -> bool {
        let count = events.len();
        let batch = self.batch(events);
        let seq = batch.seq;
        in_flight.push_back(InFlight {
            seq,
            count,
            source,
            acked: false,
        });
        tx.send(batch).await.is_ok()
    }

    /// Marks the batch `a` acknowledges, then retires acknowledged batches from the front
    /// (in order, so the spool's acknowledged offset only moves forward over whole records).
    async fn acked(&mut self, in_flight: &mut VecDeque<InFlight>, a: &pb::AuditAck) {
        match in_flight.iter_mut().find(|f| f.seq == a.seq) {
            Some(f) => f.acked = true,
            None => {
                tracing::debug!(seq = a.seq, "audit ack for no batch in flight");
                return;
            }
        }
        self.audit
            .duplicates
            .fetch_add(u64::from(a.duplicates), Relaxed);
        let mut spool_end = None;
        while in_flight.front().is_some_and(|f| f.acked) {
            let Some(f) = in_flight.pop_front() else {
                break;
            };
            self.audit.shipped.fetch_add(f.count as u64, Relaxed);
            if let Source::Spool(end) = f.source {
                spool_end = Some(end);
            }
        }
        if let Some(end) = spool_end {
            if let Some(Err(e)) = self.with_spool(move |s| s.acked(end)).await {
                tracing::warn!(error = %e, "cannot record the audit spool's acknowledged offset");
            }
        }
    }

    /// Stopping: what is held in memory goes to the spool for the next start.
    async fn shutdown(&mut self, rx: &mut mpsc::Receiver<pb::AuditEvent>) {
        self.drain(rx, usize::MAX);
        let mut events: Vec<_> = std::mem::take(&mut self.resend)
            .into_iter()
            .flatten()
            .collect();
        events.append(&mut self.buf);
        if events.is_empty() {
            return;
        }
        if self.spool.is_some() {
            self.spool_events(events, false).await;
        } else {
            tracing::warn!(
                events = events.len(),
                "audit events not yet acknowledged are lost at shutdown (no spool: set --audit-spool-file)"
            );
        }
    }
}

fn gap_event(node_id: &str, gap: Gap) -> pb::AuditEvent {
    let mut id = vec![0u8; 16];
    rand::rng().fill(&mut id[..]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    pb::AuditEvent {
        id,
        time_unix_nanos: now,
        kind: Some(pb::audit_event::Kind::Gap(pb::GapEvent {
            data_plane: node_id.to_owned(),
            dropped: gap.dropped,
            from_unix_nanos: gap.from_unix_nanos,
            to_unix_nanos: gap.to_unix_nanos,
            reason: "audit queue or spool full".to_owned(),
        })),
    }
}
