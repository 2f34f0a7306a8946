//! Why a key exchange failed: when libssh2 says "Unable to exchange encryption keys", the
//! server's own algorithm lists (its unencrypted SSH_MSG_KEXINIT, read on a second, short
//! connection) are compared with what libssh2 offers. A category with nothing in common is a
//! final error naming both sides' lists (issue 19: a post-quantum-only or FIPS-only server must
//! fail at once, not be retried until the deadline); anything else stays "not up yet".

use ssh2::{MethodType, Session};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// libssh2's LIBSSH2_ERROR_KEX_FAILURE.
const KEX_FAILURE: i32 = -5;
/// SSH_MSG_KEXINIT.
const MSG_KEXINIT: u8 = 20;
/// Bound on the probe connection's connect and reads.
const PROBE_LIMIT: Duration = Duration::from_secs(5);

/// True for libssh2's key-exchange failure (negotiation or the exchange itself).
pub(super) fn is_kex_failure(e: &ssh2::Error) -> bool {
    e.code() == ssh2::ErrorCode::Session(KEX_FAILURE)
}

/// The categories compared, with the name-list index in KEXINIT and libssh2's method type.
const CATEGORIES: [(&str, usize, MethodType); 4] = [
    ("key exchange", 0, MethodType::Kex),
    ("host key", 1, MethodType::HostKey),
    ("cipher", 2, MethodType::CryptCs),
    ("MAC", 4, MethodType::MacCs),
];

/// When `addr`'s server and libssh2 share no algorithm in a category: one line naming the
/// category and both sides' lists. `None` when the lists could not be read or all overlap.
pub(super) fn mismatch(session: &Session, addr: SocketAddr) -> Option<String> {
    let server = server_lists(addr).ok()?;
    let mut found = Vec::new();
    for (what, index, method) in CATEGORIES {
        let ours: Vec<String> = session
            .supported_algs(method)
            .ok()?
            .into_iter()
            .map(String::from)
            .collect();
        let theirs = server.get(index)?;
        // An AEAD cipher needs no MAC: only compare MACs when the cipher is not one.
        if what == "MAC" && found.is_empty() && aead_in_common(session, &server) {
            continue;
        }
        if !theirs.iter().any(|a| ours.contains(a)) {
            found.push(format!(
                "no common {what} algorithm: the server offers {}; deploy-node (libssh2) offers {}",
                theirs.join(","),
                ours.join(",")
            ));
        }
    }
    (!found.is_empty()).then(|| found.join("; "))
}

fn aead_in_common(session: &Session, server: &[Vec<String>]) -> bool {
    let ours = session
        .supported_algs(MethodType::CryptCs)
        .unwrap_or_default();
    server.get(2).is_some_and(|theirs| {
        theirs
            .iter()
            .any(|a| ours.contains(&a.as_str()) && (a.contains("gcm") || a.contains("poly1305")))
    })
}

/// The server's ten KEXINIT name-lists, read after exchanging version banners.
fn server_lists(addr: SocketAddr) -> std::io::Result<Vec<Vec<String>>> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut tcp = TcpStream::connect_timeout(&addr, PROBE_LIMIT)?;
    tcp.set_read_timeout(Some(PROBE_LIMIT))?;
    tcp.write_all(b"SSH-2.0-provision_probe\r\n")?;
    let mut r = BufReader::new(tcp);
    // The server may send other lines before its version line.
    for _ in 0..20 {
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line)?;
        if line.is_empty() {
            return Err(bad("closed before the banner"));
        }
        if line.starts_with(b"SSH-") {
            let mut len = [0u8; 4];
            r.read_exact(&mut len)?;
            let len = u32::from_be_bytes(len) as usize;
            if !(6..=256 * 1024).contains(&len) {
                return Err(bad("bad packet length"));
            }
            let mut packet = vec![0u8; len];
            r.read_exact(&mut packet)?;
            let padding = packet[0] as usize;
            let payload = packet
                .get(1..len.saturating_sub(padding))
                .ok_or_else(|| bad("bad padding"))?;
            return parse_kexinit(payload).ok_or_else(|| bad("not a KEXINIT"));
        }
    }
    Err(bad("no banner"))
}

/// The ten name-lists of a KEXINIT payload (message byte, 16-byte cookie, lists).
fn parse_kexinit(payload: &[u8]) -> Option<Vec<Vec<String>>> {
    if payload.first() != Some(&MSG_KEXINIT) {
        return None;
    }
    let mut at = 17;
    let mut lists = Vec::new();
    for _ in 0..10 {
        let len = u32::from_be_bytes(payload.get(at..at + 4)?.try_into().ok()?) as usize;
        let text = std::str::from_utf8(payload.get(at + 4..at + 4 + len)?).ok()?;
        lists.push(
            text.split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        );
        at += 4 + len;
    }
    Some(lists)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_name_lists_of_a_kexinit() {
        let mut p = vec![MSG_KEXINIT];
        p.extend([7u8; 16]);
        for list in [
            "sntrup761x25519-sha512,mlkem768x25519-sha256",
            "ssh-ed25519",
        ]
        .iter()
        .chain(["a"; 8].iter())
        {
            p.extend((list.len() as u32).to_be_bytes());
            p.extend(list.as_bytes());
        }
        let lists = parse_kexinit(&p).unwrap();
        assert_eq!(
            lists[0],
            ["sntrup761x25519-sha512", "mlkem768x25519-sha256"]
        );
        assert_eq!(lists[1], ["ssh-ed25519"]);
        assert_eq!(lists.len(), 10);
        assert!(parse_kexinit(&p[..30]).is_none());
    }
}
