//! `faultline watch`: subscribe to incident changes over gRPC and print them as they happen.

use super::table;
use crate::proto::v1;
use crate::proto::v1::incident_service_client::IncidentServiceClient;
use std::io::Write;

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

/// Prints the snapshot and then every change until the stream ends or fails.
pub async fn watch<W: Write + Send>(options: WatchOptions, mut out: W) -> Result<(), WatchError> {
    let mut client = IncidentServiceClient::connect(options.addr.clone())
        .await
        .map_err(|source| WatchError::Connect { addr: options.addr.clone(), source })?;
    let mut stream = client.subscribe(options.request).await?.into_inner();
    let _ = writeln!(out, "{}", table::header());
    while let Some(change) = stream.message().await? {
        if change.kind == v1::ChangeKind::SnapshotComplete as i32 {
            if options.once {
                return Ok(());
            }
            continue;
        }
        if let Some(line) = table::row(&change) {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
    Ok(())
}
