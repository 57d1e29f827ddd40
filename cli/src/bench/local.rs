//! In-process figures: sealing a 2 MB part vs the bare ChaCha20-Poly1305 AEAD over the same
//! bytes (the commit figure is measured while the sync bench fills its queue, `sync.rs`).
//!
//! Variants run interleaved, one sample each per round, so drift hits both alike; the ratio is
//! `median(bare time) / median(seal time)` (a throughput ratio). `benches/seal.rs` splits the
//! gap further (chunking, associated data).

use std::hint::black_box;
use std::time::Instant;

use apoyo_sync::PartKind;
use apoyo_sync::testkit::crypto::{PartSealer, random_key};
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{AeadInOut, KeyInit, Nonce};

use super::fixture::{fail, random_bytes};
use super::{Ctx, Figures, Goal, median, ratio};
use crate::CliResult;

const SIZE: usize = 2_000_000;

/// `seal_vs_bare_aead`.
pub fn seal(ctx: &Ctx, figs: &mut Figures) -> CliResult {
    let key = random_key()?;
    let id = [7u8; 16];
    let data = random_bytes(SIZE, 1);
    let mut inplace = data.clone();
    let mut buf = Vec::with_capacity(64 * 1024 + 32);
    let aead = ChaCha20Poly1305::new_from_slice(key.as_bytes()).map_err(|_| fail("aead", "key"))?;
    let (rounds, reps) = ctx.pick((40, 5), (3, 1));
    let (mut sealed, mut bare) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for v in 0..2 {
            let which = (v + round) % 2;
            let t = Instant::now();
            for _ in 0..reps {
                if which == 0 {
                    let n = PartSealer::new(&key, &id, PartKind::Selfie)?.seal_with_buffer(
                        black_box(&data),
                        &mut std::io::sink(),
                        &mut buf,
                    )?;
                    black_box(n);
                } else {
                    let nonce = Nonce::<ChaCha20Poly1305>::default();
                    let tag = aead
                        .encrypt_inout_detached(&nonce, b"", black_box(&mut inplace[..]).into())
                        .map_err(|_| fail("aead", "encrypt"))?;
                    black_box(tag);
                }
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            if which == 0 {
                sealed.push(s)
            } else {
                bare.push(s)
            }
        }
    }
    let mb = SIZE as f64 / 1e6;
    let (s, b) = (median(&mut sealed), median(&mut bare));
    figs.put(
        "seal_vs_bare_aead",
        ratio(b, s),
        (ratio(mb, s), ratio(mb, b)),
        "MB/s",
        Goal::AtLeast(0.95),
        "PartSealer (HKDF, STREAM 64 KiB chunks) over 2 MB vs one bare ChaCha20-Poly1305 call",
    );
    Ok(())
}
