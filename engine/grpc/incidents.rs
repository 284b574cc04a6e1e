//! `faultline.v1.IncidentService`: the live stream (snapshot, then changes), queries, and
//! operator actions. A subscriber that falls `grpc.subscriber_buffer` changes behind, by
//! reading slowly or not at all, is dropped with RESOURCE_EXHAUSTED; it never slows the
//! pipeline or another subscriber. The core hands the stream shared
//! incidents; each change is converted and encoded once, by the subscriber tasks
//! ([`super::wire`]).

use super::filter::IncidentFilter;
use super::server::incident_service_server::IncidentService;
use super::status::{MAX_NAME_BYTES, MAX_NOTE_BYTES, bounded, incident_id, required};
use super::wire::{EncodedChange, EncodedIncidents, PublishedChange, View};
use crate::kafka::history::{History, HistoryError, Query};
use crate::metrics::Metrics;
use crate::model::incident::{Incident, IncidentId, IncidentState, TimelineKind};
use crate::proto::{self, v1};
use crate::runtime::core_loop::CoreContext;
use crate::runtime::resume::{ResumeError, ResumeToken, Since};
use crate::runtime::{EngineHandle, SharedChange};
use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};

const DEFAULT_PAGE_SIZE: usize = 100;

/// The most a page of incidents holds, encoded: within the 4 MiB a gRPC client decodes by
/// default, with room to spare.
const MAX_RESPONSE_BYTES: usize = 3 * 1024 * 1024;
const MAX_PAGE_SIZE: usize = 1000;

/// Encoded changes queued toward one subscriber's gRPC stream.
const QUEUE: usize = 64;

/// How often a subscriber whose queue is full is checked for having fallen too far behind.
const LAG_CHECK: Duration = Duration::from_millis(100);

pub struct IncidentApi {
    handle: EngineHandle,
    /// Shared by every subscriber's task.
    encoded: Arc<EncodedIncidents>,
    /// Changes a subscriber may fall behind the core before it is dropped (the broadcast
    /// channel's capacity, `grpc.subscriber_buffer`).
    buffer: usize,
    /// Subscribers served now, and the most served at once (`grpc.max_subscribers`).
    connected: Arc<AtomicUsize>,
    max_subscribers: usize,
    metrics: Arc<Metrics>,
    /// Closed incidents.
    history: Arc<History>,
}

impl IncidentApi {
    pub fn new(handle: EngineHandle, subscribers: super::Subscribers, history: Arc<History>) -> IncidentApi {
        IncidentApi {
            handle,
            encoded: Arc::default(),
            buffer: subscribers.buffer,
            connected: Arc::default(),
            max_subscribers: subscribers.max,
            metrics: subscribers.metrics,
            history,
        }
    }
}

/// Whether the last resolution of `incident` was by the operator `by`.
fn resolved_by(incident: &Incident, by: &str) -> bool {
    let resolved = incident.timeline.iter().rev().find(|e| e.kind == TimelineKind::Resolved);
    resolved.is_some_and(|e| {
        e.text
            .strip_prefix("resolved by ")
            .and_then(|t| t.strip_prefix(by))
            // What the core writes after the name: nothing, the reason, or the forced note
            // (so `alice` is not taken for `alice smith`).
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(": ") || rest.starts_with(" (forced: "))
    })
}

/// The longest client request id an operator action may carry.
const MAX_REQUEST_ID_BYTES: usize = 128;

/// What names an operator action for its retries: the action, the incident, who acts and
/// the client's request id (two operators' clients may count their ids alike); `None`
/// without one.
fn request_key(action: &str, id: IncidentId, who: &str, request_id: &str) -> Result<Option<String>, Status> {
    bounded("request_id", request_id, MAX_REQUEST_ID_BYTES)?;
    Ok((!request_id.is_empty()).then(|| format!("{action}/{id}/{}:{who}/{request_id}", who.len())))
}

