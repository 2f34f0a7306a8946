//! `node`: parse the flags, call the library, exit with the remote status or the error's code.
use clap::Parser;
use provision::cli::{run_node, NodeArgs};

fn main() {
    let args = NodeArgs::parse();
    provision::exit::run_status("node", || run_node(args))
}
