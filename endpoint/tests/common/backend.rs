//! Which database the test endpoints run on: SQLite (a file in the test's folder, the default)
//! or, when `APOYO_TEST_DATABASE_URL` names a PostgreSQL server, a fresh schema of that
//! database per endpoint (so tests running at once never see each other's rows). A test that
//! looks into the database asks here, in SQL both backends read (`?1` is `$1` on PostgreSQL).
#![allow(dead_code)]

use std::path::Path;

use tokio_postgres::types::Type;

/// The environment variable naming the PostgreSQL server the suite runs against.
pub const TEST_DATABASE_URL: &str = "APOYO_TEST_DATABASE_URL";

/// A value read back from the database.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Bytes(Vec<u8>),
    Text(String),
    Int(i64),
    Null,
}

impl Val {
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Val::Bytes(b) => b.clone(),
            other => panic!("not bytes: {other:?}"),
        }
    }
    pub fn text(&self) -> String {
        match self {
            Val::Text(t) => t.clone(),
            other => panic!("not text: {other:?}"),
        }
    }
    pub fn int(&self) -> Option<i64> {
        match self {
            Val::Int(i) => Some(*i),
            Val::Null => None,
            other => panic!("not an integer: {other:?}"),
        }
    }
}

/// The PostgreSQL server of this run, if any.
pub fn server_url() -> Option<String> {
    std::env::var(TEST_DATABASE_URL)
        .ok()
        .filter(|u| !u.is_empty())
}

/// A fresh schema on the server; the URL that makes it the endpoint's (`search_path`).
pub async fn fresh_schema(server: &str) -> String {
    let schema = format!("t_{:016x}", fastrand::u64(..));
    let client = connect(server).await;
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("create a test schema");
    let sep = if server.contains('?') { '&' } else { '?' };
    format!("{server}{sep}options=-csearch_path%3D{schema}")
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL server");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Rows of `sql` with one text parameter (or none), from the endpoint's database.
pub async fn query(
    database: Option<&str>,
    db_path: &Path,
    sql: &str,
    param: Option<&str>,
) -> Vec<Vec<Val>> {
    match database {
        Some(url) => {
            let client = connect(url).await;
            let sql = sql.replace("?1", "$1");
            let rows = match param {
                Some(p) => client.query(&sql, &[&p]).await,
                None => client.query(&sql, &[]).await,
            }
            .expect("query the endpoint's PostgreSQL schema");
            rows.iter()
                .map(|r| (0..r.len()).map(|i| pg_val(r, i)).collect())
                .collect()
        }
        None => {
            let conn = rusqlite::Connection::open(db_path).unwrap();
            let mut st = conn.prepare(sql).unwrap();
            let n = st.column_count();
            let params: Vec<&str> = param.into_iter().collect();
            st.query_map(rusqlite::params_from_iter(params), |r| {
                Ok((0..n)
                    .map(|i| match r.get_ref(i).unwrap() {
                        rusqlite::types::ValueRef::Null => Val::Null,
                        rusqlite::types::ValueRef::Integer(i) => Val::Int(i),
                        rusqlite::types::ValueRef::Text(t) => {
                            Val::Text(String::from_utf8_lossy(t).into_owned())
                        }
                        rusqlite::types::ValueRef::Blob(b) => Val::Bytes(b.to_vec()),
                        rusqlite::types::ValueRef::Real(f) => Val::Int(f as i64),
                    })
                    .collect())
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
        }
    }
}

fn pg_val(r: &tokio_postgres::Row, i: usize) -> Val {
    let t = r.columns()[i].type_().clone();
    if t == Type::BYTEA {
        r.get::<_, Option<Vec<u8>>>(i).map_or(Val::Null, Val::Bytes)
    } else if t == Type::INT8 {
        r.get::<_, Option<i64>>(i).map_or(Val::Null, Val::Int)
    } else if t == Type::INT4 {
        r.get::<_, Option<i32>>(i)
            .map_or(Val::Null, |v| Val::Int(i64::from(v)))
    } else {
        r.get::<_, Option<String>>(i).map_or(Val::Null, Val::Text)
    }
}

/// Everything the database holds, as bytes to search: the SQLite file and its WAL, or every
/// row of every table of the schema as text (bytea columns in hex: search both forms).
pub async fn raw_contents(database: Option<&str>, db_path: &Path) -> Vec<Vec<u8>> {
    match database {
        None => {
            let raw = std::fs::read(db_path).unwrap();
            let mut wal = db_path.as_os_str().to_owned();
            wal.push("-wal");
            vec![raw, std::fs::read(wal).unwrap_or_default()]
        }
        Some(url) => {
            let client = connect(url).await;
            let tables = client
                .query(
                    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()",
                    &[],
                )
                .await
                .unwrap();
            let mut out = Vec::new();
            for t in tables {
                let name: String = t.get(0);
                for row in client
                    .query(&format!("SELECT r::text FROM \"{name}\" r"), &[])
                    .await
                    .unwrap()
                {
                    out.push(row.get::<_, String>(0).into_bytes());
                }
            }
            out
        }
    }
}
