//! The `irmc` integration tests, one binary (one link) for all of them.
//! `common` is the scriptable in-test BMC; fixtures (real iRMC captures) are
//! in `tests/fixtures/`.

mod client;
mod common;
mod inventory;
mod ipmi;
mod logs;
mod measure;
mod wire;
