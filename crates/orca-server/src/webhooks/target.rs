//! Where webhooks may go: refuses loopback, private, link-local and other internal addresses
//! unless the configuration allows them (ORCA_WEBHOOK_ALLOW_PRIVATE), so a job cannot make
//! the backend call into its own network (SSRF).
//!
//! Checked twice: at submission for literal hosts, and at delivery for every address the name
//! resolves to; the request is then pinned to a checked address (no DNS rebinding).

use std::net::{IpAddr, SocketAddr};

/// True for addresses a public webhook must not target.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast()
                || v4.is_documentation() || v4.octets()[0] == 0
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64) // CGNAT 100.64/10
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link local
        }
    }
}

/// Checks a URL's literal host at submission time. Names are checked when they resolve.
pub fn check_url(url: &str, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let parsed = url::Url::parse(url).map_err(|_| "must be an absolute http:// or https:// URL".to_owned())?;
    match parsed.host() {
        Some(url::Host::Ipv4(ip)) if is_internal(IpAddr::V4(ip)) => Err(refused()),
        Some(url::Host::Ipv6(ip)) if is_internal(IpAddr::V6(ip)) => Err(refused()),
        Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost") => Err(refused()),
        _ => Ok(()),
    }
}

fn refused() -> String {
    "must not point at a loopback or private address (set ORCA_WEBHOOK_ALLOW_PRIVATE=true to allow)".into()
}

/// Marks resolver errors that are refusals (final) rather than lookup failures (retried).
pub const REFUSED_MARKER: &str = "resolves to a loopback or private address";

/// The HTTP client's DNS resolver: a name that resolves to any internal address is refused,
/// and the connection goes only to the addresses checked here.
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow && addrs.iter().any(|a| is_internal(a.ip())) {
                return Err(format!("refused: {host} {REFUSED_MARKER}").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for a in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "100.64.0.1", "::1", "fd00::1", "fe80::1", "::ffff:127.0.0.1"] {
            assert!(is_internal(a.parse().unwrap()), "{a}");
        }
        for a in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(!is_internal(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn urls() {
        assert!(check_url("http://127.0.0.1:9/x", false).is_err());
        assert!(check_url("http://localhost/x", false).is_err());
        assert!(check_url("http://[::1]/x", false).is_err());
        assert!(check_url("https://hooks.example.com/x", false).is_ok());
        assert!(check_url("http://127.0.0.1:9/x", true).is_ok());
    }
}