/// Applies an operator action once per request key: a retry of one already applied is
/// answered with the incident as it is now, and changes nothing.
fn once(
    ctx: &mut CoreContext<'_>,
    key: Option<String>,
    id: IncidentId,
    action: impl FnOnce(&mut CoreContext<'_>) -> Result<v1::Incident, Status>,
) -> Result<v1::Incident, Status> {
    if let Some(done) = key.as_deref().and_then(|key| ctx.already_done(key)) {
        let incident = ctx.correlator.incident(done).map(proto::incident_to_proto);
        return incident.ok_or_else(|| Status::not_found(format!("incident `{id}` has closed since")));
    }
    let incident = action(ctx)?;
    if let Some(key) = key {
        ctx.done(key, id);
    }
    Ok(incident)
}

fn page_size(requested: i32) -> Result<usize, Status> {
    match requested {
        n if n < 0 => Err(Status::invalid_argument("`page_size` must not be negative")),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok((n as usize).min(MAX_PAGE_SIZE)),
    }
}

fn page_token(token: &str) -> Result<Option<IncidentId>, Status> {
    match token {
        "" => Ok(None),
        token => token.parse().map(Some).map_err(|_| Status::invalid_argument("invalid `page_token`")),
    }
}

fn history_status(error: HistoryError) -> Status {
    match error {
        HistoryError::Loading(_) => Status::unavailable(error.to_string()),
        HistoryError::Fetch { .. } => Status::internal(error.to_string()),
    }
}

/// A subscriber's place among the `grpc.max_subscribers`, given back when its feed ends.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(connected: &Arc<AtomicUsize>, max: usize) -> Result<Slot, Status> {
        connected
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .map(|_| Slot(connected.clone()))
            .map_err(|n| {
                Status::resource_exhausted(format!(
                    "{n} subscribers connected, the most grpc.max_subscribers allows; retry later"
                ))
            })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[tonic::async_trait]
impl IncidentService for IncidentApi {
    type SubscribeStream = Subscription;

    async fn subscribe(
        &self,
        request: Request<v1::SubscribeIncidentsRequest>,
    ) -> Result<Response<Subscription>, Status> {
        let slot = Slot::take(&self.connected, self.max_subscribers)?;
        let filter = IncidentFilter::from(request.get_ref());
        let view = View::of(request.get_ref().view);
        let resume = match request.get_ref().resume_token.as_str() {
            "" => None,
            token => {
                Some(token.parse::<ResumeToken>().map_err(|_| Status::invalid_argument("invalid `resume_token`"))?)
            }
        };
        let (snapshot, changes) = self
            .handle
            .call(move |ctx| {
                let changes = ctx.subscribe();
                let since = resume.map(|token| ctx.changed_since(token)).transpose();
                let snapshot = since.map(|since| Snapshot {
                    incidents: ctx.correlator.shared_incidents().cloned().collect(),
                    since,
                    point: ctx.resume_point(),
                });
                (snapshot, changes)
            })
            .await?;
        let snapshot = snapshot.map_err(|e| match e {
            ResumeError::Ahead => Status::invalid_argument(e.to_string()),
            ResumeError::OtherRun | ResumeError::TooOld => Status::failed_precondition(e.to_string()),
        })?;
        let live: HashSet<IncidentId> = snapshot.incidents.iter().map(|i| i.id).collect();
        self.encoded.retain(|id| live.contains(&id));
        let (tx, rx) = mpsc::channel(QUEUE);
        let (end_tx, end_rx) = oneshot::channel();
        let feed = Feed { changes, tx, buffer: self.buffer, view };
        let encoded = self.encoded.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            serve_subscriber(filter, snapshot, feed, &encoded, end_tx, &metrics).await;
            drop(slot);
        });
        Ok(Response::new(Subscription { changes: rx, end: Some(end_rx) }))
    }

    async fn list_incidents(
        &self,
        request: Request<v1::ListIncidentsRequest>,
    ) -> Result<Response<v1::ListIncidentsResponse>, Status> {
        let request = request.into_inner();
        let filter = IncidentFilter::from(&request);
        let size = page_size(request.page_size)?;
        let after = page_token(&request.page_token)?;
        // The core only picks the page's incidents (shared, a reference count each); they
        // are converted here, off the core thread.
        let (page, total, mut more) = self
            .handle
            .call(move |ctx| {
                let mut total = 0;
                let mut page: Vec<Arc<Incident>> = Vec::new();
                let mut more = false;
                for incident in ctx.correlator.shared_incidents().filter(|i| filter.matches(i)) {
                    total += 1;
                    if after.is_some_and(|after| incident.id <= after) {
                        continue;
                    }
                    if page.len() == size {
                        more = true;
                        continue;
                    }
                    page.push(incident.clone());
                }
                (page, total, more)
            })
            .await?;
        // A page also ends before it would pass what a client decodes by default: storm
        // incidents are tens of kilobytes each.
        let mut incidents = Vec::with_capacity(page.len());
        let mut bytes = 0;
        for incident in &page {
            let incident = proto::incident_to_proto(incident);
            let size = prost::Message::encoded_len(&incident);
            if !incidents.is_empty() && bytes + size > MAX_RESPONSE_BYTES {
                more = true;
                break;
            }
            bytes += size;
            incidents.push(incident);
        }
        let next_page_token =
            if more { incidents.last().map(|i| i.id.clone()).unwrap_or_default() } else { String::new() };
        Ok(Response::new(v1::ListIncidentsResponse { incidents, next_page_token, total_size: total }))
    }

    async fn get_incident(&self, request: Request<v1::GetIncidentRequest>) -> Result<Response<v1::Incident>, Status> {
        let id = incident_id(&request.get_ref().id)?;
        let incident = self.handle.call(move |ctx| ctx.correlator.incident(id).map(proto::incident_to_proto)).await?;
        if let Some(incident) = incident {
            return Ok(Response::new(incident));
        }
        // Not live: closed, perhaps.
        let history = self.history.clone();
        let closed = tokio::task::spawn_blocking(move || history.get(id))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(history_status)?;
        closed.map(Response::new).ok_or_else(|| Status::not_found(format!("incident `{id}` not found")))
    }

    async fn list_closed_incidents(
        &self,
        request: Request<v1::ListClosedIncidentsRequest>,
    ) -> Result<Response<v1::ListIncidentsResponse>, Status> {
        let request = request.into_inner();
        let size = page_size(request.page_size)?;
        let after = page_token(&request.page_token)?;
        let text = |s: String| (!s.is_empty()).then_some(s);
        let query = Query {
            closed_after: request.closed_after.as_ref().map(proto::millis),
            closed_before: request.closed_before.as_ref().map(proto::millis),
            service: text(request.service),
            customer: text(request.customer),
            after,
            size,
        };
        let history = self.history.clone();
        let page = tokio::task::spawn_blocking(move || history.list(&query))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(history_status)?;
        Ok(Response::new(v1::ListIncidentsResponse {
            incidents: page.incidents,
            next_page_token: page.next.map(|id| id.to_string()).unwrap_or_default(),
            total_size: page.total as i32,
        }))
    }

    async fn acknowledge_incident(
        &self,
        request: Request<v1::AcknowledgeIncidentRequest>,
    ) -> Result<Response<v1::Incident>, Status> {
        let request = request.into_inner();
        let id = incident_id(&request.id)?;
        let by = bounded("by", required("by", &request.by)?, MAX_NAME_BYTES)?.to_owned();
        let key = request_key("acknowledge", id, &by, &request.request_id)?;
        let retried = key.is_some();
        let incident = self
            .handle
            .call(move |ctx| {
                once(ctx, key, id, |ctx| {
                    // A retry whose acknowledgement the engine has (since a restart, out of
                    // the ids remembered) is answered as done.
                    if let Some(incident) = ctx.correlator.incident(id)
                        && retried
                        && incident.state == IncidentState::Acknowledged
                        && incident.acknowledgement.as_ref().is_some_and(|a| a.by == by)
                    {
                        return Ok(proto::incident_to_proto(incident));
                    }
                    let change = ctx.correlator.acknowledge(id, &by, ctx.now)?;
                    Ok(ctx.publish(&change))
                })
            })
            .await??;
        Ok(Response::new(incident))
    }

    async fn resolve_incident(
        &self,
        request: Request<v1::ResolveIncidentRequest>,
    ) -> Result<Response<v1::Incident>, Status> {
        let request = request.into_inner();
        let id = incident_id(&request.id)?;
        let by = bounded("by", required("by", &request.by)?, MAX_NAME_BYTES)?.to_owned();
        bounded("reason", &request.reason, MAX_NOTE_BYTES)?;
        let (reason, force) = (request.reason, request.force);
        let key = request_key("resolve", id, &by, &request.request_id)?;
        let retried = key.is_some();
        let incident = self
            .handle
            .call(move |ctx| {
                once(ctx, key, id, |ctx| {
                    // As for acknowledgements: a retry finding the incident resolved by the
                    // same operator is answered as done.
                    if let Some(incident) = ctx.correlator.incident(id)
                        && retried
                        && incident.state == IncidentState::Resolved
                        && resolved_by(incident, &by)
                    {
                        return Ok(proto::incident_to_proto(incident));
                    }
                    let change = ctx.correlator.resolve(id, &by, &reason, force, ctx.now)?;
                    Ok(ctx.publish(&change))
                })
            })
            .await??;
        Ok(Response::new(incident))
    }

    async fn add_incident_note(
        &self,
        request: Request<v1::AddIncidentNoteRequest>,
    ) -> Result<Response<v1::Incident>, Status> {
        let request = request.into_inner();
        let id = incident_id(&request.id)?;
        let author = bounded("author", required("author", &request.author)?, MAX_NAME_BYTES)?.to_owned();
        let text = bounded("text", required("text", &request.text)?, MAX_NOTE_BYTES)?.to_owned();
        let key = request_key("note", id, &author, &request.request_id)?;
        let request_id = request.request_id;
        let incident = self
            .handle
            .call(move |ctx| {
                once(ctx, key, id, |ctx| {
                    // The note a retry would add again is on the incident, kept with its
                    // request id across restarts.
                    if let Some(incident) = ctx.correlator.incident(id)
                        && !request_id.is_empty()
                        && incident.notes.iter().any(|n| n.request_id == request_id && n.author == author)
                    {
                        return Ok(proto::incident_to_proto(incident));
                    }
                    let change = ctx.correlator.add_note(id, &author, &text, &request_id, ctx.now)?;
                    Ok(ctx.publish(&change))
                })
            })
            .await??;
        Ok(Response::new(incident))
    }
}

