//! The PostgreSQL event log through the CLI, against the server named by
//! `DATABUILD_TEST_POSTGRES` (`scripts/test.sh` starts it); each test works in a database
//! of its own.

mod builds;
mod faults;
mod harness;
mod tls;
mod wants;
