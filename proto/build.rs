//! Compiles `proto/` with protox (pure Rust), so no system `protoc` is needed.

use prost::Message;
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = "proto/canopy/v1/canopy.proto";
    println!("cargo:rerun-if-changed={file}");
    let fds = protox::compile([file], ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // Served by gRPC reflection so `grpcurl` works without the .proto file.
    fs::write(out.join("canopy_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        // Snapshot clients are copied as byte slices, not one `Vec` each.
        .bytes(".canopy.v1.SnapshotChunk.encoded_clients")
        .compile_fds(fds)?;
    Ok(())
}
