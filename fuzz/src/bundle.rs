//! Synthetic captures: tiny images (valid by their magic bytes, no person's data), card fields
//! for citizen *i*, and a capture sealed by hand for a bare device identity (what a device
//! would upload and commit).

use apoyo_sync::testkit::crypto::{self, DeviceIdentity, PartSealer};
use apoyo_sync::wire::Manifest;
use apoyo_sync::wire::{CommitPart, CommitRequest};
use apoyo_sync::wire::{ImageFormat, ImageFormats};
use apoyo_sync::{
    CaptureId, CardFields, Collector, CredentialModel, EndpointPublicKey, Images, NewCapture,
    PartKind,
};
use time::OffsetDateTime;

/// The processes of `examples/processes.json`.
pub const PROCESSES: &str = include_str!("../../examples/processes.json");
pub const REVOCACION: &str = "revocacion-2022";
pub const CONSULTA: &str = "consulta-cdmx-demo";

/// A JPEG-looking image of `n` bytes (≥ 4) whose content depends on `salt`.
pub fn jpeg(n: usize, salt: u8) -> Vec<u8> {
    let mut v = vec![0xff, 0xd8, 0xff, 0xe0];
    v.extend((0..n.saturating_sub(4)).map(|i| (i as u8).wrapping_mul(31) ^ salt));
    v
}

/// A PNG-looking image of `n` bytes (≥ 8).
pub fn png(n: usize, salt: u8) -> Vec<u8> {
    let mut v = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    v.extend((0..n.saturating_sub(8)).map(|i| (i as u8).wrapping_mul(17) ^ salt));
    v
}

pub fn images(salt: u8) -> Images {
    Images {
        front: jpeg(300, salt),
        back: jpeg(200, salt ^ 1),
        selfie: jpeg(150, salt ^ 2),
        signature: png(64, salt ^ 3),
    }
}

/// A syntactically valid clave de elector, distinct per `i` (birth date 1990-01-01 + i % 28).
pub fn clave(i: usize) -> String {
    let l = |n: usize| char::from(b'A' + (n % 26) as u8);
    format!(
        "{}{}{}XYZ9001{:02}{:02}H{:03}",
        l(i / 676),
        l(i / 26),
        l(i),
        1 + i % 28,
        9,
        i % 1000
    )
}

/// Card fields of citizen `i` (entidad 9, in scope of both example processes).
pub fn fields(i: usize) -> CardFields {
    CardFields {
        clave_elector: clave(i),
        entidad: Some(9),
        ..Default::default()
    }
}

/// What the app hands the store for citizen `i` in `process`.
pub fn new_capture(process: &str, citizen: usize) -> NewCapture {
    NewCapture {
        process_id: process.into(),
        model: CredentialModel::parse("G").expect("model G"),
        fields: fields(citizen),
        location: None,
        images: images(citizen as u8),
        collector: None,
    }
}

/// A capture as a device sends it: the five part ciphertexts and the sealed data key.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub id: CaptureId,
    pub process_id: String,
    pub citizen: usize,
    pub captured_at: OffsetDateTime,
    pub collector: Collector,
    pub sealed_key: Vec<u8>,
    /// The key id of the seal key `sealed_key` is sealed to (v1.1 commits name it).
    pub seal_key_id: String,
    pub parts: Vec<(PartKind, Vec<u8>)>,
}

impl Bundle {
    /// Citizen `citizen`'s support for `process`, sealed by `device` for `endpoint`.
    pub fn seal(
        device: &DeviceIdentity,
        endpoint: &EndpointPublicKey,
        process: &str,
        citizen: usize,
        at: OffsetDateTime,
    ) -> Bundle {
        let id = CaptureId::new_v7(at);
        let collector = Collector::MiApoyo(device.device_id());
        let manifest = Manifest {
            v: Manifest::VERSION,
            capture_id: id,
            process_id: process.into(),
            collector: collector.clone(),
            model: CredentialModel::parse("G").expect("model G"),
            fields: fields(citizen),
            location: None,
            captured_at: at,
            engine_version: "fuzz".into(),
            formats: ImageFormats {
                front: ImageFormat::Jpeg,
                back: ImageFormat::Jpeg,
                selfie: ImageFormat::Jpeg,
                signature: ImageFormat::Png,
            },
        };
        let dk = crypto::random_key().expect("a data key");
        let imgs = images(citizen as u8);
        let parts = PartKind::ALL
            .into_iter()
            .map(|kind| {
                let plain = match imgs.get(kind) {
                    Some(i) => i.to_vec(),
                    None => manifest.to_cbor().expect("manifest CBOR"),
                };
                let mut ct = Vec::new();
                PartSealer::new(&dk, id.as_bytes(), kind)
                    .and_then(|mut s| s.seal_to(&plain, &mut ct))
                    .expect("sealing");
                (kind, ct)
            })
            .collect();
        let sealed_key = crypto::wrap::seal_to_endpoint(endpoint, device, id.as_bytes(), &dk)
            .expect("HPKE seal");
        Bundle {
            id,
            process_id: process.into(),
            citizen,
            captured_at: at,
            collector,
            sealed_key,
            seal_key_id: crypto::anchor::key_id(&endpoint.0),
            parts,
        }
    }

    pub fn part(&self, kind: PartKind) -> &[u8] {
        &self.parts[kind_index(kind)].1
    }

    /// The commit naming `uploads` (one path per part, in `PartKind::ALL` order), sent at the
    /// capture time.
    pub fn commit(&self, uploads: &[String]) -> CommitRequest {
        CommitRequest {
            v: 1,
            capture_id: self.id,
            process_id: self.process_id.clone(),
            captured_at: self.captured_at,
            collector: self.collector.clone(),
            sealed_key: self.sealed_key.clone(),
            sent_at: self.captured_at,
            seal_key_id: self.seal_key_id.clone(),
            parts: self
                .parts
                .iter()
                .zip(uploads)
                .map(|((kind, ct), up)| CommitPart {
                    kind: *kind,
                    upload: up.clone(),
                    sha256: crypto::sha256(ct),
                    length: ct.len() as u64,
                })
                .collect(),
        }
    }
}

/// The position of a kind in `PartKind::ALL`.
pub fn kind_index(kind: PartKind) -> usize {
    PartKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default()
}