/// One subscriber's end of the live stream: the changes queued for it, then, when the
/// server cut it off, why. The reason follows every queued change and needs no room in the
/// queue, so a subscriber dropped for being slow still learns why once it reads on.
pub struct Subscription {
    changes: mpsc::Receiver<EncodedChange>,
    end: Option<oneshot::Receiver<Status>>,
}

impl Stream for Subscription {
    type Item = Result<EncodedChange, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match std::task::ready!(self.changes.poll_recv(cx)) {
            Some(change) => Poll::Ready(Some(Ok(change))),
            // The feeding task has ended, so the reason, if any, was sent before.
            None => Poll::Ready(self.end.take().and_then(|mut end| end.try_recv().ok()).map(Err)),
        }
    }
}

/// Why a subscriber's feed ended.
enum Cut {
    /// The client went away.
    Gone,
    /// The server ended the stream, for this reason.
    Ended(Status),
}

/// One subscriber's feed: its receiver of the core's changes, its queue toward gRPC, and
/// how far it may fall behind the core (the broadcast buffer) before it is dropped.
struct Feed {
    changes: broadcast::Receiver<SharedChange>,
    tx: mpsc::Sender<EncodedChange>,
    buffer: usize,
    view: View,
}

impl Feed {
    /// Queues `change`. While the queue is full (the client reads slowly or not at all),
    /// this watches how far the subscriber falls behind the core, and cuts it off once the
    /// changes it has not taken no longer fit in the broadcast buffer: a stalled client is
    /// dropped as soon as one that reads slowly would be, and slows nobody meanwhile.
    async fn send(&self, change: EncodedChange) -> Result<(), Cut> {
        match self.tx.try_reserve() {
            Ok(permit) => {
                permit.send(change);
                return Ok(());
            }
            Err(mpsc::error::TrySendError::Closed(())) => return Err(Cut::Gone),
            Err(mpsc::error::TrySendError::Full(())) => {}
        }
        let reserve = self.tx.reserve();
        tokio::pin!(reserve);
        let mut check = tokio::time::interval_at(tokio::time::Instant::now() + LAG_CHECK, LAG_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                permit = &mut reserve => {
                    permit.map_err(|_| Cut::Gone)?.send(change);
                    return Ok(());
                }
                _ = check.tick() => {
                    let behind = self.changes.len();
                    if behind > self.buffer {
                        return Err(too_slow(behind));
                    }
                }
            }
        }
    }

    /// The next change from the core, or why the feed ends.
    async fn next(&mut self) -> Result<SharedChange, Cut> {
        let change = tokio::select! {
            change = self.changes.recv() => change,
            _ = self.tx.closed() => return Err(Cut::Gone),
        };
        change.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(missed) => too_slow(missed as usize),
            broadcast::error::RecvError::Closed => Cut::Ended(Status::unavailable("the engine is shutting down")),
        })
    }
}

