//! The schema fingerprint shared by the migration unit test (`src/store/migrations.rs`, which
//! includes this file with `#[path]`) and the upgrade test of a real v1 store
//! (`tests/store_more.rs`): comparing two fingerprints says whether two databases have the same
//! schema, down to what SQLite made of each `CREATE` and `ALTER`.

use rusqlite::Connection;

/// The normalised schema fingerprint: each object's SQL text (whitespace collapsed) and, per table, the STRICT flag, the columns,
/// the foreign keys and the indexes with their columns.
pub fn schema_of(conn: &Connection) -> Vec<String> {
    fn rows_of(conn: &Connection, sql: &str) -> Vec<String> {
        use rusqlite::types::ValueRef;
        let show = |v: ValueRef<'_>| match v {
            ValueRef::Null => "NULL".to_string(),
            ValueRef::Integer(i) => i.to_string(),
            ValueRef::Real(f) => format!("{f:?}"),
            ValueRef::Text(t) => format!("'{}'", String::from_utf8_lossy(t)),
            ValueRef::Blob(b) => format!("x'{}'", hex::encode(b)),
        };
        let mut st = conn.prepare(sql).expect("prepare");
        let n = st.column_count();
        st.query_map([], |r| {
            (0..n)
                .map(|i| r.get_ref(i).map(show))
                .collect::<rusqlite::Result<Vec<_>>>()
                .map(|v| v.join("|"))
        })
        .expect("query")
        .map(|x| x.expect("row"))
        .collect()
    }
    let mut out = Vec::new();
    let objects: Vec<(String, String, Option<String>)> = conn
        .prepare(
            "SELECT type, name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
        )
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .map(|x| x.expect("row"))
        .collect();
    for (t, n, sql) in &objects {
        let sql = sql
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        out.push(format!("{t} {n}: {sql}"));
        if t != "table" {
            continue;
        }
        for (what, sql) in [
            (
                "table",
                format!(
                    "SELECT type, ncol, wr, strict FROM pragma_table_list('{n}') WHERE schema = 'main'"
                ),
            ),
            (
                "column",
                format!(
                    "SELECT cid, name, type, \"notnull\", dflt_value, pk, hidden FROM pragma_table_xinfo('{n}') ORDER BY cid"
                ),
            ),
            (
                "foreign key",
                format!(
                    "SELECT id, seq, \"table\", \"from\", \"to\", on_update, on_delete, \"match\" FROM pragma_foreign_key_list('{n}') ORDER BY id, seq"
                ),
            ),
            (
                "index",
                format!(
                    "SELECT name, \"unique\", origin, partial FROM pragma_index_list('{n}') ORDER BY name"
                ),
            ),
        ] {
            out.extend(
                rows_of(conn, &sql)
                    .into_iter()
                    .map(|row| format!("{what} of {n}: {row}")),
            );
        }
        let indexes: Vec<String> = conn
            .prepare(&format!(
                "SELECT name FROM pragma_index_list('{n}') ORDER BY name"
            ))
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .map(|x| x.expect("row"))
            .collect();
        for name in indexes {
            out.extend(
                rows_of(
                    conn,
                    &format!("SELECT seqno, cid, name, \"desc\", coll, key FROM pragma_index_xinfo('{name}') ORDER BY seqno"),
                )
                .into_iter()
                .map(|row| format!("index {name} of {n}: {row}")),
            );
        }
    }
    out
}
