//! The gRPC edge: `faultline.v1.IncidentService`, `TopologyService`, `MaintenanceService` and
//! `AlarmService`, standard health
//! checking (`grpc.health.v1`) and server reflection, so `grpcurl` works with no proto files.
//! Handlers run their work on the core thread through [`EngineHandle`] and never block.

mod alarms;
mod filter;
mod incidents;
mod maintenance;
mod status;
mod topology;
pub mod wire;

/// The generated servers; their messages are [`crate::proto::v1`]'s (see `build.rs`).
#[allow(clippy::all, clippy::pedantic)]
mod server {
    include!(concat!(env!("OUT_DIR"), "/server/faultline.v1.rs"));
}

use crate::kafka::history::History;
use crate::metrics::Metrics;
use crate::proto;
use crate::runtime::EngineHandle;
pub use filter::IncidentFilter;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
pub use topology::{ci_status, impact_of, max_ci_record_bytes, what_if};

const INCIDENT_SERVICE: &str = "faultline.v1.IncidentService";
const TOPOLOGY_SERVICE: &str = "faultline.v1.TopologyService";
const ALARM_SERVICE: &str = "faultline.v1.AlarmService";
const MAINTENANCE_SERVICE: &str = "faultline.v1.MaintenanceService";

/// What the live stream needs beyond the engine handle.
pub struct Subscribers {
    /// Changes a subscriber may fall behind before it is dropped (`grpc.subscriber_buffer`).
    pub buffer: usize,
    /// Subscribers served at once (`grpc.max_subscribers`).
    pub max: usize,
    pub metrics: Arc<Metrics>,
}

/// Serves every service on `listener` until `shutdown`. A CI record put over the API may
/// take `max_ci_record_bytes` at most (see [`max_ci_record_bytes`]). `kafka_up` drives the health
/// status: SERVING while the engine can reach its brokers, NOT_SERVING while it cannot.
pub async fn serve(
    listener: TcpListener,
    handle: EngineHandle,
    subscribers: Subscribers,
    history: Arc<History>,
    max_ci_record_bytes: usize,
    mut kafka_up: watch::Receiver<bool>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let reporter = async move {
        loop {
            let status = if *kafka_up.borrow_and_update() {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            for service in ["", INCIDENT_SERVICE, TOPOLOGY_SERVICE, ALARM_SERVICE, MAINTENANCE_SERVICE] {
                health.set_service_status(service, status).await;
            }
            if kafka_up.changed().await.is_err() {
                return;
            }
        }
    };
    let reporter = tokio::spawn(reporter);

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    let reflection_v1 = reflection.build_v1().map_err(|e| e.to_string())?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| e.to_string())?;

    // TCP_NODELAY: a stream sends small messages one at a time, and Nagle's algorithm held
    // each one back until the client's delayed acknowledgement, 40 ms later.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let served = Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            server::incident_service_server::IncidentServiceServer::new(incidents::IncidentApi::new(
                handle.clone(),
                subscribers,
                history,
            ))
            .max_decoding_message_size(status::MAX_REQUEST_BYTES),
        )
        .add_service(
            server::topology_service_server::TopologyServiceServer::new(topology::TopologyApi::new(
                handle.clone(),
                max_ci_record_bytes,
            ))
            .max_decoding_message_size(status::MAX_REQUEST_BYTES),
        )
        .add_service(
            server::maintenance_service_server::MaintenanceServiceServer::new(maintenance::MaintenanceApi::new(
                handle.clone(),
            ))
            .max_decoding_message_size(status::MAX_REQUEST_BYTES),
        )
        .add_service(
            server::alarm_service_server::AlarmServiceServer::new(alarms::AlarmApi::new(handle))
                .max_decoding_message_size(status::MAX_REQUEST_BYTES),
        )
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
        .map_err(|e| e.to_string());
    reporter.abort();
    served
}
