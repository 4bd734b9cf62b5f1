//! Which network destinations the `http` capability may reach.
//!
//! By default only public unicast addresses. Refused: loopback, private
//! (10/8, 172.16/12, 192.168/16, fc00::/7), shared CGNAT space (100.64/10),
//! link-local (169.254/16 including the cloud metadata address
//! 169.254.169.254, fe80::/10), unspecified and "this network" (0/8, ::),
//! multicast, broadcast, documentation and other reserved ranges, 6to4 and
//! Teredo tunnel addresses (2002::/16, 2001::/32), and any
//! IPv4 address written as IPv6 (`::ffff:a.b.c.d`, `64:ff9b::a.b.c.d`) is
//! judged as the IPv4 address it carries. An allow-list of `host:port`
//! entries (`AVAP_HTTP_ALLOW`) opens exact destinations whatever their
//! address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Why `ip` may not be reached, or `None` when it is a public address.
pub fn refusal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refusal_v4(v4),
        IpAddr::V6(v6) => refusal_v6(v6),
    }
}

fn refusal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => "the cloud metadata address",
        _ if ip.is_unspecified() => "an unspecified address",
        (0, _, _) => "a 'this network' address",
        (127, _, _) => "a loopback address",
        (10, _, _) => "a private address",
        (172, 16..=31, _) => "a private address",
        (192, 168, _) => "a private address",
        (169, 254, _) => "a link-local address",
        (100, 64..=127, _) => "a shared (CGNAT) address",
        (192, 0, 0) => "an IETF protocol assignment address",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "a documentation address",
        (198, 18..=19, _) => "a benchmarking address",
        (224..=239, _, _) => "a multicast address",
        (240..=255, _, _) => "a reserved address",
        _ => return None,
    })
}

fn refusal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = embedded_v4(ip) {
        return refusal_v4(v4);
    }
    let first = ip.segments()[0];
    Some(match first {
        _ if ip.is_unspecified() => "an unspecified address",
        _ if ip.is_loopback() => "a loopback address",
        0xfe80..=0xfebf => "a link-local address",
        0xfec0..=0xfeff => "a site-local address",
        0xfc00..=0xfdff => "a private (unique local) address",
        0xff00..=0xffff => "a multicast address",
        0x2001 if ip.segments()[1] == 0x0db8 => "a documentation address",
        // Tunnels that carry an IPv4 address (and reach it through a relay).
        0x2001 if ip.segments()[1] == 0 => "a Teredo tunnel address",
        0x2002 => "a 6to4 tunnel address",
        // Only 2000::/3 is global unicast; everything else is reserved.
        0x2000..=0x3fff => return None,
        _ => "a reserved address",
    })
}

/// The IPv4 address carried by an IPv4-mapped (`::ffff:0:0/96`),
/// IPv4-compatible (`::/96`) or NAT64 (`64:ff9b::/96`) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        // ::/96 minus :: and ::1, which are judged as IPv6.
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 || lo > 1 => Some(tail),
        _ => None,
    }
}

/// One `host:port` entry of the allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    /// Lower-case host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl AllowEntry {
    /// Parses `host:port` (`[v6]:port` for IPv6).
    pub fn parse(entry: &str) -> Result<AllowEntry, String> {
        let entry = entry.trim();
        let bad = || format!("allow-list entry '{entry}' is not host:port");
        let (host, port) = entry.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if host.is_empty() || host.contains(['/', '@', ' ']) || port == 0 {
            return Err(bad());
        }
        Ok(AllowEntry { host: host.to_ascii_lowercase(), port })
    }
}

impl std::str::FromStr for AllowEntry {
    type Err = String;

    fn from_str(entry: &str) -> Result<Self, String> {
        AllowEntry::parse(entry)
    }
}

/// Parses a comma-separated allow-list; empty entries are ignored.
pub fn parse_allow_list(list: &str) -> Result<Vec<AllowEntry>, String> {
    list.split(',').filter(|e| !e.trim().is_empty()).map(AllowEntry::parse).collect()
}

/// How a hop that passed [`check_destination`] must be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The exact `host:port` is allow-listed: any address it resolves to.
    AllowListed,
    /// Anything else: an IP literal already checked, or a name whose every
    /// resolved address must pass [`refusal`] before it is connected to.
    Public,
}

