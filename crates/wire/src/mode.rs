//! The run-time choice of address families (seed 000: one binary, dual / IPv6-only /
//! IPv4-only chosen by configuration).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Which families a node serves to its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// IPv6 from the delegated prefix and IPv4 from the overlay subnet.
    #[default]
    Dual,
    /// IPv6 only.
    Ipv6,
    /// IPv4 only.
    Ipv4,
}

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// IPv6.
    Ipv6,
    /// IPv4.
    Ipv4,
}

impl Mode {
    /// Whether pods get an IPv6 address.
    pub fn has_ipv6(self) -> bool {
        matches!(self, Mode::Dual | Mode::Ipv6)
    }
    /// Whether pods get an IPv4 address.
    pub fn has_ipv4(self) -> bool {
        matches!(self, Mode::Dual | Mode::Ipv4)
    }
    /// The families served, IPv6 first.
    pub fn families(self) -> impl Iterator<Item = Family> {
        [
            self.has_ipv6().then_some(Family::Ipv6),
            self.has_ipv4().then_some(Family::Ipv4),
        ]
        .into_iter()
        .flatten()
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "dual" => Ok(Mode::Dual),
            "ipv6" => Ok(Mode::Ipv6),
            "ipv4" => Ok(Mode::Ipv4),
            _ => Err(format!("'{s}' is not a mode: use dual, ipv6 or ipv4")),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Dual => "dual",
            Mode::Ipv6 => "ipv6",
            Mode::Ipv4 => "ipv4",
        })
    }
}

impl Family {
    /// The label used in metrics and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ipv6 => "ipv6",
            Family::Ipv4 => "ipv4",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modes_case_insensitively_and_rejects_others() {
        assert_eq!("DUAL".parse::<Mode>(), Ok(Mode::Dual));
        assert_eq!("ipv6".parse::<Mode>(), Ok(Mode::Ipv6));
        assert!("v6".parse::<Mode>().unwrap_err().contains("'v6'"));
    }

    #[test]
    fn families_follow_mode() {
        assert_eq!(
            Mode::Dual.families().collect::<Vec<_>>(),
            [Family::Ipv6, Family::Ipv4]
        );
        assert_eq!(Mode::Ipv4.families().collect::<Vec<_>>(), [Family::Ipv4]);
    }
}
