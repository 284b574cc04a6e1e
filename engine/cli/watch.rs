//! `faultline watch`: subscribe to incident changes over gRPC and print them as they happen.

use super::table;
use crate::proto::delta;
use crate::proto::v1;
use crate::proto::v1::incident_service_client::IncidentServiceClient;
use std::collections::HashMap;
use std::io::Write;
use tonic::Code;

#[derive(Clone, Debug, Default)]
pub struct WatchOptions {
    pub addr: String,
    pub request: v1::SubscribeIncidentsRequest,
    /// Stop after the snapshot has been printed.
    pub once: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: tonic::transport::Error },
    #[error("subscription failed: {0}")]
    Status(#[from] tonic::Status),
}

/// Prints the snapshot and then every change until the stream ends or fails. The stream
/// is taken in `INCIDENT_VIEW_DELTA`: the whole incidents are kept here and brought up to
/// date from each change, about a kilobyte where a storm's incident takes tens. Dropped for
/// falling behind (a slow terminal), it subscribes again from the last change received.
pub async fn watch<W: Write + Send>(options: WatchOptions, mut out: W) -> Result<(), WatchError> {
    let mut client = IncidentServiceClient::connect(options.addr.clone())
        .await
        .map_err(|source| WatchError::Connect { addr: options.addr.clone(), source })?;
    let mut request = v1::SubscribeIncidentsRequest { view: v1::IncidentView::Delta as i32, ..options.request };
    let mut held: HashMap<String, v1::Incident> = HashMap::new();
    let _ = writeln!(out, "{}", table::header());
    loop {
        let mut stream = match client.subscribe(request.clone()).await {
            Ok(stream) => stream.into_inner(),
            Err(status) if status.code() == Code::FailedPrecondition && !request.resume_token.is_empty() => {
                afresh(&mut request, &mut held, status.message());
                continue;
            }
            Err(status) => return Err(status.into()),
        };
        loop {
            let change = match stream.message().await {
                Ok(Some(change)) => change,
                Ok(None) => return Ok(()),
                Err(status) if status.code() == Code::ResourceExhausted && !request.resume_token.is_empty() => {
                    eprintln!("watch: {}; resuming from the last change received", status.message());
                    break;
                }
                Err(status) => return Err(status.into()),
            };
            if !change.resume_token.is_empty() {
                request.resume_token = change.resume_token;
            }
            if change.kind == v1::ChangeKind::SnapshotComplete as i32 {
                if options.once {
                    return Ok(());
                }
                continue;
            }
            let Some(incident) = change.incident else { continue };
            let id = incident.id.clone();
            let applied = match (change.delta, held.get_mut(&id)) {
                (Some(delta), Some(whole)) => delta::apply(whole, incident, delta).map_err(|e| e.to_string()),
                (Some(_), None) => Err(format!("a change of {id}, which is not held")),
                (None, _) => {
                    held.insert(id.clone(), incident);
                    Ok(())
                }
            };
            if let Err(why) = applied {
                // The stream and what is held no longer agree.
                afresh(&mut request, &mut held, &why);
                break;
            }
            let _ = writeln!(out, "{}", table::row(change.kind, &held[&id]));
            let _ = out.flush();
            if change.kind == v1::ChangeKind::Closed as i32 {
                held.remove(&id);
            }
        }
    }
}

/// Starts over with a whole snapshot, for `why`.
fn afresh(request: &mut v1::SubscribeIncidentsRequest, held: &mut HashMap<String, v1::Incident>, why: &str) {
    eprintln!("watch: {why}; taking a whole snapshot");
    request.resume_token.clear();
    held.clear();
}
