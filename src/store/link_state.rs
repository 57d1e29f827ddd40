//! The link memory row (`link_memory`, migration 5, ADR 0023): what the last sync run learned
//! about the link (its PATCH sizing) and when, and when the process catalog was last refreshed
//! from the endpoint. Only the rows: when a memory still applies is `sync::link_memory`'s call.

use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;

use super::Store;
use crate::error::{Error, Result};
use crate::process::Process;

/// What a sync run learned about the link, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRow {
    /// The endpoint the run talked to.
    pub endpoint_url: String,
    pub patch_size: u64,
    pub patch_ceiling: u64,
    /// Bytes per second of the run's last acknowledged PATCH.
    pub pace: Option<f64>,
    /// Whether an exchange of the run took longer than `patch_size::SLOW_ROUND_TRIP`.
    pub slow_link: bool,
    /// Device wall clock when it was learned.
    pub learned_at: OffsetDateTime,
}

fn unix_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_unix_ms(ms: i64, what: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|_| Error::Internal(format!("link memory: {what} is out of range")))
}

type Raw = (
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<f64>,
    Option<i64>,
    Option<i64>,
);

impl Store {
    /// What the last run that answered a PATCH learned about the link (`None`: nothing yet).
    pub fn link_memory(&self) -> Result<Option<LinkRow>> {
        let raw: Option<Raw> = self
            .conn
            .query_row(
                "SELECT endpoint_url, patch_size, patch_ceiling, pace, slow_link, learned_at_ms
                 FROM link_memory WHERE singleton = 1",
                [],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .optional()?;
        let Some((Some(url), Some(size), Some(ceiling), pace, Some(slow), Some(at))) = raw else {
            return Ok(None);
        };
        Ok(Some(LinkRow {
            endpoint_url: url,
            patch_size: u64::try_from(size).unwrap_or(0),
            patch_ceiling: u64::try_from(ceiling).unwrap_or(0),
            pace,
            slow_link: slow != 0,
            learned_at: from_unix_ms(at, "learned_at_ms")?,
        }))
    }

    /// The endpoint the catalog was last refreshed from, and when (`None`: never).
    pub fn catalog_refreshed(&self) -> Result<Option<(String, OffsetDateTime)>> {
        let raw: Option<(Option<String>, Option<i64>)> = self
            .conn
            .query_row(
                "SELECT catalog_url, catalog_at_ms FROM link_memory WHERE singleton = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match raw {
            Some((Some(url), Some(at))) => Ok(Some((url, from_unix_ms(at, "catalog_at_ms")?))),
            _ => Ok(None),
        }
    }

    /// Stores the catalog `url` answered with, and when, in one transaction.
    pub fn put_endpoint_catalog(&mut self, url: &str, list: &[Process]) -> Result<()> {
        let now = self.clock().now();
        let now_text = self.now_text()?;
        let tx = self.conn.transaction()?;
        super::processes::insert_processes(&tx, list, &now_text)?;
        tx.execute(
            "INSERT INTO link_memory (singleton, catalog_url, catalog_at_ms) VALUES (1, ?1, ?2)
             ON CONFLICT (singleton) DO UPDATE
             SET catalog_url = excluded.catalog_url, catalog_at_ms = excluded.catalog_at_ms",
            params![url, unix_ms(now)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// What a sync run leaves at its end, in one transaction: the endpoint clock's offset seen
    /// at its last answer (as `set_clock_offset`) and what it learned about the link.
    pub fn record_run_end(
        &mut self,
        clock_offset: Option<time::Duration>,
        link: Option<&LinkRow>,
    ) -> Result<()> {
        if clock_offset.is_none() && link.is_none() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        if let Some(offset) = clock_offset {
            let ms = i64::try_from(offset.whole_milliseconds()).unwrap_or(i64::MAX);
            tx.execute(
                "UPDATE endpoint SET clock_offset_ms = ?1 WHERE singleton = 1",
                [ms],
            )?;
        }
        if let Some(l) = link {
            tx.execute(
                "INSERT INTO link_memory
                     (singleton, endpoint_url, patch_size, patch_ceiling, pace, slow_link, learned_at_ms)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (singleton) DO UPDATE SET
                     endpoint_url = excluded.endpoint_url, patch_size = excluded.patch_size,
                     patch_ceiling = excluded.patch_ceiling, pace = excluded.pace,
                     slow_link = excluded.slow_link, learned_at_ms = excluded.learned_at_ms",
                params![
                    l.endpoint_url,
                    i64::try_from(l.patch_size).unwrap_or(i64::MAX),
                    i64::try_from(l.patch_ceiling).unwrap_or(i64::MAX),
                    l.pace.filter(|p| p.is_finite()),
                    i64::from(l.slow_link),
                    unix_ms(l.learned_at),
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}
