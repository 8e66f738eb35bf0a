//! Where traffic may go (SPEC §6): only to the link's origin, and, when
//! `syncbridge.allowed_hosts` lists hosts, only to those. The decisions are here, as plain
//! functions of URLs and addresses; the transport applies them to every request, redirect,
//! page link and resolved address, and the SQL API to the URLs a link is given.

use super::link_spec::redact_url;
use std::fmt;
use std::net::IpAddr;
use url::{Host, Url};

/// The setting that restricts where links may point; named in messages and hints.
pub const SETTING: &str = "syncbridge.allowed_hosts";

/// Whether `a` and `b` share scheme, host and port (the default port counts as given).
pub fn same_origin(a: &Url, b: &Url) -> bool {
    let (oa, ob) = (a.origin(), b.origin());
    oa.is_tuple() && oa == ob
}

/// The URL a page's next link points at: `next` resolved against the page's own URL, and
/// refused when it leaves the page's origin (its text redacted of credentials).
pub fn next_page(page: &str, next: &str) -> Result<Url, String> {
    let page = Url::parse(page).map_err(|e| format!("the page URL \"{}\" is invalid: {e}", redact_url(page)))?;
    let target =
        page.join(next.trim()).map_err(|e| format!("the next page link \"{}\" is not a URL: {e}", redact_url(next)))?;
    if !same_origin(&page, &target) {
        return Err(format!(
            "the next page link \"{}\" leaves the origin {}; pulls follow only pages of the same origin",
            redact_url(target.as_str()),
            page.origin().ascii_serialization()
        ));
    }
    Ok(target)
}

/// One entry of `syncbridge.allowed_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// A host name, lower-case, without a trailing dot.
    Name(String),
    /// `*.example.com`, kept as `.example.com`: any name below it, not the name itself.
    Below(String),
    /// An address range; a single address has the full prefix.
    Net(IpAddr, u8),
}

/// The parsed `syncbridge.allowed_hosts`. Names are checked against the name entries (when
/// there are some), addresses against the address entries (when there are some): the host
/// of an IP-literal URL must lie in an address entry, and a name must match a name entry and
/// resolve only into the address entries. Empty: no restriction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<Entry>,
}

/// A host or address outside the allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAllowed(pub String);

impl fmt::Display for NotAllowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotAllowed {}

impl AllowList {
    /// Parses the comma-separated entries: `api.example.com`, `*.example.com`, `10.1.2.3`,
    /// `10.0.0.0/8`, `::1`, `[::1]`, `fd00::/8`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for raw in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            entries.push(entry(raw).ok_or_else(|| {
                format!(
                    "{SETTING} entry \"{raw}\" is not a host name, a *.domain wildcard, an IP address or a CIDR range"
                )
            })?);
        }
        Ok(Self { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn names(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| !matches!(e, Entry::Net(..)))
    }

    fn nets(&self) -> impl Iterator<Item = (IpAddr, u8)> + '_ {
        self.entries.iter().filter_map(|e| match e {
            Entry::Net(ip, prefix) => Some((*ip, *prefix)),
            _ => None,
        })
    }

    /// Resolved addresses must be filtered: the list has address entries.
    pub fn checks_addresses(&self) -> bool {
        self.nets().next().is_some()
    }

    /// Whether an address lies in the address entries (any address when there are none).
    pub fn allows_addr(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        !self.checks_addresses() || self.nets().any(|(net, prefix)| in_net(ip, net, prefix))
    }

    /// Checks the host of a URL (before connecting; the addresses a name resolves to are
    /// checked by [`AllowList::filter`]).
    pub fn check_url(&self, url: &Url) -> Result<(), NotAllowed> {
        if self.is_empty() {
            return Ok(());
        }
        let refused =
            |host: &str| NotAllowed(format!("host \"{host}\" of {} is not in {SETTING}", redact_url(url.as_str())));
        match url.host() {
            None => Err(NotAllowed(format!("{} has no host", redact_url(url.as_str())))),
            Some(Host::Ipv4(ip)) if self.allows_ip_literal(IpAddr::V4(ip)) => Ok(()),
            Some(Host::Ipv6(ip)) if self.allows_ip_literal(IpAddr::V6(ip)) => Ok(()),
            Some(Host::Ipv4(ip)) => Err(refused(&ip.to_string())),
            Some(Host::Ipv6(ip)) => Err(refused(&format!("[{ip}]"))),
            Some(Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                let mut names = self.names().peekable();
                if names.peek().is_none() || names.any(|e| matches_name(e, &name)) {
                    Ok(())
                } else {
                    Err(refused(&name))
                }
            }
        }
    }

    fn allows_ip_literal(&self, ip: IpAddr) -> bool {
        self.checks_addresses() && self.allows_addr(ip)
    }

    /// The addresses `name` resolved to that may be connected to; refused when none is left.
    pub fn filter(&self, name: &str, addrs: Vec<IpAddr>) -> Result<Vec<IpAddr>, NotAllowed> {
        let kept: Vec<IpAddr> = addrs.iter().copied().filter(|ip| self.allows_addr(*ip)).collect();
        if kept.is_empty() {
            let shown: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
            return Err(NotAllowed(format!(
                "\"{name}\" resolves to {}, which {SETTING} does not allow",
                if shown.is_empty() { "no address".to_string() } else { shown.join(", ") }
            )));
        }
        Ok(kept)
    }
}

