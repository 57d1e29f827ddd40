//! What bounds registration ("Registro ciudadano", which needs no login and stores a ≈2 MiB card
//! front): the budgets per window (per email address and device key, per source address and
//! IPv6 /48, for the whole endpoint), how long a registration that was never activated is kept (and how often
//! such registrations are swept), and the
//! forwarded header a trusted TLS terminator names the client's address in. Every count lives
//! in the database, so replicas on one PostgreSQL database share them.

use std::net::IpAddr;
use std::time::Duration;

use axum::http::HeaderName;
use ipnet::IpNet;

use crate::error::EndpointError;

/// The window every registration budget counts over: one hour.
pub const DEFAULT_REGISTRATION_WINDOW: Duration = Duration::from_secs(60 * 60);
/// Codes mailed per email address, and per device key, per window: enough for a citizen who
/// lost the email or mistyped the address a few times, too few to flood an inbox.
pub const DEFAULT_REGISTRATIONS_PER_ADDRESS: u32 = 5;
/// Registrations per source address (IPv4 address, IPv6 /64) per window. Generous: a mobile
/// carrier's NAT puts many citizens behind one address.
pub const DEFAULT_REGISTRATIONS_PER_SOURCE: u32 = 100;
/// Registrations per IPv6 /48 (a site: what a provider may give one customer, 65 536 /64s) per
/// window, beside the per-/64 budget, so a customer with many /64s does not get a budget for
/// each. An IPv4 source has no such tier.
pub const DEFAULT_REGISTRATIONS_PER_IPV6_SITE: u32 = 1_000;
/// Registrations per window for the whole endpoint (every replica together): with the default
/// TTL it bounds what unactivated registrations can hold to about 24 × 10 000 × 2 MiB.
pub const DEFAULT_REGISTRATIONS_GLOBAL: u32 = 10_000;
/// How long a registration that was never activated is kept (counted from its recording, and
/// never while one of its codes is still valid): the code's own 24 hours.
pub const DEFAULT_UNACTIVATED_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How often the endpoint sweeps unactivated registrations past their TTL, besides the sweep
/// on each registration (so they go even when no one registers).
pub const DEFAULT_REGISTRATION_SWEEP_EVERY: Duration = Duration::from_secs(10 * 60);
/// The longest window or TTL accepted (longer only keeps data for nothing).
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// The registration limits (`EndpointConfig::registration`).
#[derive(Debug, Clone)]
pub struct RegistrationLimits {
    /// The window the budgets count over.
    pub window: Duration,
    /// Codes mailed per email address (normalised) and per device key, per window.
    pub per_address: u32,
    /// Registrations per source address per window.
    pub per_source: u32,
    /// Registrations per IPv6 /48 per window (all its /64 sources together).
    pub per_ipv6_site: u32,
    /// Registrations per window, all sources together.
    pub global: u32,
    /// How long an unactivated registration (and its card front) is kept.
    pub unactivated_ttl: Duration,
    /// How often unactivated registrations past their TTL are swept without a registration.
    pub sweep_every: Duration,
    /// Where the client's address is read behind a TLS terminator; `None`: the peer address.
    pub forwarded: Option<TrustedForwarding>,
}

impl Default for RegistrationLimits {
    fn default() -> Self {
        RegistrationLimits {
            window: DEFAULT_REGISTRATION_WINDOW,
            per_address: DEFAULT_REGISTRATIONS_PER_ADDRESS,
            per_source: DEFAULT_REGISTRATIONS_PER_SOURCE,
            per_ipv6_site: DEFAULT_REGISTRATIONS_PER_IPV6_SITE,
            global: DEFAULT_REGISTRATIONS_GLOBAL,
            unactivated_ttl: DEFAULT_UNACTIVATED_TTL,
            sweep_every: DEFAULT_REGISTRATION_SWEEP_EVERY,
            forwarded: None,
        }
    }
}

