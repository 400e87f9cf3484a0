//! The integration tests of coordinator-store, linked into one test binary.

mod postgres;
mod secrets;
mod sqlite;
