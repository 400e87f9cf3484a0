//! The PostgreSQL backend, for several coordinator replicas sharing one database.
//!
//! Same row layout as SQLite (see `sqlite/`): uuid as 16-byte BYTEA (byte order is
//! uuid order), filter columns, spec and status as JSON text, token in its own
//! column. Migrations take a transaction-scoped advisory lock so replicas starting
//! together migrate once.
//!
//! Layout: `mod.rs` the store and connecting; `schema.rs` migrations and the start-up
//! key check; `leader.rs` leader election ([`PgStore::campaign`], [`LeaderLease`]);
//! `rows.rs` queries and row decoding shared by the trait methods; `store.rs` the
//! [`Store`](crate::Store) implementation.

mod leader;
mod rows;
mod schema;
mod store;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::codec::{SealedTokens, Secrets, db};
use crate::{SecretKeys, StoreError};

pub use leader::LeaderLease;

/// Rows per multi-row statement (10 parameters each; Postgres allows 65,535).
pub(super) const BATCH_ROWS: usize = 500;

/// PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    keys: Option<Arc<SecretKeys>>,
    tokens: Arc<SealedTokens>,
    /// Kept for the leader lease's dedicated connection (never logged: it may hold a password).
    url: Arc<str>,
}

impl PgStore {
    /// Connects without a secret key (secrets stored as given; see
    /// [`crate::SqliteStore::open`]).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, None).await
    }

    /// Connects (e.g. `postgres://user@127.0.0.1:5432/vmedia`), migrates and checks the
    /// secret keys against the store. The URL is never put into errors or logs: it may
    /// hold a password.
    pub async fn connect_with(url: &str, keys: Option<SecretKeys>) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(db("connect to PostgreSQL"))?;
        let store = Self {
            pool,
            keys: keys.map(Arc::new),
            tokens: Arc::default(),
            url: Arc::from(url),
        };
        store.migrate().await?;
        store.check_keys().await?;
        Ok(store)
    }

    pub(super) fn keys(&self) -> Option<&SecretKeys> {
        self.keys.as_deref()
    }

    pub(super) fn opened(&self) -> Secrets<'_> {
        Secrets::Open(self.keys())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
