//! The admin IP allow-list (API.md §6.4): when enabled, admin endpoints refuse
//! callers from addresses outside its CIDRs.
//!
//! The list lives in the `settings` row `admin_allowlist` (shared by every
//! node) and is cached for `cache_ttl`. CIDRs are parsed here by hand: an
//! address and a prefix length, IPv4-mapped IPv6 addresses compared as IPv4.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{AccessService, Actor, AuthError};

/// The settings row holding the list.
const SETTING: &str = "admin_allowlist";

/// The stored list, exactly as the API shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowList {
    pub enabled: bool,
    pub cidrs: Vec<String>,
}

/// An address block: `10.0.0.0/8`, `::1/128`; a bare address means a single host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix` or a bare address; `None` when malformed.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text.trim(), None),
        };
        let net = canonical(addr.parse().ok()?);
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
            Some(_) => return None,
        };
        (prefix <= max).then_some(Cidr { net, prefix })
    }

    /// Whether `ip` lies inside this block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => same_prefix(&net.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => same_prefix(&net.octets(), &ip.octets(), self.prefix),
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 (`::ffff:10.0.0.1`) as the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether the first `bits` bits of `a` and `b` agree.
fn same_prefix(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = (usize::from(bits / 8), bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

impl AllowList {
    /// Whether `ip` may call admin endpoints under this list.
    pub fn allows(&self, ip: &str) -> bool {
        if !self.enabled {
            return true;
        }
        let Ok(ip) = ip.parse::<IpAddr>() else { return false };
        self.cidrs.iter().filter_map(|c| Cidr::parse(c)).any(|c| c.contains(ip))
    }
}

/// Why a new list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowListError {
    #[error("invalid CIDR {0:?}")]
    BadCidr(String),
    #[error("the list would exclude your own address {0}")]
    ExcludesCaller(String),
    #[error("{0}")]
    Backend(String),
}

impl From<berth_meta::MetaError> for AllowListError {
    fn from(e: berth_meta::MetaError) -> Self {
        AllowListError::Backend(e.to_string())
    }
}

impl AccessService {
    /// The current list (cached for `cache_ttl`).
    pub async fn allowlist(&self) -> Result<Arc<AllowList>, AuthError> {
        if let Some(list) = self.allowlist.get(&()) {
            return Ok(list);
        }
        let raw = self.meta.setting(SETTING).await?;
        let list: Arc<AllowList> = Arc::new(raw.and_then(|r| serde_json::from_str(&r).ok()).unwrap_or_default());
        self.allowlist.insert((), list.clone());
        Ok(list)
    }

    /// Whether admin endpoints may be called from `ip`.
    pub async fn admin_ip_allowed(&self, ip: &str) -> Result<bool, AuthError> {
        Ok(self.allowlist().await?.allows(ip))
    }

    /// Validates and stores a new list (audited). Refuses malformed CIDRs and an
    /// enabled list that would lock out the admin making the change.
    pub async fn set_allowlist(&self, list: AllowList, actor: &Actor) -> Result<AllowList, AllowListError> {
        let mut cidrs = Vec::with_capacity(list.cidrs.len());
        for text in &list.cidrs {
            if Cidr::parse(text).is_none() {
                return Err(AllowListError::BadCidr(text.clone()));
            }
            cidrs.push(text.trim().to_owned());
        }
        let list = AllowList { enabled: list.enabled, cidrs };
        if !list.allows(&actor.ip) {
            return Err(AllowListError::ExcludesCaller(actor.ip.clone()));
        }
        let value = serde_json::to_string(&list).map_err(|e| AllowListError::Backend(e.to_string()))?;
        let mut draft = actor.draft("allowlist_updated", "system.allowlist", "system:allowlist");
        draft.detail["allowlist"] = serde_json::to_value(&list).unwrap_or_default();
        self.meta.put_setting(SETTING, &value, Some(&draft)).await?;
        self.allowlist.invalidate(&());
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_and_match() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(ip("10.255.1.2")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(net.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped addresses count as IPv4");
        let odd = Cidr::parse("192.168.4.0/22").unwrap();
        assert!(odd.contains(ip("192.168.7.255")));
        assert!(!odd.contains(ip("192.168.8.0")));
        let host = Cidr::parse("127.0.0.1").unwrap();
        assert!(host.contains(ip("127.0.0.1")) && !host.contains(ip("127.0.0.2")));
        let v6 = Cidr::parse("::1/128").unwrap();
        assert!(v6.contains(ip("::1")) && !v6.contains(ip("127.0.0.1")));
        assert!(Cidr::parse("fd00::/8").unwrap().contains(ip("fdab::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("203.0.113.9")));
        for bad in ["", "10.0.0.0/33", "::/129", "10.0.0/8", "10.0.0.0/", "10.0.0.0/+8", "host/8", "1.2.3.4/8/9"] {
            assert_eq!(Cidr::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_disabled_list_allows_everyone_and_an_enabled_one_only_its_blocks() {
        let mut list = AllowList { enabled: false, cidrs: vec!["10.0.0.0/8".into()] };
        assert!(list.allows("192.0.2.1"));
        list.enabled = true;
        assert!(list.allows("10.9.9.9"));
        assert!(!list.allows("192.0.2.1"));
        assert!(!list.allows(""), "an unknown address is refused");
        list.cidrs.clear();
        assert!(!list.allows("10.9.9.9"), "an empty enabled list refuses everyone");
    }
}
