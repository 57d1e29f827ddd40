//! The capture write path, `Store::capture`: admit the capture (process open, fields and images
//! valid, not a duplicate), build its manifest, check the disk has room, plan its part file,
//! then write the file durably and index it in the queue (ADR 0013), in that order.

use rusqlite::OptionalExtension;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::files::{self, PartSpan};
use super::part_writer::{self, PartJob};
use super::rows::{QueueRow, insert_keys};
use super::trailer::Trailer;
use super::{PART_FILE_TRAILER_LEN, Store, db};
use crate::crypto::{self, PartSealer, SecretKey, wrap};
use crate::error::{Error, Result};
use crate::model::{CaptureId, Collector, ImageFormats, Images, Manifest, NewCapture, PartKind};
use crate::process::Process;

/// Room for the capture's rows, WAL frames and index pages on top of its part bytes.
const ROW_OVERHEAD_BYTES: u64 = 64 * 1024;

/// Longest collector id: auxiliar registration ids and device ids are short codes; the bound
/// keeps every commit under `protocol::limits::MAX_COMMIT_BYTES`.
pub const MAX_COLLECTOR_ID_LEN: usize = 64;

/// Refuses a collector id the commit could not carry: 1-64 printable ASCII characters.
pub(super) fn check_collector(c: &Collector) -> Result<()> {
    let id = c.id();
    if id.is_empty() || id.len() > MAX_COLLECTOR_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Error::invalid(
            crate::error::Field::Collector,
            "must be 1-64 printable ASCII characters",
        ));
    }
    // v1.1 (protocol 6.5): an auxiliar id is an opaque code, never free text that could hold a
    // name.
    if let Collector::Auxiliar(id) = c
        && !crate::model::is_auxiliar_id(id)
    {
        return Err(Error::invalid(
            crate::error::Field::Collector,
            "an auxiliar id is 3-32 characters of A-Z, 0-9 and '-'",
        ));
    }
    Ok(())
}

/// Drops `value` (which wipes itself) on a short-lived thread, or here if none can start.
fn wipe_off_path<T: Send + 'static>(value: T) {
    // On a spawn error the closure, and the value with it, is dropped right here.
    let _ = std::thread::Builder::new()
        .name("apoyo-wipe".into())
        .spawn(move || drop(value));
}

/// What a capture needs once admitted: its process, its images' formats, its duplicate key.
struct Admitted {
    process: Process,
    formats: ImageFormats,
    dup_key: [u8; 32],
}

/// A capture's part file before it is written: what to seal where, and its trailer.
struct PartFilePlan<'a> {
    jobs: Vec<PartJob<'a>>,
    spans: Vec<PartSpan>,
    trailer: Trailer,
    /// Bytes of the parts, trailer excluded.
    parts_len: u64,
}

/// The five parts laid back to back in [`PartKind::ALL`] order (the manifest last), each with
/// its sealer, and the trailer that records their lengths and the device wrap of `data_key`.
fn plan_part_file<'a>(
    images: &'a Images,
    manifest: &'a [u8],
    id: &CaptureId,
    data_key: &SecretKey,
    device_wrap: &[u8],
) -> Result<PartFilePlan<'a>> {
    let mut jobs = Vec::with_capacity(PartKind::ALL.len());
    let mut spans = Vec::with_capacity(PartKind::ALL.len());
    let mut trailer = Trailer {
        part_lens: [0; 5],
        device_wrap: device_wrap
            .try_into()
            .map_err(|_| Error::Internal("data key wrap length".into()))?,
    };
    let mut offset = 0u64;
    for (i, kind) in PartKind::ALL.into_iter().enumerate() {
        let plain: &[u8] = images.get(kind).unwrap_or(manifest);
        let ct_len = crypto::ciphertext_len(plain.len() as u64);
        jobs.push(PartJob {
            plain,
            sealer: PartSealer::new(data_key, id.as_bytes(), kind)?,
            offset,
        });
        spans.push((kind, offset, ct_len));
        trailer.part_lens[i] = ct_len;
        offset += ct_len;
    }
    Ok(PartFilePlan {
        jobs,
        spans,
        trailer,
        parts_len: offset,
    })
}

fn new_manifest(
    c: &NewCapture,
    id: CaptureId,
    admitted: &Admitted,
    collector: &Collector,
    now: OffsetDateTime,
) -> Manifest {
    Manifest {
        v: Manifest::VERSION,
        capture_id: id,
        process_id: admitted.process.id.clone(),
        collector: collector.clone(),
        model: c.model.clone(),
        fields: c.fields.clone(),
        location: c.location,
        captured_at: now,
        engine_version: env!("CARGO_PKG_VERSION").to_string(),
        formats: admitted.formats,
    }
}

impl Store {
    /// Validates, encrypts and durably stores a capture. When this returns `Ok`, the capture
    /// is on disk (its part file, trailer included, and the folder entry fsync'd; then the
    /// queue rows committed, which a power loss may roll back but the next open rebuilds from
    /// the file: ADR 0013) and will survive a kill or a power loss.
    pub fn capture(&mut self, mut c: NewCapture) -> Result<CaptureId> {
        let result = self.capture_from(&mut c);
        // The caller's copy of the card fields is wiped whatever happened.
        zeroize::Zeroize::zeroize(&mut c.fields);
        result
    }

