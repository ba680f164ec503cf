//! Integration tests: the real `databuild` binary against real job programs and a real
//! SQLite event log in a temporary directory (or a PostgreSQL one: `postgres.rs`).

mod util;

mod architecture;
mod bad_input;
mod bench_smoke;
mod coordination;
mod dashboard;
mod example;
mod execution;
mod flights;
mod from_file;
mod postgres;
mod preconfigured;
mod scale;
mod service;
mod slurm;
