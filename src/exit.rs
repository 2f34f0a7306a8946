//! The one place a fatal error is printed and the process exits. Binaries call [`run`] with
//! their body; the error's variant decides the exit code. A closed stdout (for
//! `list-nodes | head`) never ends the process from library code: [`print_stdout`] notes it
//! and stops writing, the body runs to its real result, and only then does [`run`] decide —
//! a closed stdout is quiet when the body succeeded and never hides a failure's exit code.

use crate::error::{code, Error, Result};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout met a closed pipe; later writes are skipped.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Runs `body`, prints a failure as one `PROGRAM: error: ...` line on stderr, and exits.
pub fn run(program: &str, body: impl FnOnce() -> Result<()>) -> ! {
    let status = match body() {
        Ok(()) => {
            // a closed stdout at the very end is still success (`list-nodes | head`)
            let _ = io::stdout().flush();
            code::OK
        }
        // the real code, whether or not stdout was closed on the way
        Err(err) => report(program, &err),
    };
    std::process::exit(status)
}

/// As [`run`], for a body whose success carries the exit status to pass through (`node exec`:
/// the remote command's).
pub fn run_status(program: &str, body: impl FnOnce() -> Result<i32>) -> ! {
    let status = match body() {
        Ok(status) => {
            let _ = io::stdout().flush();
            status
        }
        Err(err) => report(program, &err),
    };
    std::process::exit(status)
}

/// True when a write to stdout found the reader gone.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Prints `err` (first line prefixed with the program name) and returns its exit code.
pub fn report(program: &str, err: &Error) -> i32 {
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "{program}: error: {err}");
    err.code()
}

/// Writes to stdout. A closed pipe is not an error here (nor a panic, nor an exit): it is
/// noted ([`stdout_closed`]) and the rest of stdout is dropped, so the caller still finishes
/// its work (reports, cleanup) and [`run`] exits with the code that work earned.
pub fn print_stdout(text: &str) -> Result<()> {
    if stdout_closed() {
        return Ok(());
    }
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => Err(Error::io("stdout", e)),
    }
}
