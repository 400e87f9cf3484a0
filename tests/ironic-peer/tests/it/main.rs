//! Real Ironic 35.1 against irmc-sim, linked into one test binary like every crate's tests.

mod fidelity;
