//! The process catalog: the definitions a capture is checked against (`Store::capture` looks
//! its process up here).

use rusqlite::{OptionalExtension, params};

use super::Store;
use crate::error::{Error, Result};
use crate::process::Process;

impl Store {
    /// Adds or replaces process definitions.
    pub fn put_processes(&mut self, list: &[Process]) -> Result<()> {
        let now = self.now_text()?;
        let tx = self.conn.transaction()?;
        insert_processes(&tx, list, &now)?;
        tx.commit()?;
        Ok(())
    }

    /// The process catalog.
    pub fn processes(&self) -> Result<Vec<Process>> {
        let mut st = self
            .conn
            .prepare("SELECT definition FROM processes ORDER BY id")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for json in rows {
            out.extend(Process::parse_json_list(json?.as_bytes())?);
        }
        Ok(out)
    }

    /// One process by id.
    pub fn process(&self, id: &str) -> Result<Process> {
        let json: Option<String> = self
            .conn
            .prepare_cached("SELECT definition FROM processes WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        let json = json.ok_or_else(|| Error::UnknownProcess(id.escape_default().to_string()))?;
        Process::parse_json_list(json.as_bytes())?
            .pop()
            .ok_or_else(|| Error::UnknownProcess(id.escape_default().to_string()))
    }
}

/// Adds or replaces `list` inside the caller's transaction (`updated_at` = `now`).
pub(super) fn insert_processes(
    tx: &rusqlite::Transaction<'_>,
    list: &[Process],
    now: &str,
) -> Result<()> {
    for p in list {
        p.check()?;
        tx.execute(
            "INSERT INTO processes (id, definition, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at",
            params![p.id, p.to_json()?, now],
        )?;
    }
    Ok(())
}
