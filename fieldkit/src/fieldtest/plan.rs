//! What each simulated device captures: synthetic citizens (no real person's data), a few of
//! them deliberately captured on two devices, a few invalid captures the device itself refuses,
//! and a few only the endpoint can reject (the device's catalog is wider than the endpoint's),
//! so duplicate and quarantine figures are real. Images are synthetic JPEG/PNG bytes of the
//! requested size.

use apoyo_sync::{CardFields, CredentialModel, Images, NewCapture, Process};
use serde::{Deserialize, Serialize};

/// The process valid captures are made for (from `examples/processes.json`).
pub const PROCESS: &str = "revocacion-2022";
/// A process the device's catalog has and the endpoint does not: `process_unknown`.
pub const UNKNOWN_PROCESS: &str = "fieldtest-unknown";
/// A process whose scope the device believes national and the endpoint limits to entidades
/// 9 and 15: a capture in entidad 20 is `out_of_scope` only at the endpoint.
pub const SCOPED_PROCESS: &str = "consulta-cdmx-demo";
/// The endpoint's catalog (the in-process endpoint serves it; an external one must too).
pub const PROCESSES_JSON: &[u8] = include_bytes!("../../../examples/processes.json");

/// What a planned capture is meant to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A citizen captured once.
    Valid,
    /// A citizen also captured on another device: the endpoint records a duplicate.
    Shared,
    /// Refused by the device's own validation (malformed clave de elector): never stored.
    LocalInvalid,
    /// Accepted by the device, rejected by the endpoint (`process_unknown`).
    UnknownProcess,
    /// Accepted by the device, rejected by the endpoint (`out_of_scope`).
    OutOfScope,
}

/// One planned capture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Planned {
    /// Index in the device's plan (the journal key).
    pub index: usize,
    /// The synthetic citizen (two devices share a citizen number for `Shared`).
    pub citizen: u32,
    pub kind: Kind,
}

/// A device's plan, written beside its store for a device process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePlan {
    pub device: usize,
    pub seed: u64,
    pub capture_bytes: usize,
    pub captures: Vec<Planned>,
}

/// The plans of `devices` devices with `captures` each. Per device: about a tenth of the
/// captures are citizens shared with the next device, one is refused locally and two are
/// rejected only by the endpoint (when there are enough captures for that).
pub fn plans(devices: usize, captures: usize, seed: u64, capture_bytes: usize) -> Vec<DevicePlan> {
    let invalid = if captures >= 6 { 3 } else { 0 };
    // Shared citizens come in pairs of slots: device d's even slot 2k is its own shared citizen
    // k, and device d+1's odd slot 2k+1 captures the same citizen again.
    let shared = if devices >= 2 && captures >= 2 {
        (2 * (captures / 20).max(1)).min((captures - invalid) & !1)
    } else {
        0
    };
    (0..devices)
        .map(|d| {
            let mut list = Vec::with_capacity(captures);
            for i in 0..captures {
                let (citizen, kind) = if i < shared {
                    let owner = if i % 2 == 0 {
                        d
                    } else {
                        (d + devices - 1) % devices
                    };
                    (shared_citizen(owner, i), Kind::Shared)
                } else if i + invalid >= captures {
                    let k = match captures - i {
                        3 => Kind::LocalInvalid,
                        2 => Kind::UnknownProcess,
                        _ => Kind::OutOfScope,
                    };
                    (own_citizen(d, i), k)
                } else {
                    (own_citizen(d, i), Kind::Valid)
                };
                list.push(Planned {
                    index: i,
                    citizen,
                    kind,
                });
            }
            DevicePlan {
                device: d,
                seed,
                capture_bytes,
                captures: list,
            }
        })
        .collect()
}

fn shared_citizen(owner: usize, i: usize) -> u32 {
    1_000_000 + (owner as u32) * 1000 + (i as u32 / 2)
}

fn own_citizen(d: usize, i: usize) -> u32 {
    (d as u32) * 10_000 + i as u32
}

/// A synthetic clave de elector for a citizen number: six letters that encode the number, a
/// real birth date, entidad 09, and a serial (the pattern of DOMAIN.md; nobody's).
pub fn clave(citizen: u32) -> String {
    let mut letters = String::with_capacity(6);
    let mut n = citizen;
    for _ in 0..6 {
        letters.push((b'A' + (n % 26) as u8) as char);
        n /= 26;
    }
    let yy = 50 + citizen % 45;
    let mm = 1 + citizen % 12;
    let dd = 1 + citizen % 28;
    let sex = if citizen.is_multiple_of(2) { 'H' } else { 'M' };
    format!("{letters}{yy:02}{mm:02}{dd:02}09{sex}{:03}", citizen % 1000)
}

