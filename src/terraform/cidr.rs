//! The operator CIDR: the one network allowed to reach Cloud SQL's public
//! IP and the GKE control plane. Checked before anything is rendered, so a
//! `/0` never reaches Terraform (the modules refuse it too).

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
}
