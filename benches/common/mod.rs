//! The measurement harness shared by the benches: configuration from the environment and the
//! statistics (medians, quantiles, a paired bootstrap interval of a ratio of medians).
#![allow(dead_code)]

pub struct Config {
    pub quick: bool,
    pub warmup: usize,
    pub rounds: usize,
    pub enforce: bool,
}

pub fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

pub fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
}

impl Config {
    /// `defaults` are the (warm-up, rounds) of a full run.
    pub fn from_env(defaults: (usize, usize)) -> Config {
        // `cargo bench` passes `--bench` to a harness = false target; `cargo test --benches`
        // does not: that is a smoke run.
        let bench_mode = std::env::args().any(|a| a == "--bench");
        let quick = env_flag("APOYO_BENCH_QUICK") || !bench_mode;
        let (warmup, rounds) = if quick { (0, 2) } else { defaults };
        Config {
            quick,
            warmup: env_usize("APOYO_BENCH_WARMUP").unwrap_or(warmup),
            rounds: env_usize("APOYO_BENCH_ROUNDS").unwrap_or(rounds),
            enforce: env_flag("APOYO_BENCH_ENFORCE"),
        }
    }
}

// ---- statistics ----------------------------------------------------------------------------

pub fn median(xs: &[f64]) -> f64 {
    quantile(xs, 0.5)
}

/// Linear-interpolated quantile.
pub fn quantile(xs: &[f64], q: f64) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Percentile-bootstrap 95 % interval of `median(a) / median(b)`, resampling paired rounds.
pub fn bootstrap_ratio_ci(a: &[f64], b: &[f64]) -> (f64, f64) {
    let n = a.len().min(b.len());
    if n < 5 {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = fastrand::Rng::with_seed(0x41505953);
    let mut ratios = Vec::with_capacity(2000);
    let (mut ra, mut rb) = (vec![0.0; n], vec![0.0; n]);
    for _ in 0..2000 {
        for i in 0..n {
            let j = rng.usize(..n);
            ra[i] = a[j];
            rb[i] = b[j];
        }
        ratios.push(median(&ra) / median(&rb));
    }
    (quantile(&ratios, 0.025), quantile(&ratios, 0.975))
}

/// "95% CI lo-hi", or "n/a" when there are too few rounds for a bootstrap.
pub fn fmt_ci((lo, hi): (f64, f64), decimals: usize) -> String {
    if lo.is_nan() || hi.is_nan() {
        "95% CI n/a (too few rounds)".to_string()
    } else {
        format!("95% CI {lo:.decimals$}-{hi:.decimals$}")
    }
}
