//! Sealing throughput vs the bare ChaCha20-Poly1305 AEAD over the same bytes. Goal: ≥ 0.9×.
//!
//! Candidate: `PartSealer::new(&key, &id, PartKind::Selfie)?.seal_with_buffer(&data, &mut
//! io::sink(), &mut buf)` — HKDF of the part key, STREAM chunking into 64 KiB chunks, one
//! copy of each chunk into the reused buffer, associated data per chunk, one tag per chunk.
//! Baseline: `ChaCha20Poly1305::encrypt_inout_detached` of the same bytes in place, in one call
//! with one nonce — the raw AEAD throughput, the best any construction on it could do.
//!
//! Also measured, informative only: the bare AEAD over 64 KiB chunks with the same copy into a
//! reused buffer and the tag appended (what STREAM inherently costs, without the crate's
//! bookkeeping), with 0, 40 (the meaningful bytes of `PartSealer`'s associated data) and 64
//! (`PartSealer`'s length: those 40 bytes zero-padded, see `src/crypto/part.rs`) bytes of
//! associated data, so a gap can be split between "chunking + copy", "the associated data" and
//! "the crate's own code".
//! (The AD length matters more than its 3 Poly1305 blocks suggest: poly1305 0.9's AVX2 backend
//! takes its 4-blocks-at-a-time path only while its block cache is empty, and
//! universal-hash 0.6's `update` does not realign, so an AD of 33-48 bytes leaves 3 blocks
//! cached and every following block of the chunk goes block by block through that cache.)
//!
//! Each sample times `reps` back-to-back operations (`reps` calibrated so that a sample lasts
//! ≈ 2 ms, the same for every variant of a size); variants run interleaved, one sample each
//! per round, the order rotated every round; the ratio is
//! `median(baseline time) / median(candidate time)` (= throughput ratio), with a bootstrap
//! 95 % interval over rounds.
//!
//! Modes: `cargo bench --bench seal` runs the full measurement (`APOYO_BENCH_ROUNDS`,
//! `APOYO_BENCH_WARMUP` override the counts). Without cargo bench's `--bench` argument (e.g.
//! `cargo test --benches`) or with `APOYO_BENCH_QUICK=1`, a smoke run of a few rounds checks
//! that everything works; its figures are not meaningful. `APOYO_BENCH_ENFORCE=1` makes a
//! missed goal exit with status 1 (full mode only).

use std::hint::black_box;
use std::time::{Duration, Instant};

use apoyo_sync::PartKind;
use apoyo_sync::testkit::crypto::{PartSealer, SecretKey, ciphertext_len, random_key};
use apoyo_sync::wire::limits::CHUNK_SIZE;
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{AeadInOut, KeyInit, Nonce};

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

const GOAL: f64 = 0.9;
const SIZES: [(usize, &str); 2] = [(2_000_000, "2MB"), (600_000, "600kB")];
const SAMPLE_TARGET: Duration = Duration::from_millis(2);

// ---- configuration and statistics: benches/common/mod.rs -----------------------------------

mod common;
use common::*;

// ---- the variants --------------------------------------------------------------------------

const TAG: usize = 16;

/// The candidate: the crate's part sealer, as `Store::capture` calls it.
fn seal_candidate(
    key: &SecretKey,
    id: &[u8; 16],
    data: &[u8],
    buf: &mut Vec<u8>,
) -> BoxResult<u64> {
    Ok(
        PartSealer::new(key, id, PartKind::Selfie)?.seal_with_buffer(
            black_box(data),
            &mut std::io::sink(),
            buf,
        )?,
    )
}

/// The baseline: one in-place AEAD call over the whole buffer, one nonce.
fn bare_aead(key: &SecretKey, inplace: &mut [u8]) -> BoxResult<()> {
    let aead = ChaCha20Poly1305::new_from_slice(key.as_bytes()).map_err(|_| "key length")?;
    let nonce = Nonce::<ChaCha20Poly1305>::default();
    let tag = aead
        .encrypt_inout_detached(&nonce, b"", black_box(inplace).into())
        .map_err(|_| "aead")?;
    black_box(tag);
    Ok(())
}

