//! The bridge between node sessions and a bastion's direct-tcpip channels. A libssh2 session
//! needs a socket, and a bastion session is not thread safe: ONE pump thread owns the bastion
//! session (non-blocking) and serves every channel through it. Each node session gets one end
//! of a Unix socket pair; the thread copies bytes between the other end and the node's
//! channel, with a bounded buffer each way, and waits in poll(2) on the bastion socket, a
//! wake-up socket and the pair ends — never a sleep loop.

use ssh2::{BlockDirections, Channel, ErrorCode, Session};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::Instant;

const LIBSSH2_ERROR_EAGAIN: i32 = -37;
/// Bytes buffered per direction per channel; a full buffer stops reading that side.
const BUFFER: usize = 64 * 1024;
/// Seconds between keepalives to the bastion while nothing moves.
const KEEPALIVE_SECS: u32 = 30;

/// A request to the pump thread: open a channel to `host:port` and bridge it to `local`.
pub(super) struct Open {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) local: UnixStream,
    pub(super) reply: mpsc::Sender<Result<(), String>>,
    /// The caller stops waiting then: an open not begun by then is dropped.
    pub(super) until: Instant,
}

/// The handle the callers keep: requests go through `requests`, and a byte on `wake` makes the
/// thread look at them. Dropping it lets the thread end once its channels closed.
pub(super) struct Bridge {
    requests: mpsc::Sender<Open>,
    wake: UnixStream,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bridge {
    /// Starts the pump thread, which owns `session` (authenticated, on socket `fd`).
    pub(super) fn start(session: Session, fd: RawFd, label: String) -> io::Result<Bridge> {
        let (wake, wake_rx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        let (requests, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("jump-bridge".into())
            .spawn(move || {
                let mut pump = Pump {
                    session,
                    fd,
                    wake: wake_rx,
                    requests: rx,
                    pending: Vec::new(),
                    begun: false,
                    tunnels: Vec::new(),
                    closing: false,
                };
                if let Err(e) = pump.run() {
                    crate::output::debug(&format!("jump host {label}: bridge ended: {e}"));
                }
                for p in pump.pending.drain(..) {
                    let _ = p.reply.send(Err("the jump host connection closed".into()));
                }
                pump.session.set_blocking(true);
                let _ = pump.session.disconnect(None, "provision: done", None);
            })?;
        Ok(Bridge {
            requests,
            wake,
            thread: Some(thread),
        })
    }

    /// Hands `open` to the thread; `false` when the thread is gone (the bastion connection
    /// was lost).
    pub(super) fn send(&self, open: Open) -> bool {
        if self.thread.as_ref().map_or(true, |t| t.is_finished()) {
            return false;
        }
        self.requests.send(open).is_ok() && (&self.wake).write_all(&[1]).is_ok()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.wake.shutdown(std::net::Shutdown::Both);
        // the thread ends once the node sessions closed their ends; never wait for it here
        drop(self.thread.take());
    }
}

/// One bridged channel.
struct Tunnel {
    channel: Channel,
    local: UnixStream,
    /// Read from `local`, not yet written to the channel.
    to_channel: Vec<u8>,
    /// Read from the channel, not yet written to `local`.
    to_local: Vec<u8>,
    local_eof: bool,
    eof_sent: bool,
    channel_eof: bool,
    local_shut: bool,
    /// Done moving bytes; closing the channel.
    closing: bool,
}

struct Pump {
    session: Session,
    fd: RawFd,
    wake: UnixStream,
    requests: mpsc::Receiver<Open>,
    /// Opens waiting for their turn: libssh2 opens one channel at a time, in order.
    pending: Vec<Open>,
    /// The first pending open was begun (libssh2 is waiting for the bastion's answer): it
    /// must be finished before another one starts.
    begun: bool,
    tunnels: Vec<Tunnel>,
    /// Every handle is gone: end once the tunnels are.
    closing: bool,
}

fn eagain(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::Session(LIBSSH2_ERROR_EAGAIN)
}

impl Pump {
    fn run(&mut self) -> io::Result<()> {
        self.session.set_blocking(false);
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let mut progressed = self.take_requests();
            progressed |= self.open_next();
            for t in &mut self.tunnels {
                progressed |= t.step(&mut buf);
            }
            self.tunnels.retain(|t| !t.closed());
            if self.closing && self.pending.is_empty() && self.tunnels.is_empty() {
                return Ok(());
            }
            if !progressed && !self.ready() {
                self.wait()?;
            }
        }
    }

    /// Reads wake-ups and new requests; false when there were none.
    fn take_requests(&mut self) -> bool {
        let mut any = false;
        let mut b = [0u8; 64];
        loop {
            match (&self.wake).read(&mut b) {
                Ok(0) => {
                    self.closing = true;
                    break;
                }
                Ok(_) => any = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        while let Ok(open) = self.requests.try_recv() {
            self.pending.push(open);
            any = true;
        }
        any
    }

    /// Tries to open the oldest pending channel.
    fn open_next(&mut self) -> bool {
        // a node whose caller gave up (its try timed out) is not asked for any more; a retry
        // queued its own request
        let mut dropped = false;
        if !self.begun {
            let now = Instant::now();
            let before = self.pending.len();
            self.pending.retain(|o| o.until > now);
            dropped = self.pending.len() != before;
        }
        let Some(open) = self.pending.first() else {
            return dropped;
        };
        let result = self
            .session
            .channel_direct_tcpip(&open.host, open.port, None);
        self.begun = matches!(&result, Err(e) if eagain(e));
        match result {
            Err(e) if eagain(&e) => dropped,
            Err(e) => {
                let open = self.pending.remove(0);
                let _ = open.reply.send(Err(e.message().to_string()));
                true
            }
            Ok(channel) => {
                let open = self.pending.remove(0);
                let ok = open.local.set_nonblocking(true).is_ok();
                if ok && open.reply.send(Ok(())).is_ok() {
                    self.tunnels.push(Tunnel {
                        channel,
                        local: open.local,
                        to_channel: Vec::new(),
                        to_local: Vec::new(),
                        local_eof: false,
                        eof_sent: false,
                        channel_eof: false,
                        local_shut: false,
                        closing: false,
                    });
                } else {
                    let mut channel = channel;
                    let _ = channel.close();
                }
                true
            }
        }
    }

    /// True when libssh2 already holds something a tunnel can use without socket I/O: data or
    /// an EOF read for a channel while serving another, or window space a blocked write waits
    /// for. Polling then would wait for bytes that already arrived.
    fn ready(&self) -> bool {
        self.tunnels.iter().any(|t| {
            !t.closing
                && ((t.to_local.len() < BUFFER && t.channel.read_window().available > 0)
                    || (!t.channel_eof && t.channel.eof())
                    || (!t.to_channel.is_empty() && t.channel.write_window().remaining > 0))
        })
    }

    /// Waits for the bastion socket (in the direction libssh2 is blocked on), a wake-up, or a
    /// local end that can be read or written; at most until the next keepalive is due.
    fn wait(&mut self) -> io::Result<()> {
        use nix::poll::{PollFd, PollFlags, PollTimeout};
        let mut events = PollFlags::POLLIN;
        if matches!(
            self.session.block_directions(),
            BlockDirections::Outbound | BlockDirections::Both
        ) {
            events |= PollFlags::POLLOUT;
        }
        let next = self
            .session
            .keepalive_send()
            .unwrap_or(KEEPALIVE_SECS)
            .max(1);
        // SAFETY: `fd` is the bastion session's socket, owned by `self.session`, which lives
        // for the whole call; the borrow does not outlive this frame.
        let bastion = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let mut fds = vec![PollFd::new(bastion, events)];
        if !self.closing {
            fds.push(PollFd::new(self.wake.as_fd(), PollFlags::POLLIN));
        }
        for t in &self.tunnels {
            let mut ev = PollFlags::empty();
            if !t.local_eof && t.to_channel.len() < BUFFER {
                ev |= PollFlags::POLLIN;
            }
            if !t.to_local.is_empty() {
                ev |= PollFlags::POLLOUT;
            }
            if !ev.is_empty() {
                fds.push(PollFd::new(t.local.as_fd(), ev));
            }
        }
        let timeout = PollTimeout::try_from(u64::from(next) * 1000).unwrap_or(PollTimeout::MAX);
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Tunnel {
    /// Moves what can move without blocking; true when anything did.
    fn step(&mut self, buf: &mut [u8]) -> bool {
        if self.closing {
            return self.close();
        }
        let mut progressed = false;
        // node session → channel
        if !self.local_eof && self.to_channel.len() < BUFFER {
            let room = (BUFFER - self.to_channel.len()).min(buf.len());
            match self.local.read(&mut buf[..room]) {
                Ok(0) => {
                    self.local_eof = true;
                    progressed = true;
                }
                Ok(n) => {
                    self.to_channel.extend_from_slice(&buf[..n]);
                    progressed = true;
                }
                Err(e) if would_block(&e) => {}
                Err(_) => return self.fail(),
            }
        }
        match flush(&mut self.to_channel, &mut self.channel) {
            Ok(moved) => progressed |= moved,
            Err(_) => return self.fail(),
        }
        if self.local_eof && self.to_channel.is_empty() && !self.eof_sent {
            match self.channel.send_eof() {
                Ok(()) => {
                    self.eof_sent = true;
                    progressed = true;
                }
                Err(e) if eagain(&e) => {}
                Err(_) => return self.fail(),
            }
        }
        // channel → node session
        while !self.channel_eof && self.to_local.len() < BUFFER {
            let room = (BUFFER - self.to_local.len()).min(buf.len());
            match self.channel.read(&mut buf[..room]) {
                Ok(0) if self.channel.eof() => {
                    self.channel_eof = true;
                    progressed = true;
                }
                Ok(0) => break,
                Ok(n) => {
                    self.to_local.extend_from_slice(&buf[..n]);
                    progressed = true;
                }
                Err(e) if would_block(&e) => break,
                Err(_) => return self.fail(),
            }
        }
        match flush(&mut self.to_local, &mut self.local) {
            Ok(moved) => progressed |= moved,
            Err(_) => return self.fail(),
        }
        if self.channel_eof && self.to_local.is_empty() && !self.local_shut {
            let _ = self.local.shutdown(std::net::Shutdown::Write);
            self.local_shut = true;
            progressed = true;
        }
        // the node session closed its socket (libssh2 never half-closes): the channel is done
        if self.local_eof && self.eof_sent {
            self.closing = true;
            progressed |= self.close();
        }
        progressed
    }

    /// Something broke: close the channel and the local end.
    fn fail(&mut self) -> bool {
        let _ = self.local.shutdown(std::net::Shutdown::Both);
        self.closing = true;
        self.close();
        true
    }

    /// Sends the channel's close; true once sent (the tunnel can then be dropped).
    fn close(&mut self) -> bool {
        match self.channel.close() {
            Err(e) if eagain(&e) => false,
            _ => {
                self.local_shut = true;
                self.local_eof = true;
                self.eof_sent = true;
                self.channel_eof = true;
                true
            }
        }
    }

    fn closed(&self) -> bool {
        self.closing && self.channel_eof && self.local_shut && self.eof_sent && self.local_eof
    }
}

/// Writes what `pending` holds to `out` until it would block; true when anything was written.
fn flush(pending: &mut Vec<u8>, out: &mut impl Write) -> io::Result<bool> {
    let mut moved = false;
    while !pending.is_empty() {
        match out.write(pending) {
            Ok(0) => break,
            Ok(n) => {
                pending.drain(..n);
                moved = true;
            }
            Err(e) if would_block(&e) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(moved)
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
