//! Two network namespaces joined by veth pairs, made by the test and
//! removed when it ends:
//!
//! - `client`: where the host under test runs (every thread of its runtime
//!   enters it), with the test's DNS server on its loopback. It has no
//!   interface but loopback and the two veth ends, and its default routes
//!   point into `target`: nothing it sends can reach any other network.
//! - `target`: holds the addresses a script must not reach (private,
//!   link-local with the cloud metadata address, CGNAT, a ULA), each with a
//!   listener that counts connections, and one allow-listed server.
//!
//! Pair A carries IPv4 only, with IPv6 disabled on both ends, so it is
//! silent unless someone sends: its transmit counter on the client side is
//! the number of packets the host sent, and "refused with no packet sent" is
//! read off it. Pair B carries the IPv6 targets (checked by their listeners).

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;

use nix::sched::{CloneFlags, setns};

/// The client end of pair A: 10.213.7.1/24. The target end: 10.213.7.2.
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(10, 213, 7, 1);
pub const TARGET_V4: Ipv4Addr = Ipv4Addr::new(10, 213, 7, 2);
/// Further addresses of the target end, each a class of refused address.
pub const METADATA: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
pub const CGNAT: Ipv4Addr = Ipv4Addr::new(100, 64, 213, 2);
pub const PRIVATE_192: Ipv4Addr = Ipv4Addr::new(192, 168, 213, 2);
pub const PRIVATE_172: Ipv4Addr = Ipv4Addr::new(172, 16, 213, 2);
/// Pair B: fd77:213::1/64 and fd77:213::2.
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0x213, 0, 0, 0, 0, 0, 1);
pub const TARGET_V6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0x213, 0, 0, 0, 0, 0, 2);

pub struct Namespaces {
    pub client: String,
    pub target: String,
    /// The client end of pair A, whose transmit counter is read.
    pub client_if: String,
}

/// Why the namespaces could not be made (the caller decides whether that
/// is a skip: only a kernel or sandbox that refuses namespaces is).
#[derive(Debug)]
pub struct Refused(pub String);

fn ip(args: &[&str]) -> Result<(), Refused> {
    let out = Command::new("ip").args(args).output().map_err(|e| Refused(format!("running ip: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Refused(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())))
    }
}

fn in_ns(ns: &str, args: &[&str]) -> Result<(), Refused> {
    let mut all = vec!["netns", "exec", ns];
    all.extend_from_slice(args);
    ip(&all)
}

impl Namespaces {
    pub fn create() -> Result<Namespaces, Refused> {
        let id = std::process::id() % 100_000;
        let ns =
            Namespaces { client: format!("avapc{id}"), target: format!("avapt{id}"), client_if: format!("vca{id}") };
        // Left over from a run that was killed: start clean.
        let _ = ip(&["netns", "del", &ns.client]);
        let _ = ip(&["netns", "del", &ns.target]);
        ip(&["netns", "add", &ns.client])?;
        ip(&["netns", "add", &ns.target])?;
        ns.wire().inspect_err(|_| drop_namespaces(&ns))?;
        Ok(ns)
    }

    fn wire(&self) -> Result<(), Refused> {
        let (c, t) = (self.client.as_str(), self.target.as_str());
        let id = std::process::id() % 100_000;
        let (ca, ta, cb, tb) = (self.client_if.clone(), format!("vta{id}"), format!("vcb{id}"), format!("vtb{id}"));
        for ns in [c, t] {
            in_ns(ns, &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        // Pair A: IPv4 only, quiet.
        ip(&["-n", c, "link", "add", &ca, "type", "veth", "peer", "name", &ta, "netns", t])?;
        ip(&["-n", c, "addr", "add", &format!("{CLIENT_V4}/24"), "dev", &ca])?;
        ip(&["-n", t, "addr", "add", &format!("{TARGET_V4}/24"), "dev", &ta])?;
        for extra in [METADATA, CGNAT, PRIVATE_192, PRIVATE_172] {
            ip(&["-n", t, "addr", "add", &format!("{extra}/32"), "dev", &ta])?;
        }
        ip(&["-n", c, "link", "set", &ca, "up"])?;
        ip(&["-n", t, "link", "set", &ta, "up"])?;
        ip(&["-n", c, "route", "add", "default", "via", &TARGET_V4.to_string(), "dev", &ca])?;
        // Pair B: IPv6, for the ULA target.
        for ns in [c, t] {
            in_ns(ns, &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=0"])?;
            in_ns(ns, &["sysctl", "-qw", "net.ipv6.conf.default.accept_ra=0"])?;
        }
        ip(&["-n", c, "link", "add", &cb, "type", "veth", "peer", "name", &tb, "netns", t])?;
        ip(&["-n", c, "addr", "add", &format!("{CLIENT_V6}/64"), "dev", &cb, "nodad"])?;
        ip(&["-n", t, "addr", "add", &format!("{TARGET_V6}/64"), "dev", &tb, "nodad"])?;
        ip(&["-n", c, "link", "set", &cb, "up"])?;
        ip(&["-n", t, "link", "set", &tb, "up"])?;
        ip(&["-n", c, "-6", "route", "add", "default", "via", &TARGET_V6.to_string(), "dev", &cb])?;
        Ok(())
    }

    /// Packets sent so far from the client end of pair A.
    pub fn client_tx_packets(&self) -> u64 {
        let out = Command::new("ip")
            .args(["-n", &self.client, "-s", "-j", "link", "show", "dev", &self.client_if])
            .output()
            .expect("ip link show");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
        json[0]["stats64"]["tx"]["packets"].as_u64().expect("tx packets")
    }
}

fn drop_namespaces(ns: &Namespaces) {
    // Deleting a namespace deletes its interfaces, and with them the peers.
    let _ = ip(&["netns", "del", &ns.client]);
    let _ = ip(&["netns", "del", &ns.target]);
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        drop_namespaces(self);
    }
}

/// Moves the calling thread into namespace `name`.
pub fn enter(name: &str) {
    let file = File::open(format!("/run/netns/{name}")).unwrap_or_else(|e| panic!("open netns {name}: {e}"));
    setns(&file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {name}: {e}"));
}

/// Binds TCP listeners inside namespace `name` (on a thread of their own,
/// so the caller's namespace is untouched); sockets stay in the namespace
/// they were made in, whichever thread serves them.
pub fn listeners_in(name: &str, addrs: &[SocketAddr]) -> Vec<std::net::TcpListener> {
    let (name, addrs) = (name.to_string(), addrs.to_vec());
    std::thread::spawn(move || {
        enter(&name);
        addrs
            .iter()
            .map(|a| {
                let l = std::net::TcpListener::bind(a).unwrap_or_else(|e| panic!("bind {a} in {name}: {e}"));
                l.set_nonblocking(true).expect("nonblocking");
                l
            })
            .collect()
    })
    .join()
    .expect("listener thread")
}

/// `ip` as a URL host.
pub fn host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}
