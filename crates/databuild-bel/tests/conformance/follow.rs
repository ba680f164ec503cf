//! Following the log while many writers append at once: a reader that pages through it
//! by position sees every event once, in order, and never one below where it already is.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use databuild_proto::{JobGraphRunStatus, PartitionStatus};

use crate::{backend::Backend, support::*};

pub async fn a_reader_following_the_log_sees_every_event_once_while_writers_race(b: &Backend) {
    const WRITERS: usize = 8;
    const BATCHES: usize = 60;
    let mut writers = Vec::new();
    let mut expected = 0;
    for w in 0..WRITERS {
        // Each writer has its own handle (its own connections), as another process would.
        let bel = b.open().await.unwrap();
        expected += 1 + (0..BATCHES).map(|i| 1 + (i + w) % 3).sum::<usize>();
        writers.push(tokio::spawn(async move {
            let run_id = format!("w{w}");
            bel.append(vec![graph(&run_id, JobGraphRunStatus::GraphStarted)])
                .await
                .unwrap();
            for i in 0..BATCHES {
                let batch = (0..1 + (i + w) % 3)
                    .map(|k| {
                        let r = format!("{run_id}/p{i:02}-{k}");
                        partition(&r, PartitionStatus::PartitionScheduled, &run_id, 0)
                    })
                    .collect();
                bel.append(batch).await.unwrap();
            }
        }));
    }
    let reader = b.open().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut seen, mut pages, mut empty) = (Vec::new(), 0, 0);
    let mut at = 0;
    while seen.len() < expected {
        assert!(
            Instant::now() < deadline,
            "saw {} of {expected} events in {pages} pages",
            seen.len()
        );
        // Small pages, so the reader is often between two racing writes.
        let page = reader.events_after(at, 3).await.unwrap();
        pages += 1;
        if page.is_empty() {
            empty += 1;
            reader
                .wait_for_events(at, Duration::from_secs(1))
                .await
                .unwrap();
            continue;
        }
        for e in page {
            assert!(e.seq > at, "event {} after position {at}", e.seq);
            at = e.seq;
            seen.push(e.seq);
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    let all: Vec<i64> = reader
        .events_after(0, 0)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(all.len(), expected);
    // Had an event committed below the reader's position after it passed, the reader
    // would not have it.
    assert_eq!(seen, all, "{pages} pages, {empty} empty");
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), expected);
    assert_eq!(reader.last_seq().await.unwrap(), *all.last().unwrap());
}

/// PostgreSQL: a write that reserved a position and has not ended holds readers below it,
/// though a later write committed above it; when it ends, the later write is read.
pub async fn a_running_write_holds_readers_below_its_positions(b: &Backend) {
    let Some((mut client, driver)) = b.postgres_client().await else {
        return; // SQLite has one writer at a time: commit order is log order.
    };
    let bel = b.open().await.unwrap();
    bel.append(vec![
        graph("r", JobGraphRunStatus::GraphStarted),
        partition("a", PartitionStatus::PartitionScheduled, "r", 0),
    ])
    .await
    .unwrap();
    let before = bel.events_after(0, 0).await.unwrap();
    let last = before.last().unwrap().seq;

    // A write that has reserved a position and not yet committed, as a slow writer would.
    let slow = client.transaction().await.unwrap();
    let held: Vec<i64> = slow
        .query_one("SELECT databuild_reserve(1)", &[])
        .await
        .unwrap()
        .get(0);

    // Listening before the later write commits, so its notification is heard.
    bel.wait_for_events(last, Duration::from_millis(10))
        .await
        .unwrap();

    // A later write commits above it.
    let later = bel
        .append(vec![partition(
            "b",
            PartitionStatus::PartitionScheduled,
            "r",
            0,
        )])
        .await
        .unwrap();
    assert!(later[0].seq > held[0], "{later:?} {held:?}");
    assert_eq!(bel.events_after(0, 0).await.unwrap(), before);
    assert_eq!(bel.last_seq().await.unwrap(), last);
    // Its notification does not wake a reader at `last`: there is nothing to read yet.
    let t = Instant::now();
    bel.wait_for_events(last, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert!(bel.events_after(last, 0).await.unwrap().is_empty());

    // The slow write ends (here without an event): the later one is read.
    slow.rollback().await.unwrap();
    drop(client);
    let _ = driver.await;
    assert_eq!(bel.events_after(last, 0).await.unwrap(), later);
    assert_eq!(bel.last_seq().await.unwrap(), later[0].seq);
}
