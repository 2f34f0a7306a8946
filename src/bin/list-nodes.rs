//! `list-nodes`: parse the flags, call the library, exit with the error's code.
use clap::Parser;
use provision::cli::{run_list, ListArgs};

fn main() {
    let args = ListArgs::parse();
    provision::exit::run("list-nodes", || run_list(args))
}
