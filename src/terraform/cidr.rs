//! The networks infra is told about, checked before anything is rendered:
//! the operator CIDR, the one network allowed to reach Cloud SQL's public
//! IP and the GKE control plane (a `/0` never reaches Terraform; the
//! modules refuse it too), and the range reserved for private services
//! access, which must not overlap the VPC's other ranges.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Result, bail};

/// Checks `text` is an IPv4 network in CIDR form that is not the whole
/// internet, with no host bits set. Returns it normalised (`a.b.c.d/n`).
pub fn validate_operator_cidr(text: &str) -> Result<String> {
    let text = text.trim();
    let hint = "hint: set `database.operator_cidr` to your own address as a /32, such as 203.0.113.7/32, or leave it unset for private access only";
    let Some((addr, prefix)) = text.split_once('/') else {
        bail!("operator CIDR `{text}` has no prefix length\n{hint}");
    };
    let addr: IpAddr = addr.parse().map_err(|_| {
        anyhow::anyhow!("operator CIDR `{text}`: `{addr}` is not an IP address\n{hint}")
    })?;
    let IpAddr::V4(addr) = addr else {
        bail!(
            "operator CIDR `{text}` is IPv6; Cloud SQL authorized networks take IPv4 only\n{hint}"
        );
    };
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(|| {
        anyhow::anyhow!("operator CIDR `{text}`: `{prefix}` is not a prefix length (0-32)\n{hint}")
    })?;
    if prefix == 0 {
        bail!(
            "operator CIDR `{text}` would let the whole internet reach the database and the cluster\n{hint}"
        );
    }
    let mask = u32::MAX << (32 - u32::from(prefix));
    let network = Ipv4Addr::from(u32::from(addr) & mask);
    if network != addr {
        bail!(
            "operator CIDR `{text}` has host bits set; the network is {network}/{prefix}\n{hint}"
        );
    }
    Ok(format!("{addr}/{prefix}"))
}

/// The VPC's fixed ranges: the defaults of `terraform/modules/network`
/// (`subnet_cidr`, `pods_cidr`, `services_cidr`) and `terraform/modules/gke`
/// (`master_cidr`); tests/it/terraform.rs checks they agree.
pub const VPC_RANGES: &[(&str, &str)] = &[
    ("the private subnet", "10.10.0.0/20"),
    ("the GKE pods range", "10.20.0.0/16"),
    ("the GKE services range", "10.30.0.0/20"),
    ("the GKE control-plane range", "172.16.0.0/28"),
];

/// Checks the range reserved for private services access: an RFC 1918
/// IPv4 network of prefix length 8-24 (Google's limits for an allocated
/// range) that overlaps none of [`VPC_RANGES`]. Returns its first address
/// and prefix length, as `google_compute_global_address` takes them.
pub fn validate_private_services_range(text: &str) -> Result<(Ipv4Addr, u8)> {
    let text = text.trim();
    let (addr, prefix) = parse_v4(text).map_err(|e| {
        anyhow::anyhow!(
            "private services range `{text}`: {e}
hint: use a private IPv4 network such as 10.40.0.0/20"
        )
    })?;
    if !(8..=24).contains(&prefix) {
        bail!(
            "private services range `{text}`: Google allocates /8 to /24 for private services access, not /{prefix}
hint: use a /20, such as 10.40.0.0/20"
        );
    }
    if !addr.is_private() {
        bail!(
            "private services range `{text}` is not a private (RFC 1918) network
hint: use one inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"
        );
    }
    for (what, range) in VPC_RANGES {
        let (other, other_prefix) = parse_v4(range)?;
        if overlaps((addr, prefix), (other, other_prefix)) {
            bail!(
                "private services range `{text}` overlaps {what} ({range})
hint: pick a range clear of {}",
                VPC_RANGES
                    .iter()
                    .map(|(_, r)| *r)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok((addr, prefix))
}

/// `a.b.c.d/n` with no host bits set.
fn parse_v4(text: &str) -> Result<(Ipv4Addr, u8)> {
    let Some((addr, prefix)) = text.split_once('/') else {
        bail!("no prefix length");
    };
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| anyhow::anyhow!("`{addr}` is not an IPv4 address"))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| anyhow::anyhow!("`{prefix}` is not a prefix length (0-32)"))?;
    if u32::from(addr) & !mask(prefix) != 0 {
        bail!("host bits are set");
    }
    Ok((addr, prefix))
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

/// Two networks overlap when one contains the other's first address.
fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let shorter = a.1.min(b.1);
    u32::from(a.0) & mask(shorter) == u32::from(b.0) & mask(shorter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_address_or_a_network_is_accepted() {
        assert_eq!(
            validate_operator_cidr("203.0.113.7/32").unwrap(),
            "203.0.113.7/32"
        );
        assert_eq!(
            validate_operator_cidr(" 198.51.100.0/24 ").unwrap(),
            "198.51.100.0/24"
        );
        assert_eq!(validate_operator_cidr("10.0.0.0/8").unwrap(), "10.0.0.0/8");
    }

    #[test]
    fn the_whole_internet_is_refused_however_it_is_spelled() {
        for cidr in ["0.0.0.0/0", "10.1.2.3/0", "0.0.0.0/00"] {
            let err = format!("{:#}", validate_operator_cidr(cidr).unwrap_err());
            assert!(err.contains("whole internet"), "{cidr}: {err}");
        }
    }

    #[test]
    fn malformed_cidrs_say_what_is_wrong() {
        let cases = [
            ("203.0.113.7", "no prefix length"),
            ("203.0.113.7/33", "not a prefix length"),
            ("203.0.113.7/x", "not a prefix length"),
            ("not-an-ip/32", "not an IP address"),
            ("::/0", "IPv6"),
            ("2001:db8::1/128", "IPv6"),
            (
                "203.0.113.7/24",
                "host bits set; the network is 203.0.113.0/24",
            ),
        ];
        for (cidr, expected) in cases {
            let err = format!("{:#}", validate_operator_cidr(cidr).unwrap_err());
            assert!(err.contains(expected), "{cidr}: {err}");
            assert!(err.contains("hint:"), "{cidr}: {err}");
        }
    }

    #[test]
    fn the_private_services_range_must_be_clear_of_the_vpc_s_ranges() {
        assert_eq!(
            validate_private_services_range("10.40.0.0/20").unwrap(),
            (Ipv4Addr::new(10, 40, 0, 0), 20)
        );
        let refused = [
            ("10.10.8.0/24", "overlaps the private subnet"),
            ("10.0.0.0/8", "overlaps the private subnet"),
            ("172.16.0.0/24", "overlaps the GKE control-plane range"),
            ("10.20.128.0/20", "overlaps the GKE pods range"),
            ("10.40.0.0/28", "/8 to /24"),
            ("10.40.0.1/20", "host bits"),
            ("8.8.0.0/16", "not a private"),
            ("10.40.0.0", "no prefix length"),
        ];
        for (range, expected) in refused {
            let err = validate_private_services_range(range)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{range}: {err}");
            assert!(err.contains("hint:"), "{range}: {err}");
        }
    }
}
