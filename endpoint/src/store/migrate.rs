//! PostgreSQL migrations: `endpoint/schema/postgres/NNNN_*.sql` (the same numbers as SQLite's),
//! each applied with its version row in one transaction, under a session advisory lock so that
//! replicas starting together migrate once; a schema newer than this build is refused.

use deadpool_postgres::Object;

use super::StoreError;

/// The migrations, in order; migration *n* brings the schema to version *n*.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../../schema/postgres/0001_init.sql"),
    include_str!("../../schema/postgres/0002_abuse_limits.sql"),
    include_str!("../../schema/postgres/0003_v11_trust.sql"),
    include_str!("../../schema/postgres/0004_registration_hardening.sql"),
    include_str!("../../schema/postgres/0005_commit_limits.sql"),
    include_str!("../../schema/postgres/0006_upload_digest.sql"),
];

/// The session lock every replica takes to migrate (one at a time).
const MIGRATION_LOCK: i64 = 0x6170_6f79_6f5f_6d69; // "apoyo_mi"

pub(super) enum MigrateError {
    Store(StoreError),
    Newer(i64),
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(e: tokio_postgres::Error) -> Self {
        MigrateError::Store(e.into())
    }
}

pub(super) async fn migrate(client: &Object) -> Result<(), MigrateError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = migrate_locked(client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    result
}

async fn migrate_locked(client: &Object) -> Result<(), MigrateError> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS apoyo_schema (version BIGINT PRIMARY KEY)")
        .await?;
    let found: i64 = client
        .query_one("SELECT coalesce(max(version), 0) FROM apoyo_schema", &[])
        .await?
        .try_get(0)?;
    if found > MIGRATIONS.len() as i64 {
        return Err(MigrateError::Newer(found));
    }
    for (i, script) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        let version = i as i64 + 1;
        // The script and its version in one transaction: a crash leaves neither.
        client
            .batch_execute(&format!(
                "BEGIN;\n{script}\n;INSERT INTO apoyo_schema (version) VALUES ({version});\nCOMMIT;"
            ))
            .await?;
        tracing::info!(version, "database migrated");
    }
    Ok(())
}