/// The device's catalog: the endpoint's, plus a process the endpoint lacks, with the scoped
/// process widened to national.
pub fn device_catalog(endpoint: &[Process]) -> apoyo_sync::Result<Vec<Process>> {
    let mut list: Vec<Process> = endpoint
        .iter()
        .filter(|p| p.id != UNKNOWN_PROCESS)
        .cloned()
        .collect();
    for p in &mut list {
        if p.id == SCOPED_PROCESS {
            p.scope = apoyo_sync::Scope::national();
        }
    }
    let extra = format!(
        r#"{{"id":"{UNKNOWN_PROCESS}","name":"Field test: a process only the device knows","accepted_models":["G","H"],"vigencia_cutoff":"2022-01-01","scope":"national"}}"#
    );
    list.extend(Process::parse_json_list(extra.as_bytes())?);
    Ok(list)
}

/// Synthetic image bytes: a JPEG or PNG signature, then seeded noise, `len` bytes in all.
fn image(png: bool, len: usize, rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut v: Vec<u8> = if png {
        vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]
    } else {
        vec![
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00,
        ]
    };
    let len = len.max(v.len() + 16);
    v.extend((v.len()..len).map(|_| rng.u8(..)));
    v
}

/// The card front a device registers with (synthetic, 4 KiB).
pub fn front_image() -> Vec<u8> {
    image(false, 4096, &mut fastrand::Rng::with_seed(1))
}

/// The capture for one planned entry.
pub fn capture(plan: &DevicePlan, p: &Planned) -> apoyo_sync::Result<NewCapture> {
    let mut rng = fastrand::Rng::with_seed(crate::schedule::derive(
        plan.seed,
        plan.device as u64,
        p.index as u64,
        9,
    ));
    let b = plan.capture_bytes.max(4096);
    let mut clave = clave(p.citizen);
    let (process, entidad) = match p.kind {
        Kind::Valid | Kind::Shared => (PROCESS, 9),
        Kind::LocalInvalid => {
            // A clave de elector with an impossible birth date (month 13).
            clave.replace_range(8..10, "13");
            (PROCESS, 9)
        }
        Kind::UnknownProcess => (UNKNOWN_PROCESS, 9),
        Kind::OutOfScope => (SCOPED_PROCESS, 20),
    };
    Ok(NewCapture {
        process_id: process.into(),
        model: CredentialModel::parse("G")?,
        fields: CardFields {
            clave_elector: clave,
            entidad: Some(entidad),
            seccion: Some(100 + (p.citizen % 900) as u16),
            vigencia: Some(2033),
            ..Default::default()
        },
        location: None,
        images: Images {
            front: image(false, b * 3 / 10, &mut rng),
            back: image(false, b * 3 / 10, &mut rng),
            selfie: image(false, b * 3 / 10, &mut rng),
            signature: image(true, b / 10, &mut rng),
        },
        collector: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_claves_are_valid_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for c in [0, 1, 25, 26, 9999, 10_000, 1_000_000, 1_002_003] {
            let k = clave(c);
            apoyo_sync::wire::validate::validate_clave(&k).expect(&k);
            assert!(seen.insert(k));
        }
    }

    #[test]
    fn plans_share_citizens_between_devices_and_hold_invalid_ones() {
        let p = plans(3, 10, 1, 8192);
        let shared: Vec<u32> = p
            .iter()
            .flat_map(|d| d.captures.iter())
            .filter(|c| c.kind == Kind::Shared)
            .map(|c| c.citizen)
            .collect();
        // Each shared citizen appears on exactly two devices.
        for c in &shared {
            assert_eq!(shared.iter().filter(|x| *x == c).count(), 2);
        }
        for d in &p {
            let kinds: Vec<Kind> = d.captures.iter().map(|c| c.kind).collect();
            assert!(kinds.contains(&Kind::LocalInvalid));
            assert!(kinds.contains(&Kind::UnknownProcess));
            assert!(kinds.contains(&Kind::OutOfScope));
        }
    }
}
