//! The capkind manager: runs the provider's controllers against the management cluster in
//! KUBECONFIG (or the in-cluster configuration) and the Docker engine in DOCKER_HOST.

use clap::{CommandFactory, Parser};

use capkind::manager::{self, Flags};

fn main() {
    // Before the runtime's threads exist: each would otherwise get an arena of its own.
    few_malloc_arenas();
    let flags = Flags::parse();
    if let Err(message) = flags.validate() {
        Flags::command()
            .error(clap::error::ErrorKind::ValueValidation, message)
            .exit();
    }
    // Install the one TLS crypto provider before any client is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("capkind: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(manager::run(flags)) {
        eprintln!("capkind: {e}");
        std::process::exit(1);
    }
}

/// Caps glibc's malloc at two arenas. By default every thread that allocates gets an arena of
/// its own, up to eight per CPU, and each keeps the memory it once held: the runtime's workers
/// and its blocking threads (DNS lookups, file reads) multiply the manager's heap for no gain,
/// since it waits on the API server and Docker rather than allocating hard on many threads
/// (issue 18: peak RSS at 100 machines; docs/performance.md). `MALLOC_ARENA_MAX` in the
/// environment still decides when it is set.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn few_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    // SAFETY: mallopt only sets one of malloc's tunables; it is called before any other thread
    // of this process exists, so no allocation runs beside it.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn few_malloc_arenas() {}