fn entry(raw: &str) -> Option<Entry> {
    if let Some((addr, prefix)) = raw.split_once('/') {
        let ip = parse_ip(addr)?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= max)?;
        return Some(Entry::Net(canonical_ip(ip), prefix));
    }
    if let Some(ip) = parse_ip(raw) {
        let ip = canonical_ip(ip);
        return Some(Entry::Net(ip, if ip.is_ipv4() { 32 } else { 128 }));
    }
    let name = raw.trim_end_matches('.').to_ascii_lowercase();
    match name.strip_prefix("*.") {
        Some(domain) if is_host_name(domain) => Some(Entry::Below(format!(".{domain}"))),
        Some(_) => None,
        None => is_host_name(&name).then_some(Entry::Name(name)),
    }
}

fn parse_ip(text: &str) -> Option<IpAddr> {
    text.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

fn matches_name(entry: &Entry, name: &str) -> bool {
    match entry {
        Entry::Name(n) => n == name,
        Entry::Below(suffix) => name.len() > suffix.len() && name.ends_with(suffix.as_str()),
        Entry::Net(..) => false,
    }
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is the IPv4 address.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    let bits = |ip: IpAddr| -> (u128, u8) {
        match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        }
    };
    let ((a, width), (b, net_width)) = (bits(ip), bits(net));
    if width != net_width {
        return false;
    }
    let drop = u32::from(width - prefix.min(width));
    let mask = if drop >= 128 { 0 } else { (!0u128 >> drop) << drop };
    let mask = if width == 32 { mask & 0xffff_ffff } else { mask };
    a & mask == b & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert!(same_origin(&url("http://h:8080/a"), &url("http://h:8080/b?x")));
        assert!(same_origin(&url("https://h/a"), &url("https://h:443/b")));
        assert!(!same_origin(&url("http://h/a"), &url("https://h/a")));
        assert!(!same_origin(&url("http://h:1/a"), &url("http://h:2/a")));
        assert!(!same_origin(&url("http://h/a"), &url("http://g/a")));
        assert!(!same_origin(&url("file:///etc/passwd"), &url("file:///etc/passwd")));
    }

    #[test]
    fn next_pages_resolve_against_the_page_and_stay_on_its_origin() {
        let page = "http://127.0.0.1:9000/v1/items?page=1";
        assert_eq!(next_page(page, "?page=2").unwrap().as_str(), "http://127.0.0.1:9000/v1/items?page=2");
        assert_eq!(next_page(page, "/v1/items?page=2").unwrap().as_str(), "http://127.0.0.1:9000/v1/items?page=2");
        assert_eq!(next_page(page, "other?page=2").unwrap().as_str(), "http://127.0.0.1:9000/v1/other?page=2");
        assert!(next_page(page, "http://127.0.0.1:9000/v1/items?page=2").is_ok());
        let err = next_page(page, "http://127.0.0.1:9001/v1/items?page=2").unwrap_err();
        assert!(err.contains("http://127.0.0.1:9001/v1/items?page=2") && err.contains("same origin"), "{err}");
        let err = next_page(page, "//u:pw@evil.example/x").unwrap_err();
        assert!(err.contains("***@evil.example") && !err.contains("pw"), "{err}");
        assert!(next_page(page, "file:///etc/passwd").is_err());
        assert!(next_page(page, "https://127.0.0.1:9000/v1/items").is_err());
    }

    #[test]
    fn an_empty_list_allows_everything() {
        let list = AllowList::parse(" , ").unwrap();
        assert!(list.is_empty() && !list.checks_addresses());
        assert!(list.check_url(&url("http://anything.example:1/")).is_ok());
        assert!(list.check_url(&url("http://10.1.1.1/")).is_ok());
        assert_eq!(list.filter("x", vec!["8.8.8.8".parse().unwrap()]).unwrap().len(), 1);
    }

    #[test]
    fn names_match_exactly_or_below_a_wildcard() {
        let list = AllowList::parse("API.example.com., *.corp.example").unwrap();
        assert!(!list.checks_addresses());
        assert!(list.check_url(&url("https://api.example.com/v1")).is_ok());
        assert!(list.check_url(&url("https://api.example.com./v1")).is_ok());
        assert!(list.check_url(&url("https://a.corp.example/")).is_ok());
        assert!(list.check_url(&url("https://a.b.corp.example/")).is_ok());
        for bad in [
            "https://corp.example/",
            "https://evilcorp.example/",
            "https://api.example.com.evil/",
            "https://example.com/",
            "http://127.0.0.1/",
        ] {
            let err = list.check_url(&url(bad)).unwrap_err();
            assert!(err.0.contains(SETTING), "{bad}: {err}");
        }
        // Without address entries a listed name may resolve anywhere.
        assert!(list.filter("api.example.com", vec!["10.0.0.1".parse().unwrap()]).is_ok());
    }

    #[test]
    fn addresses_and_ranges() {
        let list = AllowList::parse("127.0.0.0/8, ::1/128, 192.168.1.7, [fd00::1]").unwrap();
        assert!(list.checks_addresses());
        for ok in [
            "http://127.0.0.1:5000/",
            "http://127.9.9.9/",
            "http://[::1]:80/",
            "http://192.168.1.7/",
            "http://[fd00::1]/",
        ] {
            assert!(list.check_url(&url(ok)).is_ok(), "{ok}");
        }
        for bad in ["http://128.0.0.1/", "http://192.168.1.8/", "http://[::2]/", "http://169.254.169.254/"] {
            assert!(list.check_url(&url(bad)).is_err(), "{bad}");
        }
        assert!(list.allows_addr("::ffff:127.0.0.1".parse().unwrap()), "IPv4 written as IPv6");
        // Without name entries any name is let through to resolution, where its addresses
        // are filtered.
        assert!(list.check_url(&url("http://localhost:5000/")).is_ok());
        let kept = list.filter("localhost", vec!["127.0.0.1".parse().unwrap(), "10.0.0.1".parse().unwrap()]).unwrap();
        assert_eq!(kept, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        let err = list.filter("rebound.example", vec!["169.254.169.254".parse().unwrap()]).unwrap_err();
        assert_eq!(
            err.0,
            "\"rebound.example\" resolves to 169.254.169.254, which syncbridge.allowed_hosts does not allow"
        );
    }

    #[test]
    fn names_and_ranges_together_need_both() {
        let list = AllowList::parse("localhost, 127.0.0.0/8").unwrap();
        assert!(list.check_url(&url("http://localhost:1/")).is_ok());
        assert!(list.check_url(&url("http://127.0.0.1:1/")).is_ok());
        assert!(list.check_url(&url("http://elsewhere.example/")).is_err());
        assert!(
            list.filter("localhost", vec!["10.0.0.1".parse().unwrap()]).is_err(),
            "a listed name that resolves elsewhere"
        );
    }

    #[test]
    fn ranges_cover_their_prefix_only() {
        let list = AllowList::parse("10.1.0.0/16, 2001:db8::/32, 0.0.0.0/0").unwrap();
        assert!(list.allows_addr("10.1.255.255".parse().unwrap()));
        assert!(list.allows_addr("8.8.8.8".parse().unwrap()), "/0 is everything of its family");
        assert!(list.allows_addr("2001:db8:ffff::1".parse().unwrap()));
        assert!(!list.allows_addr("2001:db9::1".parse().unwrap()));
        let list = AllowList::parse("10.1.0.0/16").unwrap();
        assert!(!list.allows_addr("10.2.0.0".parse().unwrap()));
        assert!(!list.allows_addr("::a01:1".parse().unwrap()), "families do not mix");
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in ["10.0.0.0/33", "::1/129", "a b", "*.", "*", "http://h", "h:80", "10.0.0.0/x", "a..b"] {
            let err = AllowList::parse(&format!("ok.example, {bad}")).unwrap_err();
            assert!(err.contains(&format!("\"{bad}\"")), "{bad}: {err}");
        }
    }
}
