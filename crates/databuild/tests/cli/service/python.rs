//! A client generated from the project's proto (`proto/databuild/v1/databuild.proto`) by
//! another toolchain (Python `grpcio-tools`, set up by `scripts/python-grpc-client.sh`)
//! builds a partition of the example graph and streams its events.

use super::{example, Service};

#[test]
fn a_python_client_generated_from_the_project_proto_builds_and_streams() {
    let g = example();
    let svc = Service::start(&g, &[]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/python-grpc-client.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .args([&svc.addr, "reviews/daily/date=2025-01-07"])
        .output()
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "built reviews/daily/date=2025-01-07: 3 manifests\n\
         latest PARTITION_AVAILABLE\n\
         event PARTITION_REQUESTED reviews/daily/date=2025-01-07\n\
         event PARTITION_SCHEDULED reviews/daily/date=2025-01-07\n\
         event PARTITION_BUILDING reviews/daily/date=2025-01-07\n\
         event PARTITION_AVAILABLE reviews/daily/date=2025-01-07\n"
    );
    drop(svc);
    g.assert_bel_intact();
}
