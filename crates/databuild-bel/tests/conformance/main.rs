//! One conformance suite for every event log backend. Each case is an async function over
//! a fresh [`backend::Backend`]; `conformance!` runs it on SQLite (a temporary file) and
//! on PostgreSQL (a new database on the server named by `DATABUILD_TEST_POSTGRES`; the
//! PostgreSQL cases fail, saying how to start one, when it is not set).

mod backend;
mod causes;
mod coordination;
mod follow;
mod log;
mod support;
mod views;
mod wants;

/// Declares, for each case, one test per backend: `sqlite::<case>` and `postgres::<case>`.
macro_rules! conformance {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::run(crate::backend::Backend::sqlite(), |b| Box::pin(crate::$module::$case(b))).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let b = crate::backend::Backend::postgres().await;
                    crate::run(b, |b| Box::pin(crate::$module::$case(b))).await;
                }
            )*
        }
    };
}

conformance!(
    log::appended_events_read_back_with_ids_times_and_run_sequences,
    log::partition_event_queries_honour_every_field,
    log::invalid_transitions_are_rejected_and_leave_the_log_unchanged,
    log::a_failed_write_gives_its_events_back_to_be_written_again,
    log::events_after_pages_through_the_log_in_order,
    log::waiting_for_events_wakes_on_an_append_by_another_handle,
    log::a_log_written_by_a_newer_schema_is_refused,
    log::a_version_1_log_is_upgraded_and_reads_as_no_version_no_digest,
    views::latest_status_runs_and_job_runs_follow_the_log,
    views::rebuilding_an_upstream_makes_its_dependents_stale,
    views::invalidate_marks_a_partition_and_its_dependents_stale,
    views::partitions_list_by_pattern_and_page_by_key,
    views::recent_job_runs_are_newest_first_by_label,
    views::a_forgotten_partition_leaves_the_listings_and_keeps_its_events,
    views::a_rebuild_with_the_same_digest_keeps_its_dependents_fresh,
    views::statuses_of_many_refs_agree_sorted_sparse_or_not,
    coordination::a_claimed_group_is_delegated_to_the_run_holding_it,
    coordination::expired_leases_are_reclaimed_as_owner_run_lost,
    coordination::a_lost_run_of_this_host_is_reclaimed_only_once_its_jobs_are_stopped,
    coordination::concurrent_writers_claim_each_partition_exactly_once,
    coordination::a_write_on_a_row_another_write_holds_runs_again_alone,
    follow::a_reader_following_the_log_sees_every_event_once_while_writers_race,
    follow::a_running_write_holds_readers_below_its_positions,
    causes::failure_causes_are_kept_and_derived_for_events_without_one,
    wants::wants_follow_their_events_and_a_tick_is_recorded_once,
    wants::backfills_follow_their_events_and_count_their_wants,
    wants::wants_by_refs_by_expiry_and_by_unavailable_partition,
);

type CaseFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

/// Runs `case` on `backend`, then drops the backend's database even if the case failed.
async fn run(
    backend: backend::Backend,
    case: impl for<'a> FnOnce(&'a backend::Backend) -> CaseFuture<'a>,
) {
    use futures_util::FutureExt as _;
    let outcome = std::panic::AssertUnwindSafe(case(&backend))
        .catch_unwind()
        .await;
    backend.cleanup().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
