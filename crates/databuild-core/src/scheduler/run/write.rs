//! Writing a run's pending events: one write at a time, on a blocking thread, while the
//! run's loop goes on taking job runs' messages and starting the job runs that may start
//! early; what must wait for the write (the other starts, stops, retries) waits for it.

use std::time::Duration;

use databuild_bel::{BelError, Event};
use databuild_proto::FailureCause;
use tokio::task::JoinHandle;

use super::Run;
use crate::{
    scheduler::{
        machine::{Msg, Start},
        runner::ExecResult,
    },
    CoreError,
};

/// A write in flight, and what waits for it to be durable.
pub(super) struct Writing {
    task: JoinHandle<Written>,
    /// Job runs that start once the write is durable.
    starts: Vec<Start>,
    /// Tasks whose job run to stop once the write is durable.
    cancel: Vec<usize>,
    /// Retries to time once the write is durable.
    retry: Vec<(usize, Duration)>,
}

/// How a write in flight ended; if it failed, with the events it was given, to be
/// pending again (ahead of later ones).
pub(super) type Written = Result<(), (BelError, Vec<Event>)>;

impl Run<'_> {
    /// Starts writing the pending events, taking with them what waits for them; with no
    /// events, does that at once.
    pub(super) fn begin_write(&mut self) {
        debug_assert!(self.writing.is_none(), "one write at a time");
        let batch = self.m.out.take_events();
        let starts = std::mem::take(&mut self.m.out.start);
        let cancel = std::mem::take(&mut self.m.out.cancel);
        let retry = std::mem::take(&mut self.m.out.retry);
        if batch.is_empty() {
            for s in starts {
                self.launch(s);
            }
            self.stop_and_time(cancel, retry);
            return;
        }
        let bel = self.bel.clone();
        // The log's writes may block their thread (SQLite's do): off the loop's thread,
        // driven by this runtime (PostgreSQL's connection task runs on it). The events are
        // dropped there too, or come back if the write fails.
        let rt = tokio::runtime::Handle::current();
        let task = tokio::task::spawn_blocking(move || rt.block_on(bel.append_or_return(batch)));
        self.writing = Some(Writing {
            task,
            starts,
            cancel,
            retry,
        });
    }

    /// Waits for the write in flight (there is one) to end.
    pub(super) async fn write_ended(&mut self) -> Written {
        let w = self.writing.as_mut().expect("a write in flight");
        (&mut w.task)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// Acts on how the write in flight ended: launches, stops and times what waited for
    /// it; if it failed, its events are pending again, ahead of later ones, so that a later
    /// write records them in order, the job runs that waited never start, and the error
    /// is returned.
    pub(super) fn written(&mut self, result: Written) -> Result<(), CoreError> {
        let w = self.writing.take().expect("a write in flight");
        let outcome = match result {
            Ok(()) => {
                for s in w.starts {
                    self.launch(s);
                }
                Ok(())
            }
            Err((e, batch)) => {
                let later = std::mem::replace(&mut self.m.out.events, batch);
                self.m.out.events.extend(later);
                for s in w.starts {
                    let _ = self.tx.send(Msg::Exited {
                        task: s.task,
                        job_run_id: s.job_run_id,
                        result: ExecResult::failed(FailureCause::NotStarted, "not started"),
                        digests: Default::default(),
                    });
                }
                Err(e.into())
            }
        };
        self.stop_and_time(w.cancel, w.retry);
        outcome
    }

    /// Waits for the write in flight, if any, and acts on how it ended.
    pub(super) async fn settle(&mut self) -> Result<(), CoreError> {
        if self.writing.is_none() {
            return Ok(());
        }
        let result = self.write_ended().await;
        self.written(result)
    }

    /// Stops the job runs of `cancel` and times the retries of `retry`.
    fn stop_and_time(&mut self, cancel: Vec<usize>, retry: Vec<(usize, Duration)>) {
        for task in cancel {
            if let Some(c) = self.cancels.remove(&task) {
                let _ = c.send(());
            }
        }
        for (task, delay) in retry {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = tx.send(Msg::RetryDue { task });
            });
        }
    }
}
