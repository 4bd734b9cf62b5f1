//! The outbound destination policy: only http(s), a public route to an IP
//! literal means that address is public, and an IPv4 address is judged the
//! same when written as IPv4-mapped IPv6.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use avap_policy::net::{AllowEntry, Route, check_destination, parse_allow_list, refusal};
use libfuzzer_sys::fuzz_target;
use url::{Host, Url};

static ALLOW: LazyLock<Vec<AllowEntry>> =
    LazyLock::new(|| parse_allow_list("10.0.0.5:8080,localhost:9000").expect("allow-list"));

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(url) = Url::parse(&text) {
        let result = check_destination(&url, &ALLOW);
        if result.is_ok() {
            assert!(matches!(url.scheme(), "http" | "https"), "accepted scheme {:?} in {url}", url.scheme());
        }
        if result == Ok(Route::Public) {
            let ip = match url.host() {
                Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            };
            if let Some(ip) = ip {
                assert_eq!(refusal(ip), None, "public route to a refused address: {url}");
            }
        }
    }

    if data.len() >= 4 {
        let v4 = Ipv4Addr::new(data[0], data[1], data[2], data[3]);
        let mapped = IpAddr::V6(v4.to_ipv6_mapped());
        assert_eq!(refusal(IpAddr::V4(v4)).is_some(), refusal(mapped).is_some(), "{v4} vs {mapped}");
    }
    if let Some(bytes) = data.get(..16) {
        let octets: [u8; 16] = bytes.try_into().expect("16 bytes");
        let v6 = Ipv6Addr::from(octets);
        let v6_refused = refusal(IpAddr::V6(v6));
        if let Some(v4) = v6.to_ipv4_mapped() {
            assert_eq!(refusal(IpAddr::V4(v4)).is_some(), v6_refused.is_some(), "{v4} vs {v6}");
        }
    }
});
