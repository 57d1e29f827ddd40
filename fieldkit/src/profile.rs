//! Link profiles: the named bad networks the proxy imitates, each figure with the published
//! source it comes from (docs/field-testing.md has the table), and the overrides a flag sets.

use serde::Serialize;

/// Everything the proxy does to one link. Every figure can be overridden from the command line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    pub name: String,
    /// Where the figures come from (one line, shown in the report and `--help`).
    pub source: String,
    /// Device → endpoint rate in kbit/s (`None`: unlimited).
    pub up_kbps: Option<f64>,
    /// Endpoint → device rate in kbit/s (`None`: unlimited).
    pub down_kbps: Option<f64>,
    /// One-way delay added in each direction, in milliseconds.
    pub delay_ms: u64,
    /// Extra one-way delay drawn uniformly from `0..=jitter_ms` per segment.
    pub jitter_ms: u64,
    /// Segments lost, in percent. Modelled as a retransmission delay, not a drop: a TCP proxy
    /// reads the stream after the kernel has acknowledged, reordered and (after a real loss)
    /// retransmitted it, so it has no packet to drop, and leaving bytes out would corrupt the
    /// stream. A lost segment costs what TCP pays for it: one retransmission timeout (see
    /// `rto_ms`). Real packet drops: `scripts/netns-loss.sh` (nftables in a network namespace).
    pub loss_pct: f64,
    /// Connections refused (reset at once), in percent.
    pub refuse_pct: f64,
    /// Connections cut (reset) at a random byte count, in percent.
    pub cut_pct: f64,
    /// The byte count a cut connection is reset at is drawn from `1..=cut_max_bytes`.
    pub cut_max_bytes: u64,
    /// Reset every connection after this many bytes device → endpoint.
    pub reset_up_after: Option<u64>,
    /// Reset every connection after this many bytes endpoint → device.
    pub reset_down_after: Option<u64>,
    /// Connections that stall (stop forwarding, without a reset) at a random byte count, %.
    pub stall_pct: f64,
    /// Every connection stalls after this many bytes (either direction counted separately).
    pub stall_after: Option<u64>,
    /// Plain-HTTP mode only: connections answered by the proxy itself with 429 or 503, %.
    pub status_pct: f64,
    /// The `Retry-After` (seconds) of those answers.
    pub retry_after_secs: u32,
    /// Flapping: mean seconds the link stays up (0: never flaps).
    pub flap_up_secs: f64,
    /// Flapping: mean seconds the link stays down.
    pub flap_down_secs: f64,
    /// Accept connections and never answer.
    pub blackhole: bool,
    /// A slow server: each answer's first byte waits this long (ms, min and max).
    pub server_delay_ms: (u64, u64),
}

impl Profile {
    /// A profile that changes nothing (the proxy only counts bytes).
    pub fn passthrough(name: &str, source: &str) -> Profile {
        Profile {
            name: name.into(),
            source: source.into(),
            up_kbps: None,
            down_kbps: None,
            delay_ms: 0,
            jitter_ms: 0,
            loss_pct: 0.0,
            refuse_pct: 0.0,
            cut_pct: 0.0,
            cut_max_bytes: 256 * 1024,
            reset_up_after: None,
            reset_down_after: None,
            stall_pct: 0.0,
            stall_after: None,
            status_pct: 0.0,
            retry_after_secs: 1,
            flap_up_secs: 0.0,
            flap_down_secs: 0.0,
            blackhole: false,
            server_delay_ms: (0, 0),
        }
    }

    /// The retransmission timeout a lost segment costs: RFC 6298's 1 s floor is what a phone's
    /// first retransmission waits (Linux uses 200 ms), and at least twice the round trip.
    pub fn rto_ms(&self) -> u64 {
        (4 * (self.delay_ms + self.jitter_ms)).max(200)
    }

    /// The uplink rate used to judge goodput (`None`: unlimited).
    pub fn link_rate_kbps(&self) -> Option<f64> {
        self.up_kbps
    }
}

/// The names `by_name` knows, in the order `--help` lists them.
pub const NAMES: &[&str] = &[
    "good",
    "3g",
    "edge",
    "gprs",
    "2g-rural",
    "lossy",
    "flapping",
    "blackhole",
    "slow-server",
    "none",
];

const EMU: &str =
    "Android emulator -netspeed/-netdelay presets (android_netspeeds/android_netdelays)";

