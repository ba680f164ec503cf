//! Generates the gRPC stubs of every `databuild.v1` service from
//! `proto/databuild/v1/databuild.proto` without a system `protoc`: servers into
//! `$OUT_DIR/server` (with a codec that answers a malformed request with
//! INVALID_ARGUMENT), clients into `$OUT_DIR/client`. The messages are the ones of
//! `databuild-proto` (an extern path), so every crate shares one set of types.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let proto_file = "databuild/v1/databuild.proto";
    println!(
        "cargo:rerun-if-changed={}",
        proto_root.join(proto_file).display()
    );
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile([proto_file], [&proto_root])?;
    for (dir, server) in [("server", true), ("client", false)] {
        std::fs::create_dir_all(out.join(dir))?;
        let mut builder = tonic_prost_build::configure()
            .build_server(server)
            .build_client(!server)
            .out_dir(out.join(dir))
            .extern_path(".databuild.v1", "::databuild_proto");
        if server {
            builder = builder.codec_path("crate::codec::ServerCodec");
        }
        builder.compile_fds(fds.clone())?;
    }
    Ok(())
}
