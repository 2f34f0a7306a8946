//! Waiting for a node's SSH: TCP port open → SSH banner → authentication, with backoff and
//! jitter against one deadline. A host-key refusal or a rejected login is final at once; only
//! "not up yet" is retried. The connection keeps how long each phase took ([`Connection::
//! phases`]): until the port first answered, until the first good banner, until logged in.

use super::{hostkey, pump::KEEPALIVE_SECS, Connection, RemotePaths, Target};
use crate::error::{Error, Result};
use crate::output;
use rand::Rng;
use ssh2::Session;
use std::fmt;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// One try's limit for TCP connect and the handshake, so a stuck try is retried.
const TRY_LIMIT: Duration = Duration::from_secs(15);
/// Bound on blocking SSH calls once connected (opening channels, closing them).
const SESSION_TIMEOUT_MS: u32 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Tcp,
    Banner,
    Auth,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Tcp => "TCP port open",
            Phase::Banner => "SSH banner",
            Phase::Auth => "authentication",
        })
    }
}

enum Failure {
    /// Not up yet: try again.
    Retry(Phase, String),
    /// Final.
    Fatal(Error),
}

/// Connects and authenticates to `target`, retrying until `deadline` while the node is not up
/// yet. Each phase (TCP port open → SSH banner → authentication) is announced once through
/// `output::status`. Between tries it backs off (100 ms doubling to 2 s, with jitter) and asks
/// `still_there`; `Ok(false)` (the provider says the node is gone) ends with `Error::Deploy`.
/// A host-key refusal or a rejected login after a good banner is an `Error::Deploy` at once,
/// naming the user, address and keys tried. The deadline passing is `Error::Timeout` naming the
/// node, the phase it was stuck in and the address.
pub fn connect(
    target: &Target,
    deadline: Instant,
    still_there: &mut dyn FnMut() -> Result<bool>,
) -> Result<Connection> {
    connect_timed(target, deadline, still_there, &mut Vec::new())
}

/// [`connect`], and on failure the phases it got through in `reached`: each finished one
/// (`tcp`, `banner`) with its time, then the one it was stuck in, marked failed, with the time
/// spent in it — so a failed deploy's phases say where it waited.
pub fn connect_timed(
    target: &Target,
    deadline: Instant,
    still_there: &mut dyn FnMut() -> Result<bool>,
    reached: &mut Vec<crate::phases::Phase>,
) -> Result<Connection> {
    let started = Instant::now();
    let mut announced: Option<Phase> = None;
    // when the banner and the auth phases were first entered
    let mut entered: [Option<Instant>; 2] = [None, None];
    let r = tries(
        target,
        deadline,
        still_there,
        started,
        &mut announced,
        &mut entered,
    );
    if r.is_err() {
        *reached = stuck_phases(started, announced, entered, Instant::now());
    }
    r
}

/// The finished phases and the one a failed connect was stuck in.
fn stuck_phases(
    started: Instant,
    announced: Option<Phase>,
    entered: [Option<Instant>; 2],
    end: Instant,
) -> Vec<crate::phases::Phase> {
    use crate::phases::Phase as Timed;
    let mut out = Vec::new();
    let mut from = started;
    for (kind, at) in [("tcp", entered[0]), ("banner", entered[1])] {
        if let Some(at) = at {
            out.push(Timed::new(kind, at.saturating_duration_since(from)));
            from = at;
        }
    }
    let kind = match announced {
        None | Some(Phase::Tcp) => "tcp",
        Some(Phase::Banner) => "banner",
        Some(Phase::Auth) => "auth",
    };
    let mut stuck = Timed::new(kind, end.saturating_duration_since(from));
    stuck.failed = true;
    out.push(stuck);
    out
}

