//! The `glmix` command line: a thin front end over the library.

mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    if let Err(e) = cli::run(args) {
        eprintln!("glmix: error: {e:#}");
        std::process::exit(1);
    }
}