/// Scheme and destination rules for one hop (the first request and each
/// redirect): `http`/`https` only, and either the exact `host:port` is in
/// `allow` or the host is not an IP literal that [`refusal`] refuses. The
/// URL parser has already turned every IPv4 spelling (`0x7f.1`, `2130706433`,
/// `017700000001`) into the address it means.
pub fn check_destination(url: &Url, allow: &[AllowEntry]) -> Result<Route, String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("destination refused: only http and https URLs are allowed, not '{}'", url.scheme()));
    }
    let port = url.port_or_known_default().unwrap_or(0);
    let (host, ip) = match url.host() {
        Some(Host::Domain(d)) => (d.to_ascii_lowercase(), None),
        Some(Host::Ipv4(ip)) => (ip.to_string(), Some(IpAddr::V4(ip))),
        Some(Host::Ipv6(ip)) => (ip.to_string(), Some(IpAddr::V6(ip))),
        None => return Err(format!("destination refused: '{url}' has no host")),
    };
    if allow.iter().any(|e| e.host == host && e.port == port) {
        return Ok(Route::AllowListed);
    }
    match ip.map(|ip| (ip, refusal(ip))) {
        Some((ip, Some(why))) => Err(format!("destination refused: {ip} is {why}")),
        _ => Ok(Route::Public),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn refuses_every_non_public_range() {
        for (addr, why) in [
            ("127.0.0.1", "a loopback address"),
            ("127.255.0.9", "a loopback address"),
            ("10.1.2.3", "a private address"),
            ("172.16.0.1", "a private address"),
            ("172.31.255.254", "a private address"),
            ("192.168.1.1", "a private address"),
            ("169.254.169.254", "the cloud metadata address"),
            ("169.254.1.1", "a link-local address"),
            ("0.0.0.0", "an unspecified address"),
            ("0.1.2.3", "a 'this network' address"),
            ("100.64.0.1", "a shared (CGNAT) address"),
            ("224.0.0.1", "a multicast address"),
            ("255.255.255.255", "a reserved address"),
            ("192.0.2.7", "a documentation address"),
            ("::1", "a loopback address"),
            ("::", "an unspecified address"),
            ("fe80::1", "a link-local address"),
            ("fd00::1", "a private (unique local) address"),
            ("ff02::1", "a multicast address"),
            ("2001:db8::1", "a documentation address"),
            ("::ffff:127.0.0.1", "a loopback address"),
            ("::ffff:169.254.169.254", "the cloud metadata address"),
            ("::ffff:10.0.0.1", "a private address"),
            ("64:ff9b::a00:1", "a private address"),
            ("::10.0.0.1", "a private address"),
            ("100::1", "a reserved address"),
            ("2002:7f00:1::1", "a 6to4 tunnel address"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "a Teredo tunnel address"),
        ] {
            assert_eq!(refusal(ip(addr)), Some(why), "{addr}");
        }
    }

    #[test]
    fn allows_public_addresses() {
        for addr in
            ["8.8.8.8", "1.1.1.1", "172.15.0.1", "172.32.0.1", "100.63.0.1", "2606:4700::1111", "::ffff:8.8.8.8"]
        {
            assert_eq!(refusal(ip(addr)), None, "{addr}");
        }
    }

    #[test]
    fn every_ipv4_spelling_is_judged_as_its_address() {
        let allow = parse_allow_list("10.0.0.5:8080").expect("list");
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://0x7f.0.0.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00::1]:8080/",
            "http://0.0.0.0:8080/",
            "http://10.0.0.5:8081/",
            "http://167772165:8081/",
        ] {
            let parsed = Url::parse(url).expect("url");
            assert!(check_destination(&parsed, &allow).is_err(), "{url} must be refused");
        }
        for (url, route) in [
            ("http://10.0.0.5:8080/x", Route::AllowListed),
            ("http://167772165:8080/", Route::AllowListed),
            ("https://example.com/", Route::Public),
            ("http://8.8.8.8/", Route::Public),
        ] {
            assert_eq!(check_destination(&Url::parse(url).expect("url"), &allow), Ok(route), "{url}");
        }
        for url in ["file:///etc/passwd", "gopher://127.0.0.1:25/", "ftp://8.8.8.8/", "data:text/plain,hi"] {
            let err = check_destination(&Url::parse(url).expect("url"), &allow).expect_err("scheme");
            assert!(err.contains("only http and https"), "{url}: {err}");
        }
    }

    #[test]
    fn parses_allow_lists() {
        let list = parse_allow_list(" 127.0.0.1:8080, Localhost:9000,,[::1]:443 ").expect("valid list");
        assert_eq!(
            list,
            [
                AllowEntry { host: "127.0.0.1".into(), port: 8080 },
                AllowEntry { host: "localhost".into(), port: 9000 },
                AllowEntry { host: "::1".into(), port: 443 },
            ]
        );
        for bad in ["localhost", "host:0", "host:http", ":80", "a/b:80", "x:70000"] {
            assert!(AllowEntry::parse(bad).is_err(), "{bad}");
        }
    }
}
