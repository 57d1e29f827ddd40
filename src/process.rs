//! Participation processes ("procesos de participación ciudadana") and their rules.
//!
//! A process is defined in JSON, e.g.
//! `{"id": "revocacion-2022", "name": "Revocación de Mandato 2021-2022",
//!   "accepted_models": ["E","F","G","H"], "vigencia_cutoff": "2022-01-01", "scope": "national"}`.
//! Rules that public sources disagree on (which models count, the vigencia cutoff INE extended
//! by decision) are per-process settings, never constants.

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use crate::error::{Error, Result};
use crate::limits::MAX_PROCESS_JSON_BYTES;
use crate::model::CredentialModel;

time::serde::format_description!(date_fmt, Date, "[year]-[month]-[day]");

/// One sección, identified by its entidad (1-32) and number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SeccionRef {
    pub entidad: u8,
    pub seccion: u16,
}

/// Where supports count ("demarcación").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scope {
    /// The string `"national"`.
    National(NationalTag),
    /// `{"entidades": [9, 15]}`.
    Entidades { entidades: Vec<u8> },
    /// `{"secciones": [{"entidad": 9, "seccion": 1234}]}`.
    Secciones { secciones: Vec<SeccionRef> },
}

/// The literal `"national"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NationalTag {
    National,
}

impl Scope {
    pub fn national() -> Self {
        Scope::National(NationalTag::National)
    }
}

/// A participation process definition.
///
/// Decoding ignores keys it does not know (docs/protocol.md §2: a v1 device ignores unknown
/// keys everywhere, a process included); [`Process::parse_json_list`], which reads an
/// operator's configuration, refuses them instead, so a misspelt key is caught.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub id: String,
    pub name: String,
    pub accepted_models: Vec<CredentialModel>,
    /// A card whose vigencia ends (31 December of its year) before this date is refused.
    #[serde(with = "date_fmt")]
    pub vigencia_cutoff: Date,
    pub scope: Scope,
    /// When captures open (RFC 3339); absent means already open.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub opens: Option<OffsetDateTime>,
    /// When captures close (RFC 3339); absent means no end set.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub closes: Option<OffsetDateTime>,
}

impl Process {
    /// Parses one process object or an array of them, validating each.
    pub fn parse_json_list(json: &[u8]) -> Result<Vec<Process>> {
        if json.len() > MAX_PROCESS_JSON_BYTES {
            return Err(Error::TooLarge {
                what: "process definition",
                len: json.len() as u64,
                limit: MAX_PROCESS_JSON_BYTES as u64,
            });
        }
        // Parse as a Value first so that errors name the problem precisely.
        let value: serde_json::Value = serde_json::from_slice(json).map_err(|e| {
            Error::InvalidProcess(format!("not JSON: line {} column {}", e.line(), e.column()))
        })?;
        refuse_unknown_keys(&value)?;
        let list = if value.is_array() {
            serde_json::from_value::<Vec<Process>>(value)
                .map_err(|e| Error::InvalidProcess(e.to_string()))?
        } else {
            vec![
                serde_json::from_value::<Process>(value)
                    .map_err(|e| Error::InvalidProcess(e.to_string()))?,
            ]
        };
        for p in &list {
            p.check()?;
        }
        Ok(list)
    }

    /// Checks the definition's own consistency.
    pub fn check(&self) -> Result<()> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !id_ok {
            return Err(Error::InvalidProcess(
                "id must be 1-64 of a-z, 0-9, '-' or '_'".into(),
            ));
        }
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err(Error::InvalidProcess(format!(
                "process {}: name must be 1-200 bytes",
                self.id
            )));
        }
        if self.accepted_models.is_empty() {
            return Err(Error::InvalidProcess(format!(
                "process {}: accepted_models is empty",
                self.id
            )));
        }
        match &self.scope {
            Scope::National(_) => {}
            Scope::Entidades { entidades } => {
                if entidades.is_empty() || entidades.iter().any(|e| !(1..=32).contains(e)) {
                    return Err(Error::InvalidProcess(format!(
                        "process {}: entidades must be a non-empty list of 1-32",
                        self.id
                    )));
                }
            }
            Scope::Secciones { secciones } => {
                if secciones.is_empty()
                    || secciones
                        .iter()
                        .any(|s| !(1..=32).contains(&s.entidad) || !(1..=9999).contains(&s.seccion))
                {
                    return Err(Error::InvalidProcess(format!(
                        "process {}: secciones must be a non-empty list with entidad 1-32 and sección 1-9999",
                        self.id
                    )));
                }
            }
        }
        if let (Some(o), Some(c)) = (self.opens, self.closes)
            && c <= o
        {
            return Err(Error::InvalidProcess(format!(
                "process {}: closes is not after opens",
                self.id
            )));
        }
        Ok(())
    }

    /// Whether the process takes captures at `now`.
    pub fn is_open_at(&self, now: OffsetDateTime) -> bool {
        self.opens.is_none_or(|o| now >= o) && self.closes.is_none_or(|c| now < c)
    }

    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::Internal(e.to_string()))
    }
}

