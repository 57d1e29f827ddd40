//! The capture model: what the app hands the engine when a citizen gives a support.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Field, Result};

/// A capture's identifier: a UUIDv7 made on the device (time-ordered, so ids sort by capture).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CaptureId(pub uuid::Uuid);

impl CaptureId {
    /// A new UUIDv7 for a capture taken at `at`.
    pub fn new_v7(at: OffsetDateTime) -> Self {
        let nanos = at.unix_timestamp_nanos().max(0) as u128;
        let secs = (nanos / 1_000_000_000) as u64;
        let sub = (nanos % 1_000_000_000) as u32;
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, secs, sub);
        CaptureId(uuid::Uuid::new_v7(ts))
    }

    /// The 16 raw bytes (bound into every ciphertext of the capture).
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl std::fmt::Display for CaptureId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl std::str::FromStr for CaptureId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        uuid::Uuid::parse_str(s)
            .map(CaptureId)
            .map_err(|_| Error::Decode("capture id is not a UUID".into()))
    }
}

/// The parts of a capture, each encrypted separately. The byte is bound into the ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartKind {
    Front,
    Back,
    Selfie,
    Signature,
    Manifest,
}

impl PartKind {
    /// Every part, in storage and upload order.
    pub const ALL: [PartKind; 5] = [
        PartKind::Front,
        PartKind::Back,
        PartKind::Selfie,
        PartKind::Signature,
        PartKind::Manifest,
    ];

    /// The byte bound into each chunk's associated data.
    pub fn code(self) -> u8 {
        match self {
            PartKind::Front => 1,
            PartKind::Back => 2,
            PartKind::Selfie => 3,
            PartKind::Signature => 4,
            PartKind::Manifest => 5,
        }
    }

    /// The lowercase name used in the store, the protocol and file names.
    pub fn name(self) -> &'static str {
        match self {
            PartKind::Front => "front",
            PartKind::Back => "back",
            PartKind::Selfie => "selfie",
            PartKind::Signature => "signature",
            PartKind::Manifest => "manifest",
        }
    }

    /// Parses a name produced by [`PartKind::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        PartKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// A credential (voter card) model: an open set (C, D, E, F, G, H today; a new model is due
/// from 2026), so it is a validated code rather than a closed enum.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CredentialModel(String);

impl CredentialModel {
    /// Parses a model code: one capital letter, optionally followed by up to three capitals or
    /// digits (room for a future "I" or "2026A" style code).
    pub fn parse(s: &str) -> Result<Self> {
        let ok = (1..=4).contains(&s.len())
            && s.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if ok {
            Ok(CredentialModel(s.to_owned()))
        } else {
            Err(Error::invalid(Field::Model, "not a credential model code"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CredentialModel {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        CredentialModel::parse(&s)
    }
}

impl From<CredentialModel> for String {
    fn from(m: CredentialModel) -> String {
        m.0
    }
}

/// The fields read from the voter card. Only the clave de elector is required. Personal data:
/// `Debug` prints only which fields are present; the store wipes its copies after use
/// (`Zeroize`: no wipe-on-drop, so `CardFields { clave_elector, ..Default::default() }` works).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, zeroize::Zeroize)]
pub struct CardFields {
    pub clave_elector: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entidad: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccion: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numero_emision: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vigencia: Option<u16>,
}

/// Where the capture was taken (from the phone's high-accuracy location). Personal data:
/// `Debug` prints only the accuracy.
#[derive(Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
    /// Accuracy radius in metres.
    pub accuracy_m: f64,
}

/// Who captured the support.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Collector {
    /// The citizen alone on their own phone (the "Mi Apoyo" service); the id is the device's.
    MiApoyo(String),
    /// An auxiliar registered by the promoter; the id is the auxiliar's registration id.
    Auxiliar(String),
}

impl Collector {
    /// The opaque id (a device or auxiliar registration id, never a name).
    pub fn id(&self) -> &str {
        match self {
            Collector::MiApoyo(id) | Collector::Auxiliar(id) => id,
        }
    }
}

/// Whether `id` has the form of an auxiliar id (protocol v1.1, §6.5): `^[A-Z0-9-]{3,32}$`, an
/// opaque registration code. No lowercase, spaces or accents, so it cannot carry a name.
pub fn is_auxiliar_id(id: &str) -> bool {
    (3..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
}

/// The images of a capture, as the camera produced them (JPEG or PNG). Personal data: the
/// bytes are wiped when the value is dropped (every clone too).
#[derive(Clone, Default, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct Images {
    pub front: Vec<u8>,
    pub back: Vec<u8>,
    pub selfie: Vec<u8>,
    pub signature: Vec<u8>,
}

impl std::fmt::Debug for Images {
    // Never print image bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Images")
            .field("front_len", &self.front.len())
            .field("back_len", &self.back.len())
            .field("selfie_len", &self.selfie.len())
            .field("signature_len", &self.signature.len())
            .finish()
    }
}

impl Images {
    /// The image for a part kind (`None` for the manifest).
    pub fn get(&self, kind: PartKind) -> Option<&[u8]> {
        match kind {
            PartKind::Front => Some(&self.front),
            PartKind::Back => Some(&self.back),
            PartKind::Selfie => Some(&self.selfie),
            PartKind::Signature => Some(&self.signature),
            PartKind::Manifest => None,
        }
    }
}

/// What the app hands to [`crate::Store::capture`]. `Debug` redacts the personal data.
#[derive(Clone)]
pub struct NewCapture {
    pub process_id: String,
    pub model: CredentialModel,
    pub fields: CardFields,
    pub location: Option<Location>,
    pub images: Images,
    /// Who captured it; `None` uses the device's configured collector.
    pub collector: Option<Collector>,
}

/// The image format, detected from magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Jpeg,
    Png,
}

