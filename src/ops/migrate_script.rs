//! A migration's script, and how one runs through SPI: shared by the
//! general way (ops/migrate, as the tenant's role, lent what it needs) and
//! the plain-column way (ops/migrate_plain, as the extension's owner).

use crate::core::errors;
use crate::core::errors::{TcError, TcResult};
use pgrx::prelude::*;
use pgrx::spi::{SpiError, SpiErrorCodes};

/// One registered migration: its version and its script.
pub struct Migration {
    pub version: i32,
    pub script: String,
}

/// One script, through SPI. SPI refuses transaction control (COMMIT,
/// ROLLBACK, SAVEPOINT, ...) and COPY; they get an error that says so.
pub fn execute(schema: &str, migration: &Migration) -> TcResult<()> {
    let context = format!("migration {} on schema {schema}", migration.version);
    let ran = errors::caught(|| {
        Spi::connect_mut(|client| client.update(&migration.script, None, &[]).map(|_| ())).map_err(|error| match error {
            SpiError::SpiError(SpiErrorCodes::Transaction) => TcError::new(
                PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_TERMINATION,
                format!("migration {} contains a transaction control statement (COMMIT, ROLLBACK, BEGIN, SAVEPOINT, ...)", migration.version),
            )
            .hint("A migration runs inside the transaction that registers it, or that migrates one tenant: remove the statement."),
            SpiError::SpiError(SpiErrorCodes::Copy) => TcError::new(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("migration {} contains COPY, which a migration cannot run", migration.version),
            ),
            other => TcError::from(other),
        })
    });
    ran.map_err(|error| {
        let detail = match &error.detail {
            Some(detail) => format!("{detail}; {context}"),
            None => context,
        };
        error.detail(detail)
    })
}
