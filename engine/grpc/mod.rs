//! The gRPC edge: `faultline.v1.IncidentService` and `TopologyService`, standard health
//! checking (`grpc.health.v1`) and server reflection, so `grpcurl` works with no proto files.
//! Handlers run their work on the core thread through [`EngineHandle`] and never block.

mod filter;
mod incidents;
mod status;
mod topology;

use crate::proto::{self, v1};
use crate::runtime::EngineHandle;
pub use filter::IncidentFilter;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

/// Serves every service on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, handle: EngineHandle, shutdown: CancellationToken) -> Result<(), String> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<v1::incident_service_server::IncidentServiceServer<incidents::IncidentApi>>().await;
    health.set_serving::<v1::topology_service_server::TopologyServiceServer<topology::TopologyApi>>().await;
    health.set_service_status("", tonic_health::ServingStatus::Serving).await;

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    let reflection_v1 = reflection.build_v1().map_err(|e| e.to_string())?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| e.to_string())?;

    Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(v1::incident_service_server::IncidentServiceServer::new(incidents::IncidentApi::new(
            handle.clone(),
        )))
        .add_service(v1::topology_service_server::TopologyServiceServer::new(topology::TopologyApi::new(handle)))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
        .await
        .map_err(|e| e.to_string())
}
