//! Generated tonic/prost code for Canopy's gRPC API.
//!
//! These types stop at the gRPC edge: the control plane, data plane and CLI convert
//! them into their own types at the boundary.

pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("canopy.v1");
}

/// Encoded `FileDescriptorSet` of the API, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/canopy_descriptor.bin"));
