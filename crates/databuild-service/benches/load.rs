//! Loopback load test of the service (not run by `cargo test`): N concurrent gRPC clients
//! × M requests each, alternating `GetLatestPartitionEvent` and `RequestPartition` on
//! overlapping refs of the example graph; then every partition must have been built
//! exactly once. Prints p50/p99 latency and requests per second.
//!
//!     cargo bench -p databuild-service --bench load -- [--clients 50] [--requests 1000]

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use databuild_bel::Event;
use databuild_core::{BuildOptions, Graph};
use databuild_proto::{self as pb, PartitionRef, PartitionStatus};
use databuild_service::{clients::catalog_client::CatalogClient, App, ServeOptions};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            if e.file_name() != ".databuild" && e.file_name() != "out" {
                copy_dir(&e.path(), &target);
            }
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let clients = arg("--clients", 50);
    let requests = arg("--requests", 1000);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/basic"),
        dir.path(),
    );
    let graph = Graph::load(&dir.path().join("databuild.toml")).unwrap();
    let bel = databuild_bel::open(".databuild/bel.sqlite", dir.path())
        .await
        .unwrap();
    let mut ext = databuild_core::events::partition(
        "catalog/podcasts",
        PartitionStatus::PartitionAvailable,
        "",
    );
    ext.manifest = Some(pb::PartitionManifest {
        outputs: vec![PartitionRef::new("catalog/podcasts")],
        ..Default::default()
    });
    bel.append(vec![Event::Partition(ext)]).await.unwrap();
    let opts = ServeOptions {
        build: BuildOptions {
            parallelism: 2,
            log_dir: dir.path().join(".databuild/logs"),
            ..BuildOptions::default()
        },
        ..ServeOptions::default()
    };
    let app = App::new(graph, bel.clone(), opts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(databuild_service::serve(app.clone(), listener, async {
        let _ = stop_rx.await;
    }));

    // 14 dates × (raw, clean): overlapping refs, upstream of each other.
    let refs: Arc<Vec<String>> = Arc::new(
        (1..=14)
            .flat_map(|d| {
                [
                    format!("reviews/raw/date=2025-02-{d:02}"),
                    format!("reviews/clean/date=2025-02-{d:02}"),
                ]
            })
            .collect(),
    );
    println!("load: {clients} clients x {requests} requests (GetLatestPartitionEvent / RequestPartition) on {} overlapping refs", refs.len());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let url = url.clone();
        let refs = refs.clone();
        tasks.push(tokio::spawn(async move {
            let ch = tonic::transport::Endpoint::from_shared(url)
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut cat = CatalogClient::new(ch);
            let mut lat = Vec::with_capacity(requests);
            let mut errors = 0usize;
            for i in 0..requests {
                let r = PartitionRef::new(refs[(c * 7 + i) % refs.len()].clone());
                let t = Instant::now();
                let ok = if i % 2 == 0 {
                    match cat
                        .get_latest_partition_event(pb::GetLatestPartitionEventRequest {
                            partition_ref: Some(r),
                        })
                        .await
                    {
                        Ok(_) => true,
                        Err(s) => s.code() == tonic::Code::NotFound,
                    }
                } else {
                    cat.request_partition(pb::RequestPartitionRequest {
                        partition_ref: Some(r),
                        client_id: format!("load-{c}"),
                        options: Some(pb::RequestOptions {
                            allow_delegation: true,
                            timeout_seconds: 0,
                        }),
                    })
                    .await
                    .is_ok()
                };
                lat.push(t.elapsed());
                if !ok {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.unwrap();
        all.extend(lat);
        errors += e;
    }
    let elapsed = start.elapsed();
    app.builds.idle().await;
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();

    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut duplicates = 0;
    let mut unbuilt = 0;
    for r in refs.iter() {
        let history = bel.partition_history(r).await.unwrap();
        let building = history
            .iter()
            .filter(|e| matches!(&e.event, Event::Partition(p) if p.status == PartitionStatus::PartitionBuilding as i32))
            .count();
        if building > 1 {
            duplicates += 1;
        }
        let available = history
            .iter()
            .any(|e| matches!(&e.event, Event::Partition(p) if p.status == PartitionStatus::PartitionAvailable as i32));
        if !available {
            unbuilt += 1;
        }
    }
    let runs = bel.list_runs(&Default::default()).await.unwrap().len();
    println!("| requests | errors | p50 ms | p99 ms | max ms | req/s | graph runs | partitions built twice | not built |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| {} | {errors} | {:.2} | {:.2} | {:.2} | {:.0} | {runs} | {duplicates} | {unbuilt} |",
        all.len(),
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(*all.last().unwrap()),
        all.len() as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(errors, 0, "requests failed");
    assert_eq!(duplicates, 0, "a partition was built twice");
}
