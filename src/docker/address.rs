//! Fixed container addresses (pure).
//!
//! Docker 20.10 hands a container without a fixed address the next free one each time it
//! starts: stop three node containers and start them in another order, and they swap addresses,
//! which breaks etcd, kubelets and the load balancer of a real cluster after a host reboot. So
//! every container the provider makes gets a fixed address, picked here from the top of the
//! network's subnet downwards, away from the bottom where Docker's own allocator starts, and
//! outside the range Docker allocates from when the network declares one (the networks the
//! provider creates leave the upper half of their subnet to fixed addresses).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// An IPv4 subnet: network address and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    network: u32,
    prefix: u32,
}

impl Subnet {
    /// Parses `a.b.c.d/n`; `None` for IPv6 or anything malformed.
    pub fn parse(cidr: &str) -> Option<Self> {
        let (addr, bits) = cidr.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u32 = bits.parse().ok().filter(|b| *b <= 32)?;
        let subnet = Self { network: 0, prefix };
        Some(Self {
            network: u32::from(addr) & subnet.mask(),
            prefix,
        })
    }

    fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    fn contains(self, ip: u32) -> bool {
        ip & self.mask() == self.network
    }

    fn broadcast(self) -> u32 {
        self.network | !self.mask()
    }

    /// The lower half of the subnet, where Docker allocates addresses when asked to leave
    /// the upper half to fixed ones; `None` when it is too small to split.
    pub fn lower_half(self) -> Option<String> {
        (self.prefix < 30).then(|| format!("{}/{}", Ipv4Addr::from(self.network), self.prefix + 1))
    }
}

/// The highest usable address of `subnet` that is not in `taken`, not the gateway and not in
/// Docker's `dynamic_range` (when the network has one; inside it only when nothing outside is
/// left). `None` when the subnet is not IPv4 or is full.
pub fn pick(
    subnet: &str,
    dynamic_range: Option<&str>,
    gateway: Option<&str>,
    taken: &BTreeSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let subnet = Subnet::parse(subnet)?;
    if subnet.prefix > 30 {
        return None;
    }
    let dynamic = dynamic_range.and_then(Subnet::parse);
    let gateway = gateway.and_then(|g| g.parse::<Ipv4Addr>().ok());
    let usable = |ip: u32| {
        let ip = Ipv4Addr::from(ip);
        !taken.contains(&ip) && Some(ip) != gateway
    };
    // From the top down: the first candidate outside the dynamic range, then inside it. Both
    // walks stop at the first free address, so they cost about as many steps as addresses taken.
    let first = subnet.network + 1;
    let last = subnet.broadcast() - 1;
    let outside = (first..=last)
        .rev()
        .filter(|ip| !dynamic.is_some_and(|d| d.contains(*ip)))
        .find(|ip| usable(*ip));
    outside
        .or_else(|| (first..=last).rev().find(|ip| usable(*ip)))
        .map(Ipv4Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(addrs: &[&str]) -> BTreeSet<Ipv4Addr> {
        addrs.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn picks_from_the_top_and_skips_what_is_taken() {
        // (subnet, Docker's dynamic range, gateway, taken, picked)
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            &'a [&'a str],
            Option<&'a str>,
        );
        let cases: &[Case] = &[
            ("172.18.0.0/16", None, None, &[], Some("172.18.255.254")),
            (
                "172.18.0.0/16",
                None,
                None,
                &["172.18.255.254", "172.18.255.253"],
                Some("172.18.255.252"),
            ),
            // The upper half is left to fixed addresses: the dynamic range is not used.
            (
                "172.18.0.0/16",
                Some("172.18.0.0/17"),
                Some("172.18.0.1"),
                &[],
                Some("172.18.255.254"),
            ),
            // A dynamic range in the upper half pushes fixed addresses below it.
            (
                "10.0.0.0/24",
                Some("10.0.0.128/25"),
                None,
                &["10.0.0.127"],
                Some("10.0.0.126"),
            ),
            // Outside the range full: inside it, rather than nothing.
            (
                "10.0.0.0/29",
                Some("10.0.0.0/29"),
                Some("10.0.0.1"),
                &["10.0.0.6"],
                Some("10.0.0.5"),
            ),
            (
                "10.0.0.0/30",
                Some("10.0.0.0/31"),
                Some("10.0.0.1"),
                &[],
                Some("10.0.0.2"),
            ),
            ("10.0.0.0/29", None, Some("10.0.0.6"), &[], Some("10.0.0.5")),
            (
                "10.0.0.0/29",
                Some("10.0.0.0/30"),
                Some("10.0.0.1"),
                &["10.0.0.6", "10.0.0.5", "10.0.0.4"],
                Some("10.0.0.3"),
            ),
            (
                "10.0.0.0/29",
                None,
                Some("10.0.0.1"),
                &["10.0.0.6", "10.0.0.5", "10.0.0.4", "10.0.0.3", "10.0.0.2"],
                None,
            ),
            ("fc00:f853:ccd:e793::/64", None, None, &[], None),
            ("not a subnet", None, None, &[], None),
            ("10.0.0.1/32", None, None, &[], None),
        ];
        for (subnet, range, gateway, taken, want) in cases {
            assert_eq!(
                pick(subnet, *range, *gateway, &set(taken)),
                want.map(|w| w.parse().unwrap()),
                "{subnet} range {range:?} gateway {gateway:?} taken {taken:?}"
            );
        }
    }

    #[test]
    fn a_full_walk_is_not_needed_on_a_large_subnet() {
        // A /8 with one address taken answers at once (a walk from the bottom would not).
        let taken = set(&["10.255.255.254"]);
        assert_eq!(
            pick("10.0.0.0/8", None, None, &taken),
            Some("10.255.255.253".parse().unwrap())
        );
    }

    #[test]
    fn lower_half() {
        let half = |s: &str| Subnet::parse(s).and_then(Subnet::lower_half);
        assert_eq!(half("172.18.0.0/16").as_deref(), Some("172.18.0.0/17"));
        assert_eq!(half("172.18.5.7/16").as_deref(), Some("172.18.0.0/17"));
        assert_eq!(half("10.0.0.0/30"), None);
        assert_eq!(half("fc00::/64"), None);
    }
}