/// A named profile, or `None` for an unknown name.
pub fn by_name(name: &str) -> Option<Profile> {
    let base = |src: &str| Profile::passthrough(name, src);
    let p = match name {
        "good" => Profile {
            up_kbps: Some(58_000.0),
            down_kbps: Some(173_000.0),
            ..base(&format!("{EMU}: lte 58000/173000 kbit/s, netdelay none"))
        },
        "3g" => Profile {
            up_kbps: Some(400.0),
            down_kbps: Some(400.0),
            delay_ms: 1000,
            ..base(
                "Chrome DevTools 'Slow 3G': 500 kbit/s x 0.8 each way, 400 ms x 5 = 2000 ms request latency (1000 ms each way)",
            )
        },
        "edge" => Profile {
            up_kbps: Some(118.4),
            down_kbps: Some(236.8),
            delay_ms: 80,
            jitter_ms: 320,
            ..base(&format!(
                "{EMU}: edge up 118.4 / down 236.8 kbit/s, delay 80-400 ms"
            ))
        },
        "gprs" => Profile {
            up_kbps: Some(40.0),
            down_kbps: Some(80.0),
            delay_ms: 150,
            jitter_ms: 400,
            ..base(&format!(
                "{EMU}: gprs up 40 / down 80 kbit/s, delay 150-550 ms"
            ))
        },
        "2g-rural" => Profile {
            up_kbps: Some(18.0),
            down_kbps: Some(20.0),
            delay_ms: 650,
            loss_pct: 2.0,
            ..base(
                "Facebook ATC '2G - Developing Rural': down 20 / up 18 kbit/s, 650 ms delay, 2 % loss",
            )
        },
        "lossy" => Profile {
            up_kbps: Some(200.0),
            down_kbps: Some(240.0),
            delay_ms: 400,
            loss_pct: 1.0,
            cut_pct: 50.0,
            cut_max_bytes: 64 * 1024,
            ..base(
                "Facebook ATC 'Edge - Lossy' (down 240 / up 200 kbit/s, 400 ms, 1 % loss) + ours: half the connections cut at a random byte count up to 64 KiB",
            )
        },
        "flapping" => Profile {
            up_kbps: Some(118.4),
            down_kbps: Some(236.8),
            delay_ms: 80,
            jitter_ms: 320,
            flap_up_secs: 20.0,
            flap_down_secs: 5.0,
            ..base(&format!(
                "{EMU} edge figures + ours: up ~20 s, down ~5 s (each period drawn 0.5x-1.5x)"
            ))
        },
        "blackhole" => Profile {
            blackhole: true,
            ..base("ours: every connection accepted, nothing forwarded, nothing answered")
        },
        "slow-server" => Profile {
            up_kbps: Some(58_000.0),
            down_kbps: Some(173_000.0),
            server_delay_ms: (2000, 6000),
            ..base(&format!(
                "{EMU} lte figures + ours: each answer's first byte waits 2-6 s"
            ))
        },
        "none" => base(
            "no shaping: the proxy only counts bytes (use with kernel shaping, scripts/netns-loss.sh)",
        ),
        _ => return None,
    };
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_is_a_profile_with_a_source() {
        for n in NAMES {
            let p = by_name(n).expect("listed profile");
            assert_eq!(p.name, *n);
            assert!(!p.source.is_empty());
        }
        assert!(by_name("5g").is_none());
    }

    #[test]
    fn figures_match_their_sources() {
        let e = by_name("edge").expect("edge");
        assert_eq!((e.up_kbps, e.down_kbps), (Some(118.4), Some(236.8)));
        let g = by_name("gprs").expect("gprs");
        assert_eq!((g.up_kbps, g.down_kbps), (Some(40.0), Some(80.0)));
        let r = by_name("2g-rural").expect("2g-rural");
        assert_eq!(
            (r.up_kbps, r.down_kbps, r.delay_ms),
            (Some(18.0), Some(20.0), 650)
        );
        assert_eq!(r.loss_pct, 2.0);
        let s = by_name("3g").expect("3g");
        assert_eq!(
            (s.up_kbps, s.down_kbps, s.delay_ms),
            (Some(400.0), Some(400.0), 1000)
        );
        let l = by_name("lossy").expect("lossy");
        assert_eq!(
            (l.up_kbps, l.down_kbps, l.delay_ms, l.loss_pct),
            (Some(200.0), Some(240.0), 400, 1.0)
        );
    }
}