impl RegistrationLimits {
    /// Refuses a zero budget, and a window or TTL of zero or over a year.
    pub fn check(&self) -> Result<(), EndpointError> {
        let bad = |d: Duration| d.is_zero() || d > MAX_DURATION;
        if bad(self.window) || bad(self.unactivated_ttl) || bad(self.sweep_every) {
            return Err(EndpointError::Config(
                "the registration window, the unactivated-registration TTL and the sweep interval must be between one second and 366 days".into(),
            ));
        }
        if [
            self.per_address,
            self.per_source,
            self.per_ipv6_site,
            self.global,
        ]
        .contains(&0)
        {
            return Err(EndpointError::Config(
                "every registration budget must allow at least one registration".into(),
            ));
        }
        Ok(())
    }

    /// The window in seconds.
    pub(crate) fn window_secs(&self) -> i64 {
        self.window.as_secs() as i64
    }

    /// The unactivated-registration TTL in seconds.
    pub(crate) fn ttl_secs(&self) -> i64 {
        self.unactivated_ttl.as_secs() as i64
    }
}

/// A forwarded header set by trusted proxies (a TLS terminator, a load balancer), read only on
/// a connection from one of `proxies` (addresses or CIDR ranges). The header is walked from the
/// right, skipping the addresses of trusted proxies: the first untrusted one is the client's
/// (as nginx's `real_ip_recursive`). A client connecting directly cannot choose its source by
/// sending the header, and a client behind the proxies cannot by prepending to it.
#[derive(Debug, Clone)]
pub struct TrustedForwarding {
    header: HeaderName,
    proxies: Vec<IpNet>,
}

impl TrustedForwarding {
    /// `header` (e.g. `x-forwarded-for`, or `forwarded` for RFC 7239's `for=`), trusted on
    /// connections from `proxies` (at least one).
    pub fn new(header: &str, proxies: Vec<IpAddr>) -> Result<TrustedForwarding, EndpointError> {
        Self::with_ranges(header, proxies.into_iter().map(IpNet::from).collect())
    }

    /// As [`TrustedForwarding::new`], with proxies given as CIDR ranges (`10.0.0.0/8`; a single
    /// address is a /32 or /128).
    pub fn with_ranges(
        header: &str,
        proxies: Vec<IpNet>,
    ) -> Result<TrustedForwarding, EndpointError> {
        let header = HeaderName::from_bytes(header.trim().as_bytes())
            .map_err(|_| EndpointError::Config(format!("'{header}' is not an HTTP header name")))?;
        let proxies: Vec<IpNet> = proxies.into_iter().map(canonical).collect();
        if proxies.is_empty() {
            return Err(EndpointError::Config(
                "a trusted forwarded header needs the addresses of the proxies that set it".into(),
            ));
        }
        Ok(TrustedForwarding { header, proxies })
    }

    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// Whether `addr` (a connection's peer, or an address in the header) is a trusted proxy.
    pub fn trusts(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.proxies.iter().any(|p| p.contains(&addr))
    }
}

/// A single IPv4-mapped IPv6 address as IPv4 (how peers are compared); ranges as given.
fn canonical(net: IpNet) -> IpNet {
    if net.prefix_len() == net.max_prefix_len() {
        IpNet::from(net.addr().to_canonical())
    } else {
        net
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked() {
        assert!(RegistrationLimits::default().check().is_ok());
        for bad in [
            RegistrationLimits {
                per_source: 0,
                ..Default::default()
            },
            RegistrationLimits {
                window: Duration::ZERO,
                ..Default::default()
            },
            RegistrationLimits {
                unactivated_ttl: MAX_DURATION * 2,
                ..Default::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        assert!(TrustedForwarding::new("x-forwarded-for", vec![]).is_err());
        assert!(TrustedForwarding::new("bad header", vec![IpAddr::from([127, 0, 0, 1])]).is_err());
        let t =
            TrustedForwarding::new("X-Forwarded-For", vec![IpAddr::from([127, 0, 0, 1])]).unwrap();
        assert!(t.trusts("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!t.trusts("127.0.0.2".parse().unwrap()));
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
        let t = TrustedForwarding::with_ranges("x-forwarded-for", nets).unwrap();
        assert!(t.trusts("10.200.3.4".parse().unwrap()));
        assert!(t.trusts("::ffff:10.0.0.9".parse().unwrap()));
        assert!(t.trusts("fd12::1".parse().unwrap()));
        assert!(!t.trusts("11.0.0.1".parse().unwrap()));
    }
}
