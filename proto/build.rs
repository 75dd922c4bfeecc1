//! Compiles `proto/` with protox (pure Rust), so no system `protoc` is needed.

use prost::Message;
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Every file of the package: each capability keeps its messages in a file of its own.
    let dir = "proto/canopy/v1";
    println!("cargo:rerun-if-changed={dir}");
    let mut files: Vec<String> = fs::read_dir(dir)?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .map(|path| path.to_string_lossy().into_owned())
        .collect();
    files.sort();
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(&files, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // Served by gRPC reflection so `grpcurl` works without the .proto file.
    fs::write(out.join("canopy_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        // Snapshot clients are copied as byte slices, not one `Vec` each.
        .bytes(".canopy.v1.SnapshotChunk.encoded_clients")
        .compile_fds(fds)?;
    Ok(())
}