fn too_slow(behind: usize) -> Cut {
    Cut::Ended(Status::resource_exhausted(format!(
        "subscriber too slow: {behind} incident changes behind, dropped; subscribe again for a fresh snapshot"
    )))
}

/// What a new subscriber starts from: every incident in memory, at the point `point` of the
/// stream; with `since`, the subscriber resumes and is sent only what changed and closed
/// after its token.
struct Snapshot {
    incidents: Vec<Arc<Incident>>,
    since: Option<Since>,
    point: ResumeToken,
}

/// Feeds one subscriber until it goes away or is cut off, counting it in the metrics while
/// it is connected.
async fn serve_subscriber(
    filter: IncidentFilter,
    snapshot: Snapshot,
    mut feed: Feed,
    encoded: &EncodedIncidents,
    end: oneshot::Sender<Status>,
    metrics: &Metrics,
) {
    metrics.subscribers.fetch_add(1, Ordering::Relaxed);
    let fed = forward(filter, snapshot, &mut feed, encoded).await;
    metrics.subscribers.fetch_sub(1, Ordering::Relaxed);
    if let Err(Cut::Ended(status)) = fed {
        if status.code() == Code::ResourceExhausted {
            metrics.subscribers_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::info!(reason = status.message(), "subscriber dropped");
        }
        let _ = end.send(status);
    }
}

