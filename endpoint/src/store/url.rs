//! A PostgreSQL connection URL that never shows its password: `Debug` and `Display` print
//! `postgres://user@host:port/db`, and a URL that does not parse is refused without quoting it.

use std::fmt;
use std::str::FromStr;

use tokio_postgres::config::Host;

use crate::error::EndpointError;

/// `postgres://user:password@host:port/db?options` (or `postgresql://`).
#[derive(Clone)]
pub struct DatabaseUrl {
    config: tokio_postgres::Config,
    shown: String,
}

impl DatabaseUrl {
    /// Whether `s` names a PostgreSQL database (rather than a SQLite file path).
    pub fn is_postgres(s: &str) -> bool {
        let lower = s.get(..13).unwrap_or(s).to_ascii_lowercase();
        lower.starts_with("postgres://") || lower.starts_with("postgresql://")
    }

    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

impl FromStr for DatabaseUrl {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let refuse = || {
            EndpointError::Config(
                "the database URL is not a PostgreSQL URL (postgres://user:password@host:port/db)"
                    .into(),
            )
        };
        if !Self::is_postgres(s) {
            return Err(refuse());
        }
        let config = tokio_postgres::Config::from_str(s).map_err(|_| refuse())?;
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
        let shown = format!(
            "postgres://{}@{}:{}/{}",
            config.get_user().unwrap_or(""),
            hosts.join(","),
            ports.join(","),
            config.get_dbname().unwrap_or("")
        );
        Ok(DatabaseUrl { config, shown })
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl").field(&self.shown).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_shown() {
        let url: DatabaseUrl = "postgres://apoyo:s3cr3t-pw@127.0.0.1:5433/apoyo"
            .parse()
            .unwrap();
        for shown in [url.to_string(), format!("{url:?}")] {
            assert!(!shown.contains("s3cr3t-pw"), "{shown}");
            assert!(shown.contains("apoyo@127.0.0.1:5433/apoyo"), "{shown}");
        }
        assert_eq!(url.config().get_password(), Some(&b"s3cr3t-pw"[..]));
        // A URL that does not parse is refused without being quoted.
        let bad = "postgres://apoyo:s3cr3t-pw@127.0.0.1:notaport/apoyo"
            .parse::<DatabaseUrl>()
            .unwrap_err()
            .to_string();
        assert!(!bad.contains("s3cr3t-pw"), "{bad}");
        assert!("/var/lib/endpoint.db".parse::<DatabaseUrl>().is_err());
    }
}
