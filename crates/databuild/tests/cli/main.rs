//! Integration tests: the real `databuild` binary against real job programs and a real
//! SQLite event log in a temporary directory (or a PostgreSQL one: `postgres.rs`).

mod util;

mod architecture;
mod backfills;
mod bad_input;
mod bazel;
mod bel_location;
mod bench_smoke;
mod causes;
mod chaos;
mod coordination;
mod dashboard;
mod disk_full;
mod estimate;
mod example;
mod execution;
mod flights;
mod forget;
mod from_file;
mod init;
mod legacy_log;
mod persistent_config;
mod postgres;
mod preconfigured;
mod processes;
mod procs;
mod protocol_limits;
mod ranges;
mod ray;
mod scale;
mod service;
mod slurm;
mod stopping;
mod versions;
mod wants;
