//! `deploy-node`: parse the flags, call the library, exit with the error's code.
use clap::Parser;
use provision::cli::{run_deploy, DeployArgs};

fn main() {
    let args = DeployArgs::parse();
    provision::exit::run("deploy-node", || run_deploy(args))
}