/// Informative: the bare AEAD per 64 KiB chunk, copying each chunk into a reused buffer and
/// appending its tag, as STREAM must — without HKDF or the crate's code; `ad_len` bytes of
/// associated data per chunk (0; 40, `PartSealer`'s before padding; 64, `PartSealer`'s).
fn bare_aead_chunked(
    key: &SecretKey,
    data: &[u8],
    buf: &mut Vec<u8>,
    ad_len: usize,
) -> BoxResult<()> {
    let aead = ChaCha20Poly1305::new_from_slice(key.as_bytes()).map_err(|_| "key length")?;
    let ad = [0x5Au8; 64];
    for (i, chunk) in black_box(data).chunks(CHUNK_SIZE).enumerate() {
        let mut nonce = Nonce::<ChaCha20Poly1305>::default();
        nonce[7..11].copy_from_slice(&(i as u32).to_be_bytes());
        buf.clear();
        buf.extend_from_slice(chunk);
        let tag = aead
            .encrypt_inout_detached(&nonce, &ad[..ad_len], buf.as_mut_slice().into())
            .map_err(|_| "aead")?;
        buf.extend_from_slice(&tag);
        black_box(&buf);
    }
    Ok(())
}

const CANDIDATE: usize = 0;
const BARE: usize = 1;
const CHUNKED: usize = 2;
const CHUNKED_AD40: usize = 3;
const CHUNKED_AD64: usize = 4;
const VARIANTS: usize = 5;
const NAMES: [&str; VARIANTS] = [
    "PartSealer::seal_with_buffer",
    "bare AEAD, one call in place",
    "bare AEAD/64 KiB + copy, AD 0 B",
    "bare AEAD/64 KiB + copy, AD 40 B",
    "bare AEAD/64 KiB + copy, AD 64 B",
];

struct SizeResult {
    label: &'static str,
    ratio: f64,
    ci: (f64, f64),
    /// Median of the per-round ratios (a drift-robust cross-check of `ratio`).
    paired: f64,
    /// What a sealer with a 64-byte AD could reach: bare / chunked-with-64-byte-AD.
    ad64: f64,
}

