//! A network namespace made by a test, joined to the host by a veth pair: the host end has
//! `host_addr`, the namespace end `ns_addr` (a /30 of 10.0.0.0/8 picked from the process id, so
//! parallel tests never share one), and the namespace's own loopback is up — an address
//! there (127.0.0.1 inside) is reachable only from inside. Both are removed on drop. Needs
//! root and `ip` (iproute2), as CI has: without them the test fails, never skips.
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Netns {
    pub name: String,
    /// The host end's interface.
    host_if: String,
    /// The host's address on the veth pair.
    pub host_addr: String,
    /// The namespace's address on the veth pair, reachable from the host.
    pub ns_addr: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2); network namespaces need it, and root");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// Makes the namespace, the veth pair and their addresses.
    pub fn new() -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        // 22 bits: the process id (one nextest process per test) and a counter
        let id = (std::process::id() * 4 + N.fetch_add(1, Ordering::Relaxed)) & 0x3f_ffff;
        let (a, b, c) = ((id >> 14) & 0xff, (id >> 6) & 0xff, (id & 0x3f) << 2);
        let ns = Netns {
            name: format!("pjn{id:06x}"),
            host_if: format!("pjh{id:06x}"),
            host_addr: format!("10.{a}.{b}.{}", c + 1),
            ns_addr: format!("10.{a}.{b}.{}", c + 2),
        };
        let peer = format!("pjp{id:06x}");
        // a namespace left by a killed run of the same id goes first
        let _ = Command::new("ip")
            .args(["link", "del", &ns.host_if])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &ns.name]).output();
        ip(&["netns", "add", &ns.name]);
        ip(&["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"]);
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &ns.name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_addr),
            "dev",
            &ns.host_if,
        ]);
        ip(&["link", "set", &ns.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns.name, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{}/30", ns.ns_addr), "dev", &peer]);
        inside(&["link", "set", &peer, "up"]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // deleting one end of a veth pair deletes both
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
