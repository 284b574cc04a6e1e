//! Compiles `proto/faultline/v1/*.proto` with protox (a protobuf compiler in Rust), so a
//! machine with only the Rust toolchain builds Faultline: no system `protoc` is needed.
//! The encoded descriptor set is kept in OUT_DIR for gRPC server reflection.
//!
//! Two passes over the same descriptors: the messages and clients (`crate::proto::v1`),
//! then the servers alone (`crate::grpc::server`), whose message types are those of the
//! first pass but for the live stream's `SubscribeIncidentsResponse`: the server sends it
//! as `crate::grpc::wire::EncodedChange`, the same bytes on the wire with the incident
//! encoded once and shared by every subscriber.

use prost::Message;
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/faultline/v1/alarm.proto",
    "proto/faultline/v1/topology.proto",
    "proto/faultline/v1/incident.proto",
    "proto/faultline/v1/changelog.proto",
    "proto/faultline/v1/maintenance.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("faultline_descriptor.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure().build_client(true).build_server(false).compile_fds(descriptors.clone())?;

    let servers = out_dir.join("server");
    std::fs::create_dir_all(&servers)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .out_dir(&servers)
        .extern_path(".faultline.v1", "crate::proto::v1")
        .extern_path(".faultline.v1.SubscribeIncidentsResponse", "crate::grpc::wire::EncodedChange")
        .compile_fds(descriptors)?;
    Ok(())
}
