//! Integration tests: the real `databuild` binary against real job programs and a real
//! SQLite event log in a temporary directory.

mod util;

mod architecture;
mod bad_input;
mod coordination;
mod example;
mod execution;
