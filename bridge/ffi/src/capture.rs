//! A capture as the bridges receive it: the card fields, model, process, location and
//! collector as one JSON object, the four images as byte slices. Shared with the JNI bridge.
//!
//! ```json
//! {"process_id": "revocacion-2022", "model": "G",
//!  "fields": {"clave_elector": "…", "entidad": 9, "seccion": 1234, "vigencia": 2029},
//!  "location": {"lat": 19.43, "lon": -99.13, "accuracy_m": 8.0},
//!  "auxiliar_id": "AUX-0001"}
//! ```
//! `location` and `auxiliar_id` may be left out. A malformed description is refused with its
//! position only: serde's messages may quote the value, which may be personal data.

use apoyo_sync::{CardFields, Collector, CredentialModel, Error, Images, Location, NewCapture};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Description {
    process_id: String,
    model: String,
    fields: CardFields,
    #[serde(default)]
    location: Option<Location>,
    #[serde(default)]
    auxiliar_id: Option<String>,
}

/// Limit on the description (fields only; the images come separately).
pub const APOYO_MAX_DESCRIPTION_BYTES: usize = 16 * 1024;

/// Builds a capture from its JSON description and images.
pub fn new_capture(json: &[u8], images: Images) -> Result<NewCapture, Error> {
    if json.len() > APOYO_MAX_DESCRIPTION_BYTES {
        return Err(Error::TooLarge {
            what: "capture description",
            len: json.len() as u64,
            limit: APOYO_MAX_DESCRIPTION_BYTES as u64,
        });
    }
    let d: Description = serde_json::from_slice(json).map_err(|e| {
        Error::Decode(format!(
            "capture description: {} at line {} column {}",
            match e.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof =>
                    "not JSON",
                _ => "a field is missing, unknown or of the wrong type",
            },
            e.line(),
            e.column()
        ))
    })?;
    Ok(NewCapture {
        process_id: d.process_id,
        model: CredentialModel::parse(&d.model)?,
        fields: d.fields,
        location: d.location,
        images,
        collector: d.auxiliar_id.map(Collector::Auxiliar),
    })
}