fn tries(
    target: &Target,
    deadline: Instant,
    still_there: &mut dyn FnMut() -> Result<bool>,
    started: Instant,
    announced: &mut Option<Phase>,
    entered: &mut [Option<Instant>; 2],
) -> Result<Connection> {
    let addr = crate::address::with_port(&target.host, target.port);
    let mut warned = false;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let mut progress = Progress {
            announced: &mut *announced,
            entered: &mut *entered,
        };
        let (phase, why) = match attempt(target, &addr, deadline, &mut progress, &mut warned) {
            Ok(mut conn) => {
                let end = Instant::now();
                let banner = entered[0].unwrap_or(end);
                let auth = entered[1].unwrap_or(end);
                conn.phases = [
                    banner.saturating_duration_since(started),
                    auth.saturating_duration_since(banner),
                    end.saturating_duration_since(auth),
                ];
                return Ok(conn);
            }
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retry(phase, why)) => (phase, why),
        };
        output::debug(&format!("{}: {phase}: {why}", target.node));
        let timeout = || {
            Error::Timeout(format!(
                "{}: SSH not ready after {}s: stuck at {phase} on {addr}{} ({why})",
                target.node,
                started.elapsed().as_secs(),
                target
                    .jump
                    .as_ref()
                    .map(|j| format!(" through jump host {}", j.label()))
                    .unwrap_or_default()
            ))
        };
        if Instant::now() >= deadline {
            return Err(timeout());
        }
        if !still_there()? {
            return Err(Error::deploy(
                &target.node,
                format!("node is gone (while waiting for {phase} on {addr})"),
            ));
        }
        let jitter = rand::thread_rng().gen_range(0.8..1.2);
        let pause = backoff.mul_f64(jitter);
        let left = deadline.saturating_duration_since(Instant::now());
        std::thread::sleep(pause.min(left));
        if Instant::now() >= deadline {
            return Err(timeout());
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// What the tries so far reached: the last phase announced, and when the banner and the auth
/// phases were first entered.
struct Progress<'a> {
    announced: &'a mut Option<Phase>,
    entered: &'a mut [Option<Instant>; 2],
}

fn attempt(
    target: &Target,
    addr: &str,
    deadline: Instant,
    progress: &mut Progress<'_>,
    warned: &mut bool,
) -> std::result::Result<Connection, Failure> {
    let mut enter = |phase: Phase| {
        if progress.announced.map_or(true, |a| a < phase) {
            *progress.announced = Some(phase);
            match phase {
                Phase::Tcp => {}
                Phase::Banner => progress.entered[0] = Some(Instant::now()),
                Phase::Auth => progress.entered[1] = Some(Instant::now()),
            }
            let msg = match phase {
                Phase::Tcp => match &target.jump {
                    Some(j) => format!(
                        "waiting for SSH port {addr} through jump host {}",
                        j.label()
                    ),
                    None => format!("waiting for SSH port {addr}"),
                },
                Phase::Banner => format!("{addr} is open, waiting for the SSH banner"),
                Phase::Auth => format!("authenticating as {} on {addr}", target.user),
            };
            output::status(&target.node, &msg);
        }
    };
    let left = || deadline.saturating_duration_since(Instant::now());

    enter(Phase::Tcp);
    let retry = |phase, e: &dyn fmt::Display| Failure::Retry(phase, e.to_string());
    let (link, peer) = match &target.jump {
        Some(jump) => {
            let tunnel = jump
                .tunnel(&target.node, &target.host, target.port, deadline)
                .map_err(|e| match e {
                    super::jump::TunnelError::Fatal(e) => Failure::Fatal(e),
                    super::jump::TunnelError::Retry(why) => Failure::Retry(Phase::Tcp, why),
                })?;
            (Link::Tunnel(tunnel), None)
        }
        None => {
            let tcp = tcp_connect(target, left)?;
            let peer = tcp.peer_addr().map_err(|e| retry(Phase::Tcp, &e))?;
            tcp.set_nodelay(true).map_err(|e| retry(Phase::Tcp, &e))?;
            (Link::Tcp(tcp), Some(peer))
        }
    };
    let fd = link.as_raw_fd();
    // the node's own messages say which hop failed when a bastion is in between
    let hop = match &target.jump {
        Some(j) => format!("through jump host {}: ", j.label()),
        None => String::new(),
    };

    enter(Phase::Banner);
    let mut session = Session::new().map_err(|e| {
        Failure::Fatal(Error::unexpected(format!(
            "cannot create an SSH session: {e}"
        )))
    })?;
    session.set_tcp_stream(link);
    session.set_timeout(ms(left().min(TRY_LIMIT)));
    let kex_started = Instant::now();
    session.handshake().map_err(|e| {
        // Nothing in common with the server is final: say what each side offers.
        match peer
            .filter(|_| super::negotiate::is_kex_failure(&e))
            .and_then(|peer| super::negotiate::mismatch(&session, peer))
        {
            Some(why) => Failure::Fatal(Error::deploy(
                &target.node,
                format!("SSH to {addr} cannot be negotiated: {why}"),
            )),
            None => retry(Phase::Banner, &e),
        }
    })?;
    // -v: what the key exchange costs (issue 20 measures its share of a deploy)
    output::debug(&format!(
        "{}: SSH handshake (banner, {} key exchange, cipher {}) took {} ms",
        target.node,
        session.methods(ssh2::MethodType::Kex).unwrap_or("?"),
        session.methods(ssh2::MethodType::CryptCs).unwrap_or("?"),
        kex_started.elapsed().as_millis()
    ));
    let (blob, _) = session
        .host_key()
        .ok_or_else(|| Failure::Retry(Phase::Banner, "no host key".into()))?;
    hostkey::check(target, blob, warned)
        .map_err(|m| Failure::Fatal(Error::deploy(&target.node, format!("{hop}{m}"))))?;

    enter(Phase::Auth);
    session.set_timeout(ms(left().min(TRY_LIMIT)));
    authenticate(&session, target, addr).map_err(|f| match f {
        Failure::Fatal(Error::Deploy {
            node,
            message,
            source,
        }) => Failure::Fatal(Error::Deploy {
            node,
            message: format!("{hop}{message}"),
            source,
        }),
        other => other,
    })?;
    session.set_timeout(SESSION_TIMEOUT_MS);
    session.set_keepalive(true, KEEPALIVE_SECS);
    output::debug(&format!(
        "{}: authenticated as {} on {addr}",
        target.node, target.user
    ));
    Ok(Connection {
        session,
        fd,
        node: target.node.clone(),
        user: target.user.clone(),
        addr: addr.to_string(),
        channels: 0,
        paths: RemotePaths::default(),
        phases: [Duration::ZERO; 3],
    })
}