/// The keys a process definition may have (configuration JSON is read strictly).
const PROCESS_KEYS: [&str; 7] = [
    "id",
    "name",
    "accepted_models",
    "vigencia_cutoff",
    "scope",
    "opens",
    "closes",
];

/// Refuses a key no process has, in one process object or a list of them.
fn refuse_unknown_keys(value: &serde_json::Value) -> Result<()> {
    let objects: Vec<&serde_json::Value> = match value {
        serde_json::Value::Array(list) => list.iter().collect(),
        one => vec![one],
    };
    for object in objects {
        let Some(map) = object.as_object() else {
            continue; // not an object: the typed parse below names the problem
        };
        if let Some(key) = map.keys().find(|k| !PROCESS_KEYS.contains(&k.as_str())) {
            return Err(Error::InvalidProcess(format!(
                "unknown key {key:?} (a process has {})",
                PROCESS_KEYS.join(", ")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_scopes_and_lists() {
        let one = br#"{"id":"revocacion-2022","name":"R","accepted_models":["E","F","G","H"],
            "vigencia_cutoff":"2022-01-01","scope":"national"}"#;
        let p = &Process::parse_json_list(one).unwrap()[0];
        assert_eq!(p.scope, Scope::national());
        let many = br#"[{"id":"a","name":"A","accepted_models":["G"],"vigencia_cutoff":"2022-01-01","scope":{"entidades":[9,15]}},
            {"id":"b","name":"B","accepted_models":["G"],"vigencia_cutoff":"2022-01-01","scope":{"secciones":[{"entidad":9,"seccion":1234}]},
             "opens":"2022-01-01T00:00:00Z","closes":"2022-02-01T00:00:00Z"}]"#;
        let l = Process::parse_json_list(many).unwrap();
        assert_eq!(
            l[0].scope,
            Scope::Entidades {
                entidades: vec![9, 15]
            }
        );
        assert_eq!(
            l[1].scope,
            Scope::Secciones {
                secciones: vec![SeccionRef {
                    entidad: 9,
                    seccion: 1234
                }]
            }
        );
        assert!(l[1].opens.is_some());
    }

    #[test]
    fn rejects_bad_definitions() {
        for bad in [
            &br#"{"id":"","name":"A","accepted_models":["G"],"vigencia_cutoff":"2022-01-01","scope":"national"}"#[..],
            br#"{"id":"a","name":"A","accepted_models":[],"vigencia_cutoff":"2022-01-01","scope":"national"}"#,
            br#"{"id":"a","name":"A","accepted_models":["G"],"vigencia_cutoff":"2022-13-01","scope":"national"}"#,
            br#"{"id":"a","name":"A","accepted_models":["G"],"vigencia_cutoff":"2022-01-01","scope":{"entidades":[33]}}"#,
            br#"{"id":"a","name":"A","accepted_models":["g"],"vigencia_cutoff":"2022-01-01","scope":"national"}"#,
            br#"{"id":"a","name":"A","accepted_models":["G"],"vigencia_cutoff":"2022-01-01","scope":"worldwide"}"#,
            br#"{"id":"a","name":"A","accepted_models":["G"],"vigencia_cutoff":"2022-01-01","scope":{"secciones":[{"entidad":9,"seccion":10000}]}}"#,
            br#"{"id":"a","name":"A","accepted_models":["G"],"vigencia_cutoff":"2022-01-01","scope":"national","close":"2022-02-01T00:00:00Z"}"#,
            br#"[{"id":"a","name":"A","accepted_models":["G"],"vigencia_cutoff":"2022-01-01","scope":"national","min_age":18}]"#,
            b"not json",
        ] {
            assert!(
                matches!(Process::parse_json_list(bad), Err(Error::InvalidProcess(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_shipped_example_parses() {
        let json = include_bytes!("../examples/processes.json");
        let l = Process::parse_json_list(json).unwrap();
        assert!(l.iter().any(|p| p.id == "revocacion-2022"));
    }
}
