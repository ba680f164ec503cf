//! Event log benchmark (run on purpose: `cargo bench -p databuild-bel -- [N]`): append
//! throughput batched and unbatched, then latest-status lookups and the active-builds
//! query on a log of N partition events (default 1,000,000). Prints a table: SQLite, and
//! PostgreSQL side by side when `DATABUILD_TEST_POSTGRES` names a server (a fresh database
//! is created on it for the run and dropped after).

use std::time::{Duration, Instant};

use databuild_bel::{Event, EventLog};
use databuild_proto::{
    GraphEvent, GraphLabel, JobGraphRunEvent, JobGraphRunStatus, PartitionEvent, PartitionRef,
    PartitionStatus,
};

fn registered(r: String) -> Event {
    Event::Partition(PartitionEvent {
        partition_ref: Some(PartitionRef::new(r)),
        status: PartitionStatus::PartitionAvailable as i32,
        storage_backend: "external".into(),
        ..Default::default()
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let bel = databuild_bel::open("bel.sqlite", dir.path())
        .await
        .expect("open");
    let sqlite = measure(bel.as_ref(), n).await;
    let size = std::fs::metadata(dir.path().join("bel.sqlite"))
        .map(|m| m.len())
        .unwrap_or(0);
    let mut title = format!("SQLite (file {} MiB)", size >> 20);
    let postgres = match std::env::var("DATABUILD_TEST_POSTGRES") {
        Ok(admin) => {
            let db = format!("databuild_bench_{}", uuid::Uuid::now_v7().simple());
            admin_sql(&admin, &format!("CREATE DATABASE {db}")).await;
            let url = match admin.rsplit_once('/') {
                Some((server, _)) => format!("{server}/{db}"),
                None => panic!("DATABUILD_TEST_POSTGRES must end in /database: {admin}"),
            };
            let bel = databuild_bel::open(&url, dir.path()).await.expect("open");
            let rows = measure(bel.as_ref(), n).await;
            drop(bel);
            admin_sql(&admin, &format!("DROP DATABASE {db} WITH (FORCE)")).await;
            title.push_str(" and PostgreSQL");
            Some(rows)
        }
        Err(_) => None,
    };
    println!("\nevent log benchmark: {title}, {n} partition events");
    match postgres {
        None => {
            println!("| {:<48} | {:<32} |", "measure", "SQLite");
            println!("|{}|{}|", "-".repeat(50), "-".repeat(34));
            for (k, v) in sqlite {
                println!("| {k:<48} | {v:<32} |");
            }
        }
        Some(pg) => {
            println!(
                "| {:<48} | {:<32} | {:<32} |",
                "measure", "SQLite", "PostgreSQL"
            );
            println!("|{}|{}|{}|", "-".repeat(50), "-".repeat(34), "-".repeat(34));
            for ((k, v), (_, p)) in sqlite.into_iter().zip(pg) {
                println!("| {k:<48} | {v:<32} | {p:<32} |");
            }
        }
    }
}

/// Runs one statement on the server of `url`.
async fn admin_sql(url: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to DATABUILD_TEST_POSTGRES");
    let driver = tokio::spawn(connection);
    client.batch_execute(sql).await.expect(sql);
    drop(client);
    let _ = driver.await;
}

/// Every measurement on `bel`, as `(measure, result)` rows.
async fn measure(bel: &dyn EventLog, n: usize) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = Vec::new();

    // Batched appends: 1,000 events per transaction, the scheduler's shape.
    const BATCH: usize = 1_000;
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let batch: Vec<Event> = (i..(i + BATCH).min(n))
            .map(|k| registered(format!("bench/part={k:08}")))
            .collect();
        i += batch.len();
        bel.append(batch).await.expect("append");
    }
    let batched = started.elapsed();
    rows.push((
        format!("append, batched ({BATCH}/tx), {n} events"),
        format!(
            "{:.0} events/s ({})",
            n as f64 / batched.as_secs_f64(),
            fmt(batched)
        ),
    ));

    // Unbatched: one transaction per event.
    let single = 5_000;
    let started = Instant::now();
    for k in 0..single {
        bel.append(vec![registered(format!("bench/single={k:08}"))])
            .await
            .expect("append");
    }
    let elapsed = started.elapsed();
    rows.push((
        format!("append, one event per tx, {single} events"),
        format!("{:.0} events/s", single as f64 / elapsed.as_secs_f64()),
    ));

    // Latest status of one partition.
    let mut lat = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let r = format!("bench/part={:08}", x as usize % n);
        let t = Instant::now();
        let got = bel.partitions(&[r]).await.expect("lookup");
        lat.push(t.elapsed());
        assert_eq!(got.len(), 1);
    }
    lat.sort();
    rows.push((
        format!("latest status of one partition ({n} events)"),
        format!(
            "p50 {} / p99 {}",
            fmt(percentile(&lat, 0.5)),
            fmt(percentile(&lat, 0.99))
        ),
    ));
    let mut lat = Vec::new();
    for k in 0..2_000 {
        let r = format!("bench/part={:08}", (k * 7919) % n);
        let t = Instant::now();
        bel.latest_partition_event(&r)
            .await
            .expect("latest")
            .expect("exists");
        lat.push(t.elapsed());
    }
    lat.sort();
    rows.push((
        "latest partition event, decoded".into(),
        format!(
            "p50 {} / p99 {}",
            fmt(percentile(&lat, 0.5)),
            fmt(percentile(&lat, 0.99))
        ),
    ));

    // Active builds: one live run holding 1,000 claims among everything else.
    let run_id = databuild_bel::new_id();
    bel.append(vec![Event::Run(JobGraphRunEvent {
        graph_event: Some(GraphEvent {
            job_graph_run_id: run_id.clone(),
            status: JobGraphRunStatus::GraphStarted as i32,
            label: Some(GraphLabel {
                label: "bench".into(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    })])
    .await
    .expect("run");
    let claims: Vec<Event> = (0..1_000)
        .map(|k| {
            Event::Partition(PartitionEvent {
                partition_ref: Some(PartitionRef::new(format!("bench/claimed={k:04}"))),
                status: PartitionStatus::PartitionScheduled as i32,
                job_graph_run_id: run_id.clone(),
                requesting_clients: vec!["bench".into()],
                ..Default::default()
            })
        })
        .collect();
    bel.append(claims).await.expect("claims");
    let mut lat = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let active = bel.active_builds(&[]).await.expect("active");
        lat.push(t.elapsed());
        assert_eq!(active.len(), 1_000);
    }
    lat.sort();
    rows.push((
        "active builds, all (1,000 claimed)".into(),
        format!(
            "p50 {} / p99 {}",
            fmt(percentile(&lat, 0.5)),
            fmt(percentile(&lat, 0.99))
        ),
    ));
    let some: Vec<String> = (0..10)
        .map(|k| format!("bench/claimed={:04}", k * 97))
        .collect();
    let mut lat = Vec::new();
    for _ in 0..1_000 {
        let t = Instant::now();
        bel.active_builds(&some).await.expect("active");
        lat.push(t.elapsed());
    }
    lat.sort();
    rows.push((
        "active builds of 10 refs".into(),
        format!(
            "p50 {} / p99 {}",
            fmt(percentile(&lat, 0.5)),
            fmt(percentile(&lat, 0.99))
        ),
    ));

    rows
}