impl ImageFormat {
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Png => "png",
        }
    }
}

/// The encrypted manifest part: everything about a capture that is not an image. It is the
/// only place the card fields and location exist, and it is never written in the clear.
/// `Debug` redacts the card fields and location.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version.
    pub v: u8,
    pub capture_id: CaptureId,
    pub process_id: String,
    pub collector: Collector,
    pub model: CredentialModel,
    pub fields: CardFields,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Capture time, RFC 3339 UTC (kept apart from the send time for INE's forensics).
    #[serde(with = "time::serde::rfc3339")]
    pub captured_at: OffsetDateTime,
    pub engine_version: String,
    pub formats: ImageFormats,
}

impl std::fmt::Debug for CardFields {
    // Never print card fields: only which optional ones are present.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardFields")
            .field("clave_elector", &"<redacted>")
            .field("entidad", &self.entidad.map(|_| "<redacted>"))
            .field("seccion", &self.seccion.map(|_| "<redacted>"))
            .field("curp", &self.curp.as_ref().map(|_| "<redacted>"))
            .field("ocr", &self.ocr.as_ref().map(|_| "<redacted>"))
            .field("cic", &self.cic.as_ref().map(|_| "<redacted>"))
            .field("numero_emision", &self.numero_emision.map(|_| "<redacted>"))
            .field("vigencia", &self.vigencia.map(|_| "<redacted>"))
            .finish()
    }
}

impl std::fmt::Debug for Location {
    // Never print coordinates.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Location")
            .field("lat", &"<redacted>")
            .field("lon", &"<redacted>")
            .field("accuracy_m", &self.accuracy_m)
            .finish()
    }
}

impl std::fmt::Debug for NewCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCapture")
            .field("process_id", &self.process_id)
            .field("model", &self.model)
            .field("fields", &self.fields)
            .field("location", &self.location)
            .field("images", &self.images)
            .field("collector", &self.collector)
            .finish()
    }
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("v", &self.v)
            .field("capture_id", &self.capture_id)
            .field("process_id", &self.process_id)
            .field("collector", &self.collector)
            .field("model", &self.model)
            .field("fields", &self.fields)
            .field("location", &self.location)
            .field("captured_at", &self.captured_at)
            .field("engine_version", &self.engine_version)
            .field("formats", &self.formats)
            .finish()
    }
}

/// The detected format of each image part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFormats {
    pub front: ImageFormat,
    pub back: ImageFormat,
    pub selfie: ImageFormat,
    pub signature: ImageFormat,
}

impl ImageFormats {
    pub fn get(&self, kind: PartKind) -> Option<ImageFormat> {
        match kind {
            PartKind::Front => Some(self.front),
            PartKind::Back => Some(self.back),
            PartKind::Selfie => Some(self.selfie),
            PartKind::Signature => Some(self.signature),
            PartKind::Manifest => None,
        }
    }
}

impl Manifest {
    pub const VERSION: u8 = 1;

    /// Encodes the manifest as CBOR.
    pub fn to_cbor(&self) -> Result<Vec<u8>> {
        crate::cbor::to_vec(self)
    }

    /// Decodes a manifest, checking its size and version.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self> {
        let m: Manifest =
            crate::cbor::from_slice(bytes, crate::limits::MAX_MANIFEST_BYTES, "manifest")?;
        if m.v != Self::VERSION {
            return Err(Error::Decode(format!(
                "unsupported manifest version {}",
                m.v
            )));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Images are personal data: dropping them (or any clone) wipes them. The bound fails to
    /// compile if `Images` loses `ZeroizeOnDrop`; the wipe must cover every image.
    #[test]
    fn images_are_wiped_on_drop() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wiped_on_drop::<Images>();
        let mut images = Images {
            front: vec![1; 10],
            back: vec![2; 10],
            selfie: vec![3; 10],
            signature: vec![4; 10],
        };
        zeroize::Zeroize::zeroize(&mut images);
        for kind in PartKind::ALL {
            if let Some(bytes) = images.get(kind) {
                assert!(bytes.is_empty(), "{} was not wiped", kind.name());
            }
        }
    }
}