fn measure(cfg: &Config, size: usize, label: &'static str) -> BoxResult<SizeResult> {
    let mut rng = fastrand::Rng::with_seed(size as u64);
    let mut data = vec![0u8; size];
    rng.fill(&mut data);
    let key = random_key()?;
    let id = [7u8; 16];
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK_SIZE + TAG);
    let mut inplace = data.clone();
    let mut chunk_buf: Vec<u8> = Vec::with_capacity(CHUNK_SIZE + TAG);

    // Sanity: the candidate writes exactly the documented ciphertext length.
    let n = seal_candidate(&key, &id, &data, &mut buf)?;
    assert_eq!(n, ciphertext_len(size as u64));

    let mut one = |variant: usize| -> BoxResult<()> {
        match variant {
            CANDIDATE => {
                seal_candidate(&key, &id, &data, &mut buf)?;
            }
            BARE => bare_aead(&key, &mut inplace)?,
            CHUNKED => bare_aead_chunked(&key, &data, &mut chunk_buf, 0)?,
            CHUNKED_AD40 => bare_aead_chunked(&key, &data, &mut chunk_buf, 40)?,
            _ => bare_aead_chunked(&key, &data, &mut chunk_buf, 64)?,
        }
        Ok(())
    };

    // Calibrate the repetitions per sample on the baseline (the fastest variant).
    let reps = if cfg.quick {
        1
    } else {
        for _ in 0..3 {
            one(BARE)?;
        }
        let t = Instant::now();
        for _ in 0..5 {
            one(BARE)?;
        }
        let per = t.elapsed() / 5;
        (SAMPLE_TARGET.as_nanos() / per.as_nanos().max(1)).max(1) as usize
    };

    let mut secs: [Vec<f64>; VARIANTS] = Default::default();
    for round in 0..cfg.warmup + cfg.rounds {
        for k in 0..VARIANTS {
            let variant = (round + k) % VARIANTS;
            let t = Instant::now();
            for _ in 0..reps {
                one(variant)?;
            }
            let d = t.elapsed().as_secs_f64() / reps as f64;
            if round >= cfg.warmup {
                secs[variant].push(d);
            }
        }
    }

    let mbps = |v: usize| size as f64 / median(&secs[v]) / 1e6;
    println!();
    println!(
        "size {label} ({size} B plaintext, {} B ciphertext), {reps} ops per sample, {} samples each:",
        n,
        secs[0].len()
    );
    println!(
        "  {:<32} {:>10} {:>12} {:>10} {:>10}",
        "variant", "MB/s", "median µs", "p25 µs", "p75 µs"
    );
    for (v, name) in NAMES.iter().enumerate() {
        println!(
            "  {name:<32} {:>10.0} {:>12.1} {:>10.1} {:>10.1}",
            mbps(v),
            median(&secs[v]) * 1e6,
            quantile(&secs[v], 0.25) * 1e6,
            quantile(&secs[v], 0.75) * 1e6
        );
    }
    let ratio = median(&secs[BARE]) / median(&secs[CANDIDATE]);
    let ci = bootstrap_ratio_ci(&secs[BARE], &secs[CANDIDATE]);
    let m = |v: usize| median(&secs[v]);
    println!(
        "  split of the candidate's extra time over the bare AEAD: chunking + copy {:+.1}%, a 40-byte AD \
         (vs none) {:+.1}%, a 64-byte AD (vs none) {:+.1}%, the rest of PartSealer (vs AD 64 B, its real AD) {:+.1}%",
        (m(CHUNKED) / m(BARE) - 1.0) * 100.0,
        (m(CHUNKED_AD40) / m(CHUNKED) - 1.0) * 100.0,
        (m(CHUNKED_AD64) / m(CHUNKED) - 1.0) * 100.0,
        (m(CANDIDATE) / m(CHUNKED_AD64) - 1.0) * 100.0
    );
    let paired: Vec<f64> = secs[BARE]
        .iter()
        .zip(&secs[CANDIDATE])
        .map(|(b, c)| b / c)
        .collect();
    let ad64 = m(BARE) / m(CHUNKED_AD64);
    Ok(SizeResult {
        label,
        ratio,
        ci,
        paired: median(&paired),
        ad64,
    })
}

fn main() -> BoxResult<()> {
    let cfg = Config::from_env((10, 201));
    println!(
        "apoyo-sync bench: PartSealer throughput vs bare ChaCha20-Poly1305 over the same bytes"
    );
    println!(
        "mode: {} ({} warm-up rounds, {} measured rounds; variants interleaved, order rotated each round)",
        if cfg.quick {
            "SMOKE (quick; figures not meaningful)"
        } else {
            "full"
        },
        cfg.warmup,
        cfg.rounds
    );
    if !cfg!(debug_assertions) {
        println!("build: optimized");
    } else {
        println!("build: DEBUG (unoptimized; throughput figures are meaningless)");
    }

    let mut results = Vec::new();
    for (size, label) in SIZES {
        results.push(measure(&cfg, size, label)?);
    }

    println!();
    let smoke = if cfg.quick {
        " [smoke run: not meaningful]"
    } else {
        ""
    };
    let mut all_met = true;
    // The headline (2 MB) last, so that it is the final line.
    for r in results.iter().rev() {
        println!(
            "RATIO seal_vs_bare_aead_paired_median_{} = {:.3} (informative: median of per-round ratios)",
            r.label, r.paired
        );
        println!(
            "RATIO chunked_ad64_vs_bare_aead_{} = {:.3} (informative: the ceiling of a sealer whose AD is 64 B)",
            r.label, r.ad64
        );
    }
    for r in results.iter().rev() {
        let met = r.ratio >= GOAL;
        all_met &= met;
        let name = if r.label == "2MB" {
            "seal_vs_bare_aead".to_string()
        } else {
            format!("seal_vs_bare_aead_{}", r.label)
        };
        println!(
            "RATIO {name} = {:.3} (goal >= {GOAL}) {} [{}] => {}{smoke}",
            r.ratio,
            fmt_ci(r.ci, 3),
            r.label,
            if met { "MET" } else { "MISSED" }
        );
    }
    if cfg.enforce && !cfg.quick && !all_met {
        std::process::exit(1);
    }
    Ok(())
}
