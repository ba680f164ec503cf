//! databuild as a service: every seed service over gRPC (tonic) and an HTTP JSON API
//! (axum) on one port, Server-Sent Events, metrics, the web dashboard; the gRPC client of remote jobs and
//! lookup servers; and the HTTP client behind `databuild --remote`.

pub mod builds;
pub mod codec;
pub mod conn;
pub mod dashboard;
pub mod errors;
pub mod example_job;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod openapi;
pub mod ops;
pub mod remote;
pub mod remote_jobs;
pub mod security;
pub mod serve;
pub mod state;
pub mod stream;
pub mod tls;
pub mod wire;

pub use serve::serve;
pub use state::{App, ServeOptions};

/// The gRPC servers of every `databuild.v1` service (generated).
#[allow(clippy::all, clippy::pedantic, missing_docs)] // generated code
pub mod servers {
    include!(concat!(env!("OUT_DIR"), "/server/databuild.v1.rs"));
}

/// The gRPC clients of every `databuild.v1` service (generated).
#[allow(clippy::all, clippy::pedantic, missing_docs)] // generated code
pub mod clients {
    include!(concat!(env!("OUT_DIR"), "/client/databuild.v1.rs"));
}
