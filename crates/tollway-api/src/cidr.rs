//! IPv4 CIDRs as policies write them (`10.0.0.0/8`, or a bare address for
//! Cilium's `fromCIDR`/`toCIDR`). IPv6 is parsed far enough to be rejected
//! by name.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 prefix. The address is kept as written (host bits may be set,
/// as Kubernetes allows); [`Ipv4Cidr::network`] masks them off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    /// The address as written.
    pub addr: Ipv4Addr,
    /// Prefix length, 0-32.
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    /// Parse `a.b.c.d/n`; the prefix length is required.
    pub fn parse(s: &str) -> Result<Ipv4Cidr, String> {
        let Some((addr, len)) = s.split_once('/') else {
            reject_ipv6(s)?;
            return Err(format!(
                "must be a CIDR like 10.0.0.0/8 (with a prefix length), got {s:?}"
            ));
        };
        reject_ipv6(s)?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("must be a CIDR like 10.0.0.0/8, got {s:?}"))?;
        let prefix_len = match len.parse::<u8>() {
            Ok(n) if n <= 32 && !len.starts_with('+') => n,
            _ => {
                return Err(format!("prefix length must be 0-32, got {len:?} in {s:?}"));
            }
        };
        Ok(Ipv4Cidr { addr, prefix_len })
    }

    /// Parse a CIDR, or a bare address as a /32 (Cilium's `fromCIDR`).
    pub fn parse_ip_or_cidr(s: &str) -> Result<Ipv4Cidr, String> {
        if s.contains('/') {
            return Ipv4Cidr::parse(s);
        }
        reject_ipv6(s)?;
        let addr: Ipv4Addr = s
            .parse()
            .map_err(|_| format!("must be an IPv4 address or a CIDR like 10.0.0.0/8, got {s:?}"))?;
        Ok(Ipv4Cidr {
            addr,
            prefix_len: 32,
        })
    }

    /// The netmask as a number.
    pub fn mask(&self) -> u32 {
        match self.prefix_len {
            0 => 0,
            n => u32::MAX << (32 - u32::from(n.min(32))),
        }
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// Whether `ip` is inside the prefix.
    pub fn contains_addr(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// Whether `other` lies entirely inside this prefix.
    pub fn contains(&self, other: &Ipv4Cidr) -> bool {
        other.prefix_len >= self.prefix_len && self.contains_addr(other.network())
    }
}

fn reject_ipv6(s: &str) -> Result<(), String> {
    if s.contains(':') {
        Err(format!("IPv6 is not supported yet (IPv4 only), got {s:?}"))
    } else {
        Ok(())
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ipv4Cidr::parse(s)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_contain() {
        let c = Ipv4Cidr::parse("172.17.0.0/16").unwrap();
        assert_eq!(c.prefix_len, 16);
        assert!(c.contains(&Ipv4Cidr::parse("172.17.1.0/24").unwrap()));
        assert!(c.contains(&c));
        assert!(!c.contains(&Ipv4Cidr::parse("172.0.0.0/8").unwrap()));
        assert!(!c.contains(&Ipv4Cidr::parse("10.0.0.0/24").unwrap()));
        assert_eq!(
            Ipv4Cidr::parse("10.1.2.3/8").unwrap().network(),
            Ipv4Addr::new(10, 0, 0, 0)
        );
        let all = Ipv4Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains_addr(Ipv4Addr::new(8, 8, 8, 8)));
        assert_eq!(all.to_string(), "0.0.0.0/0");
    }

    #[test]
    fn errors() {
        assert!(
            Ipv4Cidr::parse("10.0.0.0")
                .unwrap_err()
                .contains("prefix length")
        );
        assert!(Ipv4Cidr::parse("10.0.0.0/33").unwrap_err().contains("0-32"));
        assert!(Ipv4Cidr::parse("10.0.0.0/+8").is_err());
        assert!(Ipv4Cidr::parse("10.0.0/8").is_err());
        assert!(Ipv4Cidr::parse("010.0.0.0/8").is_err());
        assert!(
            Ipv4Cidr::parse("2001:db8::/32")
                .unwrap_err()
                .contains("IPv6")
        );
        assert!(
            Ipv4Cidr::parse_ip_or_cidr("::1")
                .unwrap_err()
                .contains("IPv6")
        );
        assert_eq!(
            Ipv4Cidr::parse_ip_or_cidr("10.3.9.1").unwrap().prefix_len,
            32
        );
    }
}
