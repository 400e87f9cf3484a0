//! Generated code for `proto/vmedia/v1/*.proto`: the coordinator's public API
//! (`Nodes`, `Shares`) and the coordinator <-> share-agent link (`AgentLink`).
//!
//! Only generated code lives here. Domain crates never see these types; the
//! server and client crates convert at their edge.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod v1 {
    tonic::include_proto!("vmedia.v1");
}

/// Encoded `FileDescriptorSet` of every .proto here, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("vmedia_descriptor");
