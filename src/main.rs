//! The `glmix` command line: a thin front end over the library.

mod cli;

use clap::Parser;

/// mimalloc keeps freed pages for reuse: the solver's many small per-entity buffers and the
/// large packed batches are allocated without a system call or page fault each time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Hand the pages mimalloc holds free back to the system: called between the stages of a
/// run (after the records are read, after training), whose transient buffers — decoded
/// batches, lines, packed parts — would otherwise stay resident beside what the next
/// stage allocates, and add to the peak.
pub(crate) fn release_freed_memory() {
    // SAFETY: mi_collect only walks mimalloc's own free lists.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// mimalloc's `mi_option_purge_delay` (the same position in its v2 and v3 option lists;
/// the Rust bindings do not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keep the pages mimalloc holds free instead of handing them back after its purge delay:
/// for a stream, whose mini-batches free and allocate about the same memory over and over,
/// purged pages came straight back as fresh (zeroed, 2 MiB transparent-huge) pages, and
/// zeroing them took a quarter to two fifths of a per-record run's time. The resident set
/// then stays at the run's peak; [`release_freed_memory`] no longer returns pages.
pub(crate) fn keep_freed_memory() {
    // SAFETY: setting an option is thread-safe in mimalloc.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

fn main() {
    // Mesa's Vulkan device-select layer prints warnings on headless hosts and glmix picks
    // its adapter itself; turn the layer off unless the user set it. Done first, while the
    // process has a single thread.
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
    // redb panics on some damaged pages; the store turns that into an error naming the
    // file (glmix::store::guarded), so its panic message is not printed as well.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.location().is_some_and(|l| l.file().contains("/redb-")) {
            default_hook(info);
        }
    }));
    let args = cli::Cli::parse();
    if let Err(e) = cli::run(args) {
        eprintln!("glmix: error: {e:#}");
        std::process::exit(1);
    }
}