/// Feeds one subscriber: the filtered snapshot (or, resuming, what changed and closed since
/// its token), a SNAPSHOT_COMPLETE marker, then live changes. An incident that leaves the
/// filter (e.g. resolved, under a filter on open incidents) is sent once more so the
/// subscriber learns it left. In `View::Delta` the subscriber's versions are kept (shared
/// with the core and every other subscriber), so that each change is sent as a delta from
/// the version it holds.
async fn forward(
    filter: IncidentFilter,
    snapshot: Snapshot,
    feed: &mut Feed,
    encoded: &EncodedIncidents,
) -> Result<(), Cut> {
    let deltas = feed.view == View::Delta;
    let keep = |incident: &Arc<Incident>| deltas.then(|| incident.clone());
    let mut following: HashMap<IncidentId, Option<Arc<Incident>>> = HashMap::new();
    let Snapshot { incidents, since, point } = snapshot;
    for incident in incidents {
        let matches = filter.matches(&incident);
        // A resuming subscriber holds the incidents that did not change since its token as
        // they are now; one that changed is sent even if it left the filter, so that the
        // subscriber lets it go.
        let send = match &since {
            None => matches,
            Some(since) => since.changed.contains(&incident.id),
        };
        if matches {
            following.insert(incident.id, keep(&incident));
        }
        if send {
            feed.send(PublishedChange::snapshot(incident).encoded(encoded, feed.view, None)).await?;
        }
    }
    for &id in since.iter().flat_map(|since| &since.closed) {
        feed.send(EncodedChange::closed_while_away(id)).await?;
    }
    feed.send(EncodedChange::snapshot_complete(point)).await?;
    loop {
        let change = feed.next().await?;
        let incident = change.incident();
        // Sent when followed, or leaving the filter: with the version held, if any.
        let send = if filter.matches(incident) {
            Some(following.insert(incident.id, keep(incident)).flatten())
        } else {
            following.remove(&incident.id)
        };
        if let Some(held) = send {
            feed.send(change.encoded(encoded, feed.view, held.as_ref())).await?;
        }
    }
}
