//! A job's output, whichever executor runs it: the size-capped log file, the lines copied
//! into the event log, and the last line of stderr (quoted in a failed job's reason).

use std::{io::Write as _, path::PathBuf, sync::Mutex};

/// Longest log line kept in the event log.
const MAX_LINE_CHARS: usize = 1000;
/// Longest stderr line quoted in a failed job's reason.
const MAX_REASON_LINE_CHARS: usize = 300;

/// The output streams of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout = 0,
    Stderr = 1,
}

/// A job's output sink, shared by the tasks that read its streams: every chunk goes to
/// the log file, and complete lines go to `on_lines` (the event log).
pub(crate) struct Log {
    sink: Mutex<LogSink>,
    on_lines: Box<dyn Fn(Vec<String>) + Send + Sync>,
}

impl Log {
    pub(crate) fn new(
        sink: LogSink,
        on_lines: impl Fn(Vec<String>) + Send + Sync + 'static,
    ) -> Self {
        Self {
            sink: Mutex::new(sink),
            on_lines: Box::new(on_lines),
        }
    }

    /// Records a chunk of `stream`.
    pub(crate) fn write(&self, stream: Stream, chunk: &[u8]) {
        let lines = self
            .sink
            .lock()
            .expect("log sink")
            .write(stream as usize, chunk);
        if !lines.is_empty() {
            (self.on_lines)(lines);
        }
    }

    /// Flushes unterminated lines; returns the last non-blank line of stderr.
    pub(crate) fn finish(&self) -> Option<String> {
        let (rest, last) = {
            let mut sink = self.sink.lock().expect("log sink");
            (sink.finish(), sink.last_stderr_line())
        };
        if !rest.is_empty() {
            (self.on_lines)(rest);
        }
        last
    }
}

/// Collects output: the capped log file and the lines for the event log.
pub(crate) struct LogSink {
    path: PathBuf,
    file: Option<std::fs::File>,
    written: u64,
    cap: u64,
    truncated: bool,
    lines_left: usize,
    partial: [String; 2],
    /// The stderr line being written and the last non-blank one: a failed job's reason
    /// quotes it (for most programs, the error).
    err_partial: String,
    err_last: String,
}

impl LogSink {
    /// A sink writing to `path` (created on first output), keeping `cap` bytes and
    /// forwarding at most `max_lines` lines.
    pub(crate) fn new(path: PathBuf, cap: u64, max_lines: usize) -> Self {
        Self {
            path,
            file: None,
            written: 0,
            cap,
            truncated: false,
            lines_left: max_lines,
            partial: [String::new(), String::new()],
            err_partial: String::new(),
            err_last: String::new(),
        }
    }

    pub(crate) fn write(&mut self, stream: usize, chunk: &[u8]) -> Vec<String> {
        let mut kept = 0;
        if self.written < self.cap {
            if self.file.is_none() {
                if let Some(dir) = self.path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                self.file = std::fs::File::create(&self.path).ok();
            }
            kept = chunk.len().min((self.cap - self.written) as usize);
            if let Some(f) = self.file.as_mut() {
                let _ = f.write_all(&chunk[..kept]);
            }
            self.written += kept as u64;
        }
        // Noted as soon as a byte is dropped: the cut chunk may be the job's last.
        if kept < chunk.len() && !self.truncated {
            self.truncated = true;
            if let Some(f) = self.file.as_mut() {
                let _ = writeln!(
                    f,
                    "\n[databuild: log truncated at {} bytes; further output discarded]",
                    self.cap
                );
            }
        }
        let text = String::from_utf8_lossy(chunk);
        if stream == 1 {
            self.note_stderr(&text);
        }
        let mut lines = Vec::new();
        if self.lines_left == 0 {
            return lines;
        }
        let partial = &mut self.partial[stream];
        for piece in text.split_inclusive('\n') {
            if partial.chars().count() < MAX_LINE_CHARS {
                partial.extend(piece.trim_end_matches('\n').chars().take(MAX_LINE_CHARS));
            }
            if piece.ends_with('\n') {
                lines.push(std::mem::take(partial));
            }
        }
        self.take_budget(lines)
    }

    fn note_stderr(&mut self, text: &str) {
        for piece in text.split_inclusive('\n') {
            if self.err_partial.chars().count() < MAX_REASON_LINE_CHARS {
                self.err_partial.extend(
                    piece
                        .trim_end_matches('\n')
                        .chars()
                        .take(MAX_REASON_LINE_CHARS),
                );
            }
            if piece.ends_with('\n') {
                let line = std::mem::take(&mut self.err_partial);
                if !line.trim().is_empty() {
                    self.err_last = line;
                }
            }
        }
    }

    /// The last non-blank line written to stderr, if any.
    pub(crate) fn last_stderr_line(&self) -> Option<String> {
        let line = if self.err_partial.trim().is_empty() {
            &self.err_last
        } else {
            &self.err_partial
        };
        let line = line.trim();
        (!line.is_empty()).then(|| line.chars().take(MAX_REASON_LINE_CHARS).collect())
    }

    pub(crate) fn finish(&mut self) -> Vec<String> {
        let rest: Vec<String> = self
            .partial
            .iter_mut()
            .map(std::mem::take)
            .filter(|p| !p.is_empty())
            .collect();
        self.take_budget(rest)
    }

    fn take_budget(&mut self, mut lines: Vec<String>) -> Vec<String> {
        if lines.len() >= self.lines_left {
            lines.truncate(self.lines_left.saturating_sub(1));
            lines.push(format!(
                "[databuild: further output only in the log file {}]",
                self.path.display()
            ));
            self.lines_left = 0;
        } else {
            self.lines_left -= lines.len();
        }
        lines
    }
}
