//! The integration tests of coordinator-core, linked into one test binary.

mod admission;
mod machine;
mod placement;
