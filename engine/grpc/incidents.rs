//! `faultline.v1.IncidentService`: the live stream (snapshot, then changes), queries, and
//! operator actions. A subscriber that falls behind is dropped with RESOURCE_EXHAUSTED;
//! it never slows the pipeline or another subscriber. The core hands the stream shared
//! incidents; each change is converted and encoded once, by the subscriber tasks
//! ([`super::wire`]).

use super::filter::IncidentFilter;
use super::server::incident_service_server::IncidentService;
use super::status::{incident_id, required};
use super::wire::{EncodedChange, EncodedIncidents, PublishedChange};
use crate::model::incident::{Incident, IncidentId};
use crate::proto::{self, v1};
use crate::runtime::{EngineHandle, SharedChange};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

const DEFAULT_PAGE_SIZE: usize = 100;
const MAX_PAGE_SIZE: usize = 1000;

pub struct IncidentApi {
    handle: EngineHandle,
    /// Shared by every subscriber's task.
    encoded: Arc<EncodedIncidents>,
}

impl IncidentApi {
    pub fn new(handle: EngineHandle) -> IncidentApi {
        IncidentApi { handle, encoded: Arc::default() }
    }
}

type SubscribeStream = ReceiverStream<Result<EncodedChange, Status>>;

#[tonic::async_trait]
impl IncidentService for IncidentApi {
    type SubscribeStream = SubscribeStream;

    async fn subscribe(
        &self,
        request: Request<v1::SubscribeIncidentsRequest>,
    ) -> Result<Response<SubscribeStream>, Status> {
        let filter = IncidentFilter::from(request.get_ref());
        let (snapshot, changes) = self
            .handle
            .call(|ctx| {
                let changes = ctx.subscribe();
                let snapshot: Vec<Arc<Incident>> = ctx.correlator.shared_incidents().cloned().collect();
                (snapshot, changes)
            })
            .await?;
        let live: HashSet<IncidentId> = snapshot.iter().map(|i| i.id).collect();
        self.encoded.retain(|id| live.contains(&id));
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(forward(filter, snapshot, changes, self.encoded.clone(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_incidents(
        &self,
        request: Request<v1::ListIncidentsRequest>,
    ) -> Result<Response<v1::ListIncidentsResponse>, Status> {
        let request = request.into_inner();
        let filter = IncidentFilter::from(&request);
        let size = match request.page_size {
            n if n < 0 => return Err(Status::invalid_argument("`page_size` must not be negative")),
            0 => DEFAULT_PAGE_SIZE,
            n => (n as usize).min(MAX_PAGE_SIZE),
        };
        let after = match request.page_token.as_str() {
            "" => None,
            token => Some(token.parse::<IncidentId>().map_err(|_| Status::invalid_argument("invalid `page_token`"))?),
        };
        let response = self
            .handle
            .call(move |ctx| {
                let mut total = 0;
                let mut page = Vec::new();
                let mut next_page_token = String::new();
                for incident in ctx.correlator.incidents().filter(|i| filter.matches(i)) {
                    total += 1;
                    if after.is_some_and(|after| incident.id <= after) {
                        continue;
                    }
                    if page.len() == size {
                        next_page_token = page.last().map(|i: &v1::Incident| i.id.clone()).unwrap_or_default();
                        continue;
                    }
                    page.push(proto::incident_to_proto(incident));
                }
                v1::ListIncidentsResponse { incidents: page, next_page_token, total_size: total }
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn get_incident(&self, request: Request<v1::GetIncidentRequest>) -> Result<Response<v1::Incident>, Status> {
        let id = incident_id(&request.get_ref().id)?;
        let incident = self.handle.call(move |ctx| ctx.correlator.incident(id).map(proto::incident_to_proto)).await?;
        incident.map(Response::new).ok_or_else(|| Status::not_found(format!("incident `{id}` not found")))
    }

    async fn acknowledge_incident(
        &self,
        request: Request<v1::AcknowledgeIncidentRequest>,
    ) -> Result<Response<v1::Incident>, Status> {
        let request = request.into_inner();
        let id = incident_id(&request.id)?;
        let by = required("by", &request.by)?.to_owned();
        let incident = self
            .handle
            .call(move |ctx| {
                let change = ctx.correlator.acknowledge(id, &by, ctx.now)?;
                Ok::<_, Status>(ctx.publish(&change))
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
        let by = required("by", &request.by)?.to_owned();
        let reason = request.reason;
        let incident = self
            .handle
            .call(move |ctx| {
                let change = ctx.correlator.resolve(id, &by, &reason, ctx.now)?;
                Ok::<_, Status>(ctx.publish(&change))
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
        let author = required("author", &request.author)?.to_owned();
        let text = required("text", &request.text)?.to_owned();
        let incident = self
            .handle
            .call(move |ctx| {
                let change = ctx.correlator.add_note(id, &author, &text, ctx.now)?;
                Ok::<_, Status>(ctx.publish(&change))
            })
            .await??;
        Ok(Response::new(incident))
    }
}

/// Feeds one subscriber: the filtered snapshot, a SNAPSHOT_COMPLETE marker, then live
/// changes. An incident that leaves the filter (e.g. resolved, under a filter on open
/// incidents) is sent once more so the subscriber learns it left.
async fn forward(
    filter: IncidentFilter,
    snapshot: Vec<Arc<Incident>>,
    mut changes: broadcast::Receiver<SharedChange>,
    encoded: Arc<EncodedIncidents>,
    tx: mpsc::Sender<Result<EncodedChange, Status>>,
) {
    let mut following: HashSet<IncidentId> = HashSet::new();
    for incident in snapshot.into_iter().filter(|i| filter.matches(i)) {
        following.insert(incident.id);
        if tx.send(Ok(PublishedChange::snapshot(incident).encoded(&encoded))).await.is_err() {
            return;
        }
    }
    if tx.send(Ok(EncodedChange::snapshot_complete())).await.is_err() {
        return;
    }
    loop {
        let change = tokio::select! {
            change = changes.recv() => change,
            _ = tx.closed() => return,
        };
        let change = match change {
            Ok(change) => change,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                let status = Status::resource_exhausted(format!(
                    "subscriber too slow: {missed} incident changes behind, dropped; subscribe again for a fresh snapshot"
                ));
                let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(Err(status))).await;
                return;
            }
            Err(broadcast::error::RecvError::Closed) => {
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    tx.send(Err(Status::unavailable("the engine is shutting down"))),
                )
                .await;
                return;
            }
        };
        let incident = change.incident();
        let relevant = if filter.matches(incident) {
            following.insert(incident.id);
            true
        } else {
            following.remove(&incident.id)
        };
        if relevant && tx.send(Ok(change.encoded(&encoded))).await.is_err() {
            return;
        }
    }
}
