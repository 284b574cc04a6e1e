//! Compiles `proto/faultline/v1/*.proto` with protox (a protobuf compiler in Rust), so a
//! machine with only the Rust toolchain builds Faultline: no system `protoc` is needed.
//! The encoded descriptor set is kept in OUT_DIR for gRPC server reflection.

use prost::Message;
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/faultline/v1/alarm.proto",
    "proto/faultline/v1/topology.proto",
    "proto/faultline/v1/incident.proto",
    "proto/faultline/v1/changelog.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("faultline_descriptor.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(descriptors)?;
    Ok(())
}
