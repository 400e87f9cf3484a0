//! Shared pieces of the simulator's integration tests.
#![allow(dead_code)]

use std::net::Ipv4Addr;

/// A random loopback base `127.X.Y.1` so parallel tests never share an address.
/// X stays in 2..=200 to leave room above for multi-/24 fleets.
pub fn random_base() -> Ipv4Addr {
    let x: u8 = rand::random_range(2..=200);
    let y: u8 = rand::random();
    Ipv4Addr::new(127, x, y, 1)
}

/// True when running in CI, where missing tools must fail rather than skip.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// An HTTP client that trusts the simulator's CA.
pub fn client_with_ca(ca_pem: &str) -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([cert])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// An HTTP client that skips TLS verification.
pub fn insecure_client() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}
