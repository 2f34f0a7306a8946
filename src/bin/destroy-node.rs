//! `destroy-node`: parse the flags, call the library, exit with the error's code.
use clap::Parser;
use provision::cli::{run_destroy, DestroyArgs};

fn main() {
    let args = DestroyArgs::parse();
    provision::exit::run("destroy-node", || run_destroy(args))
}
