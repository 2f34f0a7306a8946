//! Non-blocking I/O on one exec channel: writes stdin while reading stdout and stderr, so no
//! side can deadlock on a full window, and waits in poll(2) on the session's socket for the
//! direction libssh2 is blocked on — never a sleep loop. Keepalives go out while a long
//! script is silent.

use ssh2::{BlockDirections, Channel, Session};
use std::io::{self, Read, Write};
use std::os::unix::io::RawFd;
use std::time::{Duration, Instant};

const LIBSSH2_ERROR_EAGAIN: i32 = -37;

/// Seconds between SSH keepalives while waiting for output.
pub(super) const KEEPALIVE_SECS: u32 = 30;

/// Sends `input` as stdin (then EOF; read in chunks as the channel takes them, so it may be
/// generated while it is sent; its read error stops the pump before EOF) and hands stdout (`false`) and stderr (`true`) data to
/// `sink` as it arrives. Returns at EOF on both streams, or — once `sink` returned true (it has
/// everything it wants) — at EOF or after `grace`, whichever comes first (a daemon started by a
/// script may keep the channel open).
pub(super) fn pump(
    session: &Session,
    fd: RawFd,
    channel: &mut Channel,
    input: &mut dyn Read,
    grace: Option<Duration>,
    sink: &mut dyn FnMut(bool, &[u8]) -> bool,
) -> io::Result<()> {
    session.set_blocking(false);
    let result = pump_inner(session, fd, channel, input, grace, sink);
    session.set_blocking(true);
    result
}

fn pump_inner(
    session: &Session,
    fd: RawFd,
    channel: &mut Channel,
    input: &mut dyn Read,
    grace: Option<Duration>,
    sink: &mut dyn FnMut(bool, &[u8]) -> bool,
) -> io::Result<()> {
    let mut buf = vec![0u8; 32 * 1024];
    // input read but not yet taken by the channel: pending[written..filled]; allocated on the
    // first read and freed at the input's end (a pool's nodes running scripts hold none)
    let mut pending = Vec::new();
    let (mut written, mut filled) = (0, 0);
    let mut input_done = false;
    let mut eof_sent = false;
    let mut open = [true, true];
    let mut stop_at: Option<Instant> = None;
    let mut buffered_rounds = 0;
    loop {
        let mut progressed = false;
        if written == filled && !input_done {
            (written, filled) = (0, 0);
            pending.resize(32 * 1024, 0);
            loop {
                match input.read(&mut pending) {
                    Ok(0) => {
                        input_done = true;
                        pending = Vec::new();
                    }
                    Ok(n) => filled = n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
                break;
            }
        }
        if written < filled {
            match channel.write(&pending[written..filled]) {
                Ok(n) => {
                    written += n;
                    progressed |= n > 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The remote side stopped reading (its command failed early): what it says on
                // stdout/stderr and its exit status tell why.
                Err(_) => {
                    written = filled;
                    input_done = true;
                    eof_sent = true;
                }
            }
        } else if !eof_sent {
            match channel.send_eof() {
                Ok(()) => {
                    eof_sent = true;
                    progressed = true;
                }
                Err(e) if e.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_EAGAIN) => {}
                Err(_) => eof_sent = true,
            }
        }
        for (i, is_err) in [(0, false), (1, true)] {
            // Drain this stream until it would block.
            while open[i] {
                let r = if is_err {
                    channel.stderr().read(&mut buf)
                } else {
                    channel.read(&mut buf)
                };
                match r {
                    Ok(0) if channel.eof() => open[i] = false,
                    Ok(0) => break,
                    Ok(n) => {
                        progressed = true;
                        if sink(is_err, &buf[..n]) && stop_at.is_none() {
                            stop_at = grace.map(|g| Instant::now() + g);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        if !open[0] && !open[1] {
            return Ok(());
        }
        let now = Instant::now();
        if stop_at.is_some_and(|t| now >= t) {
            return Ok(());
        }
        if !progressed {
            // libssh2 reads every packet that has arrived while serving one stream, so data or
            // the EOF for the other may now wait in its buffer with nothing more coming on the
            // socket: poll(2) would sleep until the next keepalive (30 s). Go round once more
            // instead; the reads then take it (bounded, so a miscount cannot spin).
            if buffered_rounds < 2 && buffered(channel, &open) {
                buffered_rounds += 1;
                continue;
            }
            wait(session, fd, stop_at.map(|t| t - now))?;
        }
        buffered_rounds = 0;
    }
}

/// Data or an EOF for a stream still open already sits in libssh2's buffer.
fn buffered(channel: &Channel, open: &[bool; 2]) -> bool {
    (open[0] || open[1]) && (channel.read_window().available > 0 || channel.eof())
}

/// Waits until the socket is ready in the direction libssh2 is blocked on, a keepalive is due,
/// or `limit` passed.
fn wait(session: &Session, fd: RawFd, limit: Option<Duration>) -> io::Result<()> {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let mut events = PollFlags::POLLIN;
    if matches!(
        session.block_directions(),
        BlockDirections::Outbound | BlockDirections::Both
    ) {
        events |= PollFlags::POLLOUT;
    }
    let next_keepalive = session.keepalive_send().unwrap_or(KEEPALIVE_SECS).max(1);
    let mut ms = next_keepalive as u64 * 1000;
    if let Some(l) = limit {
        ms = ms.min(l.as_millis() as u64 + 1);
    }
    // SAFETY: `fd` is the session's socket, which the caller's `session` keeps open for the
    // whole call; the borrow does not outlive this frame.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
    match nix::poll::poll(&mut [PollFd::new(fd, events)], timeout) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Closes the channel (blocking, bounded by the session timeout) and returns the remote exit
/// status when the remote side finished (sent EOF).
pub(super) fn finish(session: &Session, channel: &mut Channel) -> io::Result<Option<i32>> {
    session.set_blocking(true);
    let remote_eof = channel.eof();
    channel.close()?;
    if remote_eof {
        channel.wait_close()?;
        return Ok(Some(channel.exit_status()?));
    }
    Ok(None)
}
