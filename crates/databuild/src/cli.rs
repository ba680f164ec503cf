//! Command-line arguments (clap): one definition per flag.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

/// databuild: ask for data, get it built.
///
/// Reads the graph from `databuild.toml`, plans the jobs that produce the partitions you
/// ask for, runs them in dependency order and records every step in the build event log.
///
/// Exit codes: 0 success, 1 build failed, 2 usage or configuration error.
#[derive(Debug, Parser)]
#[command(name = "databuild", version, propagate_version = true)]
pub struct Cli {
    /// The graph file.
    #[arg(
        long,
        global = true,
        env = "DATABUILD_GRAPH",
        default_value = "databuild.toml"
    )]
    pub graph: PathBuf,
    /// The build event log: `sqlite:///path/bel.sqlite` or a path. Default: the graph
    /// file's `bel`, else `.databuild/bel.sqlite` beside the graph file.
    #[arg(long, global = true, env = "DATABUILD_BEL")]
    pub bel: Option<String>,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Talk to a running `databuild serve` instead of a local graph and event log, e.g.
    /// `http://127.0.0.1:50051`. Works with build, analyze, lookup, execute, request,
    /// partitions list|show|history|why, runs, events, deps, active and logs; builds run
    /// with the service's options (`-j`, `--lease`, ...).
    ///
    /// Example: databuild --remote http://127.0.0.1:50051 build reviews/daily/date=2025-01-07
    #[arg(long, global = true, env = "DATABUILD_REMOTE", value_name = "URL")]
    pub remote: Option<String>,
    /// The CA certificate (PEM) that an `https://` `--remote` service's certificate must
    /// be signed by; default: the system's CA bundle.
    #[arg(long, global = true, env = "DATABUILD_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// A file holding the access token sent to `--remote` (`Authorization: Bearer`);
    /// `DATABUILD_TOKEN` gives the token itself instead.
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// More logging on stderr (-v, -vv); `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build partitions and everything upstream of them.
    ///
    /// Example: databuild build reviews/daily/date=2025-01-01
    Build(BuildArgs),
    /// Show the job graph that would build partitions, without running it.
    ///
    /// Example: databuild analyze --format dot reports/weekly/week=2025-01-06 | dot -Tsvg > g.svg
    #[command(group(ArgGroup::new("wanted").required(true).multiple(true).args(["refs", "from_file"])))]
    Analyze {
        /// Partition refs (`[a..b]` ranges and `{a,b}` lists expand; see `--literal`).
        refs: Vec<String>,
        /// Also plan the refs listed in FILE, one per line (`-`: read them from stdin).
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
        #[command(flatten)]
        syntax: RefSyntax,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Plan the requested partitions even if they are available.
        #[arg(long)]
        force: bool,
        /// Instead of the graph, print what building would take: partitions wanted and
        /// already available, job runs, job time and wall time at `-j`, and the critical
        /// path, from the median duration of each job's past successful job runs.
        ///
        /// Example: databuild analyze --estimate -j 8 'reviews/daily/date=[2025-01-01..2025-03-31]'
        #[arg(long, conflicts_with = "format")]
        estimate: bool,
        /// The parallelism the `--estimate` wall time is for, as `build -j` (default:
        /// number of CPUs).
        #[arg(short = 'j', long, requires = "estimate")]
        jobs: Option<usize>,
    },
    /// Check the graph file without building: parse it, resolve every entrypoint (present and
    /// executable) and parse every `produces` pattern. Exit 0 when it loads, 2 with the
    /// error otherwise.
    ///
    /// Example: databuild --graph jobs/databuild.toml check
    Check,
    /// Show which job produces each partition ref.
    ///
    /// Example: databuild lookup --from-file refs.txt
    #[command(group(ArgGroup::new("wanted").required(true).multiple(true).args(["refs", "from_file"])))]
    Lookup {
        /// Partition refs (`[a..b]` ranges and `{a,b}` lists expand; see `--literal`).
        refs: Vec<String>,
        /// Also look up the refs listed in FILE, one per line (`-`: read them from stdin).
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
        #[command(flatten)]
        syntax: RefSyntax,
    },
    /// Execute a job graph (`JobGraph` JSON, as printed by `analyze --format json`) read from stdin.
    Execute(ExecArgs),
    /// Partitions: list, show, history, why, invalidate, register, forget.
    #[command(subcommand)]
    Partitions(PartitionsCommand),
    /// Graph runs: list, show.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Print events from the build event log.
    ///
    /// Example: databuild events --follow --status failed
    Events {
        /// Only partition events of these refs (repeatable).
        #[arg(long = "ref")]
        refs: Vec<String>,
        /// Only partition events with this status (repeatable).
        #[arg(long)]
        status: Vec<String>,
        /// Only events of this graph run (repeatable).
        #[arg(long)]
        run: Vec<String>,
        /// Only events after this log position.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many events (0: all).
        #[arg(long, default_value_t = 0)]
        limit: usize,
        /// Keep printing new events as they are appended.
        #[arg(long)]
        follow: bool,
    },
    /// Show what a partition was built from and what was built from it.
    ///
    /// Example: databuild deps reviews/daily/date=2025-01-07 --depth 2 --format dot
    Deps {
        /// The partition ref.
        partition_ref: String,
        /// Hops to follow in each direction (1..=100; default 3).
        #[arg(long, default_value_t = 3, allow_negative_numbers = true)]
        depth: i32,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// List partitions being built right now, by whom and for whom.
    Active {
        /// Only these refs (all if none).
        refs: Vec<String>,
    },
    /// Ask for a partition: get it if available, join the build in flight, or start one.
    ///
    /// Prints a `RequestPartitionResponse` (JSON). A build this starts runs to the end
    /// before the command exits.
    /// Example: databuild request reviews/daily/date=2025-01-07 --timeout 30s
    Request {
        /// The partition ref.
        partition_ref: String,
        /// Who is asking (recorded in `requesting_clients`).
        #[arg(long)]
        client_id: Option<String>,
        /// Refuse instead of joining a build in flight.
        #[arg(long)]
        no_delegation: bool,
        /// How long to wait for the partition before answering with a token.
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
    /// Print the log of a job run.
    Logs {
        /// The job run id (see `databuild runs show`).
        job_run_id: String,
    },
    /// Serve the graph: gRPC (`databuild.v1` DataBuildService, Catalog, GraphLookup, with
    /// reflection and health), an HTTP JSON API with Server-Sent Events, and the web
    /// dashboard (at `/`), on one port.
    ///
    /// Prints the URL it listens on as the first line of stdout. SIGTERM or Ctrl-C stops
    /// accepting builds and waits for the builds in flight (a second signal exits at once;
    /// their claims then expire with their lease). The API is described at
    /// `/api/v1/openapi.json`; metrics are at `/metrics`.
    ///
    /// Example: databuild serve --addr 127.0.0.1:50051 -j 4
    Serve(ServeArgs),
    /// Want partitions: record wants that the reconciler (`serve`, or `reconcile`) keeps
    /// satisfied — builds them, rebuilds them when they go stale, retries failures — until
    /// they expire. Prints the want ids.
    ///
    /// Example: databuild want reviews/daily/date=2025-01-07 --ttl 7d --sla 6h
    #[command(group(ArgGroup::new("wanted").required(true).multiple(true).args(["refs", "from_file"])))]
    Want {
        /// Partition refs (`[a..b]` ranges and `{a,b}` lists expand; see `--literal`).
        refs: Vec<String>,
        /// Also want the refs listed in FILE, one per line (`-`: read them from stdin).
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
        #[command(flatten)]
        syntax: RefSyntax,
        /// How long the wants stay active (default: until withdrawn), e.g. `30d`.
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<std::time::Duration>,
        /// The partitions must be AVAILABLE within this, e.g. `6h`; a miss is recorded and
        /// notified (`[notify]`).
        #[arg(long, value_parser = parse_duration)]
        sla: Option<std::time::Duration>,
    },
    /// Withdraw wants, by want id or by partition ref (every active want of it).
    ///
    /// Example: databuild unwant want-0192...
    Unwant {
        /// Want ids or partition refs.
        #[arg(required = true)]
        wants: Vec<String>,
    },
    /// Wants: list, show.
    #[command(subcommand)]
    Wants(WantsCommand),
    /// Backfills: start, list, show, resume, retry, cancel. A backfill builds (or rebuilds)
    /// many partitions as a named, persistent set of wants, worked through in chunks.
    #[command(subcommand)]
    Backfill(BackfillCommand),
    /// Keep wanted partitions built, in the foreground, without the service: record
    /// schedule ticks, build what active wants lack, retry failures, record SLA misses,
    /// send notifications. `--once` does one pass, waits for the builds it started, and
    /// exits (for running from cron).
    ///
    /// Example: databuild reconcile --once -j 4
    Reconcile {
        /// One pass, then wait for its builds and exit.
        #[arg(long)]
        once: bool,
        /// With `--once`: decide only — print what the pass would build and how long it
        /// took, record nothing and build nothing.
        #[arg(long, requires = "once")]
        dry_run: bool,
        /// Builds of a failed wanted partition after the first, before its want fails.
        #[arg(long, default_value_t = 3)]
        retries: u32,
        /// Wait before the first retry, doubled after each.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        retry_backoff: std::time::Duration,
        /// Leave wanted partitions built by another version of their job as they are
        /// (by default they are rebuilt like STALE ones).
        #[arg(long)]
        keep_outdated: bool,
        /// Options of the builds it runs.
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Start a graph: write a `databuild.toml` and one sample job into DIR.
    ///
    /// The sample job (POSIX sh, or Python with `--python`) builds the partitions
    /// `hello/date=YYYY-MM-DD`. Refuses to overwrite an existing `databuild.toml` or job
    /// file, and then writes nothing.
    ///
    /// Example: databuild init demo && cd demo && databuild build hello/date=2025-01-01
    Init {
        /// The directory (created if missing).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Write the sample job in Python, with the job SDK of the `databuild` Python
        /// package, instead of POSIX sh.
        #[arg(long)]
        python: bool,
    },
    /// Print a shell completion script on stdout.
    ///
    /// Example: databuild completions bash > ~/.local/share/bash-completion/completions/databuild
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page, databuild(1), in roff on stdout.
    ///
    /// Example: databuild man > ~/.local/share/man/man1/databuild.1 && man databuild
    Man,
    /// Access tokens that `databuild serve --auth FILE` accepts: add, list, revoke.
    ///
    /// Each principal has a name (recorded as the requester of what it does), a role —
    /// `read` (every read and stream), `build` (also build and request partitions) or
    /// `admin` (also invalidate, register, append events, cancel) — and a token, printed
    /// once by `auth add`; the file keeps only the token's SHA-256.
    ///
    /// Example: databuild auth add alice --role build --file auth.toml
    #[command(subcommand)]
    Auth(AuthCmd),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum AuthCmd {
    /// Make a token for a new principal and print it (once).
    Add {
        /// The principal's name: letters, digits, `.`, `_`, `-`, `@`.
        name: String,
        /// What the principal may do.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// The token file.
        #[arg(long, default_value = "auth.toml")]
        file: PathBuf,
    },
    /// List the principals and their roles.
    List {
        /// The token file.
        #[arg(long, default_value = "auth.toml")]
        file: PathBuf,
    },
    /// Remove a principal: its token stops working at once, its sessions end.
    Revoke {
        /// The principal's name.
        name: String,
        /// The token file.
        #[arg(long, default_value = "auth.toml")]
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Read,
    Build,
    Admin,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port). Without `--auth` only a loopback
    /// address is accepted.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub addr: String,
    /// Require an access token (`Authorization: Bearer`, or a dashboard session) from
    /// the principals of this file (made with `databuild auth add`). Default: the graph
    /// file's `[service] auth`.
    #[arg(long, value_name = "FILE")]
    pub auth: Option<PathBuf>,
    /// Also answer requests naming this host (`Host` header), e.g. the service's DNS name;
    /// loopback names are always answered. Repeatable.
    #[arg(long, value_name = "HOST")]
    pub allowed_host: Vec<String>,
    /// Listen on a non-loopback address without authentication: anyone who reaches the
    /// port may build, invalidate and append events.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Most client connections open at once (lowered to keep `--fd-reserve` descriptors
    /// free under the open-file limit). At the cap the connection idle longest is closed.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
    /// File descriptors kept free for the builds' jobs and the event log, whatever
    /// clients hold.
    #[arg(long, default_value_t = 1024)]
    pub fd_reserve: u64,
    /// How long a client may take to send a request's headers.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: std::time::Duration,
    /// Close a connection after this long without traffic while no request is answered.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: std::time::Duration,
    /// Most streams (SSE or gRPC) one principal may have open at once.
    #[arg(long, default_value_t = 64)]
    pub max_streams_per_principal: usize,
    /// Partition events buffered for each stream consumer; a consumer that stays this far
    /// behind for 2 s has its stream closed (RESOURCE_EXHAUSTED).
    #[arg(long, default_value_t = 1024)]
    pub stream_buffer: usize,
    /// Speak TLS on the port (HTTP/1.1 and HTTP/2, so gRPC too) with this certificate
    /// chain (PEM); needs `--tls-key`. Clients then use `https://`.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Do not run the reconciler (which keeps wanted partitions built and records
    /// schedule ticks) in this service.
    #[arg(long)]
    pub no_reconcile: bool,
    /// Options of the builds the service runs.
    #[command(flatten)]
    pub exec: ExecArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Dot,
    Mermaid,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Most jobs at once (default: number of CPUs).
    #[arg(short = 'j', long)]
    pub jobs: Option<usize>,
    /// Stop at the first failed job instead of continuing with independent work.
    #[arg(long)]
    pub fail_fast: bool,
    /// Time a stopped job gets between SIGTERM and SIGKILL.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub kill_grace: std::time::Duration,
    /// Lease of this run's claims (renewed while it runs).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub lease: std::time::Duration,
    /// Bytes of each job's output kept in its log file.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub log_cap_bytes: u64,
}

/// How refs on the command line and in `--from-file` are read.
#[derive(Debug, Clone, Copy, Args)]
pub struct RefSyntax {
    /// Take refs as written. Without it, a ref expands its ranges — days
    /// `[2025-01-01..2025-01-31]`, months `[2025-01..2025-12]`, hours
    /// `[2025-01-01T00..2025-01-01T23]`, integers `[0..63]` (`[000..063]` keeps the
    /// zeros) — and lists `{red,green,blue}`, both ends included; several make every
    /// combination, the first varying slowest. At most 10,000,000 refs in all.
    #[arg(long)]
    pub literal: bool,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("wanted").required(true).multiple(true).args(["refs", "from_file"])))]
pub struct BuildArgs {
    /// Partition refs to build (`[a..b]` ranges and `{a,b}` lists expand; see `--literal`).
    ///
    /// Example: databuild build 'reviews/daily/date=[2025-01-01..2025-01-31]'
    pub refs: Vec<String>,
    /// Also build the refs listed in FILE, one per line (`-`: read them from stdin), for
    /// more refs than a command line holds.
    ///
    /// Example: databuild build --from-file refs.txt
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
    /// Rebuild the requested partitions even if they are available.
    #[arg(long)]
    pub force: bool,
    /// Leave AVAILABLE partitions built by another version of their job as they are:
    /// build only what is missing, failed or stale.
    #[arg(long)]
    pub keep_outdated: bool,
    #[command(flatten)]
    pub syntax: RefSyntax,
    #[command(flatten)]
    pub exec: ExecArgs,
}

#[derive(Debug, Subcommand)]
pub enum PartitionsCommand {
    /// List partitions and their latest status.
    List {
        /// Only this status (e.g. `available`, `failed`); repeatable.
        #[arg(long)]
        status: Vec<String>,
        /// Only refs starting with this prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// Only refs fully matching this regular expression.
        #[arg(long)]
        pattern: Option<String>,
        /// At most this many (0: all).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Skip this many.
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Only AVAILABLE partitions built by another version of their job than the graph
        /// file gives it now (they are rebuilt when built or needed).
        #[arg(long, conflicts_with_all = ["status", "pattern"])]
        outdated: bool,
    },
    /// Show a partition's latest status and manifest.
    Show {
        /// The partition ref.
        partition_ref: String,
    },
    /// Show every event of a partition.
    History {
        /// The partition ref.
        partition_ref: String,
    },
    /// Explain why a partition is missing, stale or failed, down to the root cause.
    ///
    /// Example: databuild partitions why 'reviews/daily/date=[2025-01-01..2025-01-07]'
    Why {
        /// Partition refs (`[a..b]` ranges and `{a,b}` lists expand; see `--literal`); one
        /// explanation each, separated by a blank line.
        #[arg(required = true)]
        refs: Vec<String>,
        #[command(flatten)]
        syntax: RefSyntax,
    },
    /// Mark an available partition stale, and everything built from it.
    ///
    /// Example: databuild partitions invalidate reviews/raw/date=2025-01-07 --reason "bad upstream dump"
    Invalidate {
        /// The partition ref.
        partition_ref: String,
        /// Why (recorded in the event log).
        #[arg(long, default_value = "by a user")]
        reason: String,
    },
    /// Record external data as available.
    ///
    /// Example: databuild partitions register catalog/podcasts
    #[command(group(ArgGroup::new("wanted").required(true).multiple(true).args(["refs", "from_file"])))]
    Register {
        /// Partition refs (`[a..b]` ranges and `{a,b}` lists expand; see `--literal`).
        refs: Vec<String>,
        /// Also register the refs listed in FILE, one per line (`-`: read them from
        /// stdin), for more refs than a command line holds.
        ///
        /// Example: databuild partitions register --from-file landed.txt
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
        /// Register even if a job of the graph produces the ref.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        syntax: RefSyntax,
    },
    /// Remove partitions that never had a successful build (e.g. a typo) from the listings.
    ///
    /// A PARTITION_FORGOTTEN event records it; the partition's history stays. Refuses a
    /// ref that was ever AVAILABLE, one being built and an unknown one, and then forgets
    /// none of them.
    ///
    /// Example: databuild partitions forget reviews/daily/date=2025-13-45
    #[command(group(ArgGroup::new("wanted").required(true).multiple(true).args(["refs", "from_file"])))]
    Forget {
        /// Partition refs (`[a..b]` ranges and `{a,b}` lists expand; see `--literal`).
        refs: Vec<String>,
        /// Also forget the refs listed in FILE, one per line (`-`: read them from stdin).
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
        #[command(flatten)]
        syntax: RefSyntax,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackfillCommand {
    /// Record a backfill and work through it in the foreground, chunk by chunk, with a
    /// progress bar; `kill -9` at any moment loses nothing (`backfill resume`).
    ///
    /// Example: databuild backfill start 'reviews/daily/date=[2025-01-01..2025-12-31]' --name 2025 -j 8
    #[command(group(ArgGroup::new("wanted").required(true).multiple(true).args(["refs", "from_file"])))]
    Start {
        /// Partition refs (`[a..b]` ranges and `{a,b}` lists expand).
        refs: Vec<String>,
        /// Also the refs listed in FILE, one per line (`-`: read them from stdin).
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
        /// A name for people (default: the first ref).
        #[arg(long, default_value = "")]
        name: String,
        /// Pause after this many partitions failed (0: never), with a notification.
        #[arg(long, default_value_t = 0)]
        max_failures: u32,
        /// Jobs at once (default: number of CPUs).
        #[arg(short = 'j', long)]
        jobs: Option<usize>,
        /// Partitions per graph run.
        #[arg(long, default_value_t = 10_000)]
        chunk: usize,
        /// Say what it would take — partitions, job runs, already available, job time
        /// and wall time at `-j` from each job's history, the critical path — and record
        /// nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List backfills, newest first, with their progress.
    List,
    /// Show a backfill: progress, failures by cause, and its partitions' statuses.
    Show {
        /// The backfill id.
        backfill_id: String,
    },
    /// Continue a backfill (paused, or whose driver died) where it was.
    Resume {
        /// The backfill id.
        backfill_id: String,
        /// Partitions per graph run.
        #[arg(long, default_value_t = 10_000)]
        chunk: usize,
    },
    /// Rerun only the partitions of a backfill that failed (and what they need), then go
    /// on with the rest.
    Retry {
        /// The backfill id.
        backfill_id: String,
        /// Partitions per graph run.
        #[arg(long, default_value_t = 10_000)]
        chunk: usize,
    },
    /// Cancel a backfill: no new work; running jobs finish (or stop, with `--now`).
    Cancel {
        /// The backfill id.
        backfill_id: String,
        /// Stop its running jobs instead of letting them finish.
        #[arg(long)]
        now: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum WantsCommand {
    /// List wants, by id.
    ///
    /// Example: databuild wants list --status active
    List {
        /// Only wants with this status: active, satisfied, failed, expired, cancelled
        /// (repeatable; default: all).
        #[arg(long)]
        status: Vec<String>,
        /// At most this many (0: all).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show a want: its status, deadlines, history, and what it waits for.
    Show {
        /// The want id.
        want_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List graph runs, newest first.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Show a graph run: its jobs and every event.
    Show {
        /// The graph run id.
        run_id: String,
    },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    databuild_core::graph::parse_duration(s)
        .ok_or_else(|| format!("invalid duration `{s}`; use e.g. `500ms`, `30s`, `5m`"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// README.md's "Command line" section.
    fn readme_command_line() -> String {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("\n## Command line\n")
            .expect("README.md has a `## Command line` section");
        let rest = &readme[start + 1..];
        let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
        rest[..end].to_string()
    }

    /// Whether `section` names `parent sub` as `` `parent a|sub|b` `` or `` `parent sub` ``.
    fn names_subcommand(section: &str, parent: &str, sub: &str) -> bool {
        let needle = format!("`{parent} ");
        section.match_indices(&needle).any(|(i, _)| {
            let after = &section[i + needle.len()..];
            let words = after.split(['`', ' ']).next().unwrap_or("");
            words.split('|').any(|w| w == sub)
        })
    }

    #[test]
    fn the_readme_command_line_section_names_every_command() {
        let section = readme_command_line();
        let cli = super::Cli::command();
        let mut missing = Vec::new();
        for cmd in cli.get_subcommands() {
            let name = cmd.get_name();
            if !section.contains(&format!("`{name}")) {
                missing.push(name.to_string());
            }
            for sub in cmd.get_subcommands() {
                if !names_subcommand(&section, name, sub.get_name()) {
                    missing.push(format!("{name} {}", sub.get_name()));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "README.md's `## Command line` section does not name {missing:?}; list them there"
        );
    }

    #[test]
    fn group_help_lists_every_subcommand() {
        let cli = super::Cli::command();
        for cmd in cli.get_subcommands().filter(|c| c.has_subcommands()) {
            let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
            for sub in cmd.get_subcommands() {
                assert!(
                    about.contains(sub.get_name()),
                    "`{} --help` says {about:?}, without `{}`",
                    cmd.get_name(),
                    sub.get_name()
                );
            }
        }
    }
}
