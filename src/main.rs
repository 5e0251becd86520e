//! The `glmix` command line: a thin front end over the library.

mod cli;

use clap::Parser;

/// mimalloc keeps freed pages for reuse: the solver's many small per-entity buffers and the
/// large packed batches are allocated without a system call or page fault each time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = cli::Cli::parse();
    if let Err(e) = cli::run(args) {
        eprintln!("glmix: error: {e:#}");
        std::process::exit(1);
    }
}