/// The socket a session runs on: a TCP connection to the node, or one end of a tunnel through
/// a jump host.
enum Link {
    Tcp(TcpStream),
    Tunnel(UnixStream),
}

impl AsRawFd for Link {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Link::Tcp(s) => s.as_raw_fd(),
            Link::Tunnel(s) => s.as_raw_fd(),
        }
    }
}

/// A TCP connection to one of the target's addresses, each try bounded by [`TRY_LIMIT`].
fn tcp_connect(
    target: &Target,
    left: impl Fn() -> Duration,
) -> std::result::Result<TcpStream, Failure> {
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| Failure::Retry(Phase::Tcp, e.to_string()))?
        .collect();
    let mut last = String::from("no address");
    for a in &addrs {
        let limit = left().min(TRY_LIMIT).max(Duration::from_millis(1));
        match TcpStream::connect_timeout(a, limit) {
            Ok(s) => return Ok(s),
            Err(e) => last = e.to_string(),
        }
    }
    Err(Failure::Retry(Phase::Tcp, last))
}

fn ms(d: Duration) -> u32 {
    d.as_millis().clamp(1, u32::MAX as u128) as u32
}

/// libssh2 error codes that mean the connection itself failed (retry), not the key.
fn is_transport(e: &ssh2::Error) -> bool {
    const SOCKET_NONE: i32 = -1;
    const SOCKET_SEND: i32 = -7;
    const TIMEOUT: i32 = -9;
    const SOCKET_DISCONNECT: i32 = -13;
    const SOCKET_TIMEOUT: i32 = -30;
    const SOCKET_RECV: i32 = -43;
    matches!(e.code(), ssh2::ErrorCode::Session(c) if [SOCKET_NONE, SOCKET_SEND, TIMEOUT, SOCKET_DISCONNECT, SOCKET_TIMEOUT, SOCKET_RECV].contains(&c))
}

