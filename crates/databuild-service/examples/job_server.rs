//! An example remote job server. Run it, then point a job at it:
//!
//! ```sh
//! cargo run -p databuild-service --example job_server -- \
//!     --addr 127.0.0.1:50061 --prefix summary --input raw --data data
//! ```
//!
//! ```toml
//! [[jobs]]
//! label = "summarize"
//! entrypoint = "grpc://127.0.0.1:50061"
//! produces = ['summary/.*']
//! ```

use databuild_service::example_job::{serve, ExampleJob, Fault};

fn usage() -> ! {
    eprintln!("usage: job_server --addr HOST:PORT --prefix PREFIX [--input PREFIX] [--data DIR]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut addr = "127.0.0.1:50061".to_string();
    let mut job = ExampleJob {
        prefix: String::new(),
        input_prefix: None,
        data_dir: "data".into(),
        fault: Fault::None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--addr" => addr = value,
            "--prefix" => job.prefix = value,
            "--input" => job.input_prefix = Some(value),
            "--data" => job.data_dir = value.into(),
            _ => usage(),
        }
    }
    if job.prefix.is_empty() {
        usage();
    }
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("grpc://{}", listener.local_addr()?);
    serve(job, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
