//! Which addresses a fetch may reach (server-side request forgery guard).
//!
//! Work submitted over the API must not reach the machine itself, its
//! private network or a cloud metadata service. The check runs on the
//! addresses a name resolved to (so what is checked is what is connected
//! to: no DNS rebinding between check and connect), on IP-literal URLs
//! (which never reach a resolver), and again on every redirect hop.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use ipnet::IpNet;

/// Which addresses may be reached: all, or public ones plus the networks
/// allowed on purpose (an internal service the deployment trusts).
///
/// # Example
/// ```
/// use surge_fetch::AddressPolicy;
/// let api = AddressPolicy::public_only();
/// assert!(api.refuses("127.0.0.1".parse().unwrap()));
/// assert!(api.refuses("169.254.169.254".parse().unwrap()));
/// assert!(api.refuses("::ffff:10.0.0.1".parse().unwrap()));
/// assert!(!api.refuses("93.184.216.34".parse().unwrap()));
/// assert!(!AddressPolicy::allow_all().refuses("127.0.0.1".parse().unwrap()));
/// let internal = AddressPolicy::public_only().allowing("10.1.0.0/16".parse().unwrap());
/// assert!(!internal.refuses("10.1.2.3".parse().unwrap()));
/// assert!(internal.refuses("10.2.0.1".parse().unwrap()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddressPolicy {
    public_only: bool,
    allowed: Vec<IpNet>,
}

impl AddressPolicy {
    /// Any address (the CLI: the user fetches on their own behalf).
    pub fn allow_all() -> AddressPolicy {
        AddressPolicy::default()
    }

    /// Public unicast addresses only (work submitted over the API).
    pub fn public_only() -> AddressPolicy {
        AddressPolicy {
            public_only: true,
            allowed: Vec::new(),
        }
    }

    /// The same policy, also allowing `net` (an IPv4-mapped IPv6 address
    /// is judged as its IPv4 address).
    #[must_use]
    pub fn allowing(mut self, net: IpNet) -> AddressPolicy {
        self.allowed.push(net);
        self
    }

    /// Whether only public addresses (and the allowed networks) pass.
    pub fn is_public_only(&self) -> bool {
        self.public_only
    }

    /// Whether `ip` is refused under this policy.
    pub fn refuses(&self, ip: IpAddr) -> bool {
        if !self.public_only || is_public(ip) {
            return false;
        }
        let canonical = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        !self.allowed.iter().any(|n| n.contains(&canonical))
    }
}

/// Why `ip` is not public, or `None` when it is.
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    non_public_reason(ip).is_none()
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match () {
        () if a == 0 => "unspecified (0.0.0.0/8)",
        () if a == 10 => "private (10.0.0.0/8)",
        () if a == 100 && (64..128).contains(&b) => "shared / CGNAT (100.64.0.0/10)",
        () if a == 127 => "loopback (127.0.0.0/8)",
        () if a == 169 && b == 254 => "link-local / cloud metadata (169.254.0.0/16)",
        () if a == 172 && (16..32).contains(&b) => "private (172.16.0.0/12)",
        () if a == 192 && b == 0 && c == 0 => "IETF protocol assignments (192.0.0.0/24)",
        () if a == 192 && b == 0 && c == 2 => "documentation (192.0.2.0/24)",
        () if a == 192 && b == 88 && c == 99 => "6to4 relay (192.88.99.0/24)",
        () if a == 192 && b == 168 => "private (192.168.0.0/16)",
        () if a == 198 && (18..20).contains(&b) => "benchmarking (198.18.0.0/15)",
        () if a == 198 && b == 51 && c == 100 => "documentation (198.51.100.0/24)",
        () if a == 203 && b == 0 && c == 113 => "documentation (203.0.113.0/24)",
        () if (224..240).contains(&a) => "multicast (224.0.0.0/4)",
        () if a >= 240 => "reserved / broadcast (240.0.0.0/4)",
        () => return None,
    })
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    // Addresses that carry an IPv4 address are judged by it.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_reason(v4).map(|_| "IPv4-mapped non-public address (::ffff:0:0/96)");
    }
    let s = ip.segments();
    if s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return v4_reason(v4).map(|_| "NAT64 of a non-public address (64:ff9b::/96)");
    }
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return v4_reason(v4).map(|_| "6to4 of a non-public address (2002::/16)");
    }
    Some(match () {
        () if ip.is_unspecified() => "unspecified (::)",
        () if ip.is_loopback() => "loopback (::1)",
        // IPv4-compatible (deprecated) ::a.b.c.d
        () if s[0..6] == [0, 0, 0, 0, 0, 0] => "IPv4-compatible (::/96)",
        () if s[0] & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        () if s[0] & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        () if s[0] & 0xfe00 == 0xfc00 => "unique local / cloud metadata (fc00::/7)",
        () if s[0] & 0xff00 == 0xff00 => "multicast (ff00::/8)",
        () if s[0] == 0x2001 && s[1] == 0x0db8 => "documentation (2001:db8::/32)",
        () if s[0] == 0x0100 && s[1..4] == [0, 0, 0] => "discard-only (100::/64)",
        () => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        AddressPolicy::public_only().refuses(s.parse().unwrap())
    }

    #[test]
    fn non_public_v4_is_refused() {
        for ip in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "100.100.100.200",
            "127.0.0.1",
            "127.255.0.9",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "192.0.0.170",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(refused(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn public_v4_passes() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "93.184.216.34",
        ] {
            assert!(!refused(ip), "{ip} is public");
        }
    }

    #[test]
    fn non_public_v6_is_refused_including_embedded_v4() {
        for ip in [
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "::127.0.0.1",
        ] {
            assert!(refused(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn public_v6_passes() {
        for ip in [
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!refused(ip), "{ip} is public");
        }
    }
}