/// Agent first, then `identities`, then the user's default key files.
fn authenticate(
    session: &Session,
    target: &Target,
    addr: &str,
) -> std::result::Result<(), Failure> {
    let user = target.user.as_str();
    let mut tried: Vec<String> = Vec::new();
    // A transport error after keys were rejected is the server closing on too many tries:
    // that is a rejection, not "not up yet".
    let transport = |e: &ssh2::Error, tried: &[String]| {
        if tried.is_empty() {
            Some(Failure::Retry(Phase::Auth, e.to_string()))
        } else {
            None
        }
    };

    let agent_sock = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty());
    if target.use_agent && agent_sock.is_some() {
        match agent_identities(session) {
            Ok((agent, ids)) => {
                for id in &ids {
                    match agent.userauth(user, id) {
                        Ok(()) if session.authenticated() => return Ok(()),
                        Ok(()) => {}
                        Err(e) if is_transport(&e) => {
                            if let Some(f) = transport(&e, &tried) {
                                return Err(f);
                            }
                            break;
                        }
                        Err(_) => {}
                    }
                }
                tried.push(format!("ssh-agent ({} key(s))", ids.len()));
            }
            Err(e) => {
                output::debug(&format!("{}: ssh-agent unusable: {e}", target.node));
                tried.push(format!("ssh-agent (unusable: {e})"));
            }
        }
    }

    for (path, explicit) in key_files(&target.identities) {
        if !path.is_file() {
            if explicit {
                output::debug(&format!(
                    "{}: identity {} not found",
                    target.node,
                    path.display()
                ));
                tried.push(format!("{} (not found)", path.display()));
            }
            continue;
        }
        if is_encrypted(&path) {
            output::debug(&format!(
                "{}: skipping {}: encrypted (add it to ssh-agent to use it)",
                target.node,
                path.display()
            ));
            tried.push(format!("{} (encrypted, skipped)", path.display()));
            continue;
        }
        let public = PathBuf::from(format!("{}.pub", path.display()));
        let public = public.is_file().then_some(public);
        match session.userauth_pubkey_file(user, public.as_deref(), &path, None) {
            Ok(()) if session.authenticated() => return Ok(()),
            Ok(()) => tried.push(path.display().to_string()),
            Err(e) if is_transport(&e) => {
                if let Some(f) = transport(&e, &tried) {
                    return Err(f);
                }
                tried.push(format!("{} (server closed the connection)", path.display()));
                break;
            }
            Err(e) if e.message().to_ascii_lowercase().contains("unable") => {
                tried.push(format!("{} (unusable: {})", path.display(), e.message()))
            }
            Err(_) => tried.push(path.display().to_string()),
        }
    }
    let tried = if tried.is_empty() {
        "no key: no ssh-agent, no identity, no ~/.ssh/id_ed25519, id_ecdsa or id_rsa".to_string()
    } else {
        tried.join(", ")
    };
    // cloud images usually refuse root and want their own login user
    let hint = if user == "root" {
        "; if the image wants another login user (ubuntu on Ubuntu, admin on Debian, ec2-user on \
         Amazon Linux), set ssh_user in provision.toml or --ssh-user"
    } else {
        ""
    };
    Err(Failure::Fatal(Error::deploy(
        &target.node,
        format!("authentication failed for {user}@{addr}; tried: {tried}{hint}"),
    )))
}

fn agent_identities(
    session: &Session,
) -> std::result::Result<(ssh2::Agent, Vec<ssh2::PublicKey>), ssh2::Error> {
    let mut agent = session.agent()?;
    agent.connect()?;
    agent.list_identities()?;
    let ids = agent.identities()?;
    Ok((agent, ids))
}

/// Explicit identities (flagged true) then the user's default key files, without repeats.
fn key_files(identities: &[PathBuf]) -> Vec<(PathBuf, bool)> {
    let mut out: Vec<(PathBuf, bool)> = identities.iter().map(|p| (p.clone(), true)).collect();
    if let Some(home) = dirs::home_dir() {
        for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
            out.push((home.join(".ssh").join(name), false));
        }
    }
    let mut seen: Vec<PathBuf> = Vec::new();
    out.retain(|(p, _)| {
        let key = p.canonicalize().unwrap_or_else(|_| p.clone());
        let new = !seen.contains(&key);
        seen.push(key);
        new
    });
    out
}

/// True for a passphrase-protected private key (OpenSSH or PEM format).
fn is_encrypted(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    if text.contains("BEGIN OPENSSH PRIVATE KEY") {
        return ssh_key::PrivateKey::from_openssh(&text).is_ok_and(|k| k.is_encrypted());
    }
    text.contains("ENCRYPTED")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_connect_names_the_phase_it_was_stuck_in() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let p = stuck_phases(t0, Some(Phase::Tcp), [None, None], ms(700));
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].kind, p[0].failed), ("tcp", true));
        assert_eq!(p[0].duration, Duration::from_millis(700));

        let p = stuck_phases(
            t0,
            Some(Phase::Auth),
            [Some(ms(100)), Some(ms(300))],
            ms(1000),
        );
        let got: Vec<_> = p.iter().map(|p| (p.kind, p.duration, p.failed)).collect();
        assert_eq!(
            got,
            [
                ("tcp", Duration::from_millis(100), false),
                ("banner", Duration::from_millis(200), false),
                ("auth", Duration::from_millis(700), true),
            ]
        );
    }
}
