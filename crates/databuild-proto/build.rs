//! Compiles `proto/databuild/v1/databuild.proto` without a system `protoc`.
use std::{env, path::PathBuf};

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let proto_file = "databuild/v1/databuild.proto";
    println!(
        "cargo:rerun-if-changed={}",
        proto_root.join(proto_file).display()
    );

    let fds = protox::compile([proto_file], [&proto_root])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor_bytes = fds.encode_to_vec();
    std::fs::write(out_dir.join("databuild_descriptor.bin"), &descriptor_bytes)?;

    prost_build::Config::new()
        .compile_well_known_types()
        // Timestamp has its own JSON form (`Z`, as the proto3 JSON mapping writes it).
        .extern_path(".google.protobuf.Timestamp", "crate::Timestamp")
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(fds)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .build(&[".databuild"])?;
    Ok(())
}
