//! The one place a fatal error is printed and the process exits. Binaries call [`run`] with
//! their body; the error's variant decides the exit code. A broken pipe on stdout (for
//! `list-nodes | head`) is a quiet success.

use crate::error::{code, Error, Result};
use std::io::{self, Write};

/// Runs `body`, prints a failure as one `PROGRAM: error: ...` line on stderr, and exits.
pub fn run(program: &str, body: impl FnOnce() -> Result<()>) -> ! {
    let status = match body() {
        Ok(()) => {
            // a closed stdout at the very end is still success (`list-nodes | head`)
            let _ = io::stdout().flush();
            code::OK
        }
        Err(err) => report(program, &err),
    };
    std::process::exit(status)
}

/// Prints `err` (first line prefixed with the program name) and returns its exit code.
pub fn report(program: &str, err: &Error) -> i32 {
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "{program}: error: {err}");
    err.code()
}

/// Writes to stdout, turning a closed pipe into a quiet stop rather than a panic.
pub fn print_stdout(text: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(code::OK),
        Err(e) => Err(Error::io("stdout", e)),
    }
}