    fn capture_from(&mut self, c: &mut NewCapture) -> Result<CaptureId> {
        let now = self.opts.clock.now();
        let admitted = self.admit(c, now)?;
        let id = CaptureId::new_v7(now);
        let collector = c
            .collector
            .clone()
            .unwrap_or_else(|| self.collector.clone());
        check_collector(&collector)?;
        let mut manifest = new_manifest(c, id, &admitted, &collector, now);
        let encoded = manifest.to_cbor();
        zeroize::Zeroize::zeroize(&mut manifest.fields);
        let mut manifest_bytes = zeroize::Zeroizing::new(encoded?);
        self.check_room(&c.images, manifest_bytes.len())?;

        let data_key = crypto::random_key()?;
        let device_wrap = wrap::wrap(&self.keys.master, "data-key", id.as_bytes(), &data_key)?;
        let mut plan = plan_part_file(&c.images, &manifest_bytes, &id, &data_key, &device_wrap)?;
        let row = QueueRow {
            id: id.to_string(),
            process_id: &admitted.process.id,
            collector: &collector,
            captured_at: now
                .format(&Rfc3339)
                .map_err(|e| Error::Internal(e.to_string()))?,
            dup_key: admitted.dup_key,
            total_bytes: plan.parts_len + PART_FILE_TRAILER_LEN,
            parts: std::mem::take(&mut plan.spans),
        };
        let committed = self.write_and_index(&id, &plan, &row, &data_key, &device_wrap);
        drop(plan);
        zeroize::Zeroize::zeroize(&mut *manifest_bytes);
        // Wiping the caller's ≈ 2 MB of images (`Images` zeroizes on drop, with volatile
        // writes: ≈ 0.5 ms) is not part of making the capture durable: it runs on a
        // short-lived thread once the capture is committed (inline if none can be started).
        wipe_off_path(std::mem::take(&mut c.images));
        committed?;
        Ok(id)
    }

    /// Checks that the capture's process is open now, that its fields and images are valid, and
    /// that the citizen has no earlier capture in the process (quarantined ones aside).
    fn admit(&self, c: &NewCapture, now: OffsetDateTime) -> Result<Admitted> {
        let process = self.process(&c.process_id)?;
        if !process.is_open_at(now) {
            return Err(Error::ProcessClosed {
                process: process.id,
            });
        }
        let formats = crate::validate::validate(c, &process)?;
        let dup_key = self.keys.dup_key_of(&process.id, &c.fields.clave_elector)?;
        if let Some(earlier) = self
            .conn
            .prepare_cached(
                "SELECT id FROM captures WHERE dup_key = ?1 AND state <> 'quarantined' ORDER BY id LIMIT 1",
            )?
            .query_row([&dup_key[..]], |r| r.get::<_, String>(0))
            .optional()?
        {
            return Err(Error::Duplicate { process: process.id, earlier });
        }
        Ok(Admitted {
            process,
            formats,
            dup_key,
        })
    }

    /// Backpressure: refuses rather than fill the phone; never evicts unsent data.
    fn check_room(&self, images: &Images, manifest_len: usize) -> Result<()> {
        let part_bytes: u64 = PART_FILE_TRAILER_LEN
            + PartKind::ALL
                .iter()
                .map(|k| {
                    crypto::ciphertext_len(images.get(*k).map_or(manifest_len, <[u8]>::len) as u64)
                })
                .sum::<u64>();
        let needed = part_bytes
            .saturating_add(ROW_OVERHEAD_BYTES)
            .saturating_add(self.opts.disk_reserve_bytes);
        let available = fs4::available_space(&self.dir)?;
        if available < needed {
            return Err(Error::StorageFull { available, needed });
        }
        Ok(())
    }

    /// Writes the part file durably, then commits the rows that index it. The part file, its
    /// trailer included, is the durable record of the capture (ADR 0013): the transaction that
    /// indexes it commits after the file and its folder entry are durable, and without a flush
    /// of its own. On an error no part file is left behind.
    fn write_and_index(
        &mut self,
        id: &CaptureId,
        plan: &PartFilePlan<'_>,
        row: &QueueRow<'_>,
        data_key: &SecretKey,
        device_wrap: &[u8],
    ) -> Result<()> {
        let path = files::part_file(&self.dir, id);
        let (keys, endpoint_public) = (&self.keys, self.endpoint_public);
        db::with_unflushed_commit(&mut self.conn, |conn| {
            // The work around the file is placed where a core is idle (see
            // `part_writer::write_parts_durably`): INE's seal of the data key (HPKE, X25519,
            // ≈ 0.2 ms) on the sealing helper while the file is flushed; the rows in the
            // transaction before the flush.
            part_writer::write_parts_durably(
                &path,
                &plan.jobs,
                &plan.trailer.encode(),
                || {
                    crypto::wrap::seal_to_endpoint(
                        &endpoint_public,
                        &keys.identity,
                        id.as_bytes(),
                        data_key,
                    )
                },
                || {
                    let tx = conn.transaction()?;
                    row.insert(&tx)?;
                    Ok(tx)
                },
                |endpoint_seal, tx| {
                    insert_keys(
                        &tx,
                        &row.id,
                        device_wrap,
                        &endpoint_seal,
                        &endpoint_public.key_id(),
                    )?;
                    Ok(tx)
                },
            )?
            .commit()
            .map_err(|e| {
                // Never reported as captured: its file must not linger. (On an error before
                // this point `write_parts_durably` has already removed it.)
                let _ = super::part_fs::remove_file(&path);
                Error::from(e)
            })
        })
    }
}
