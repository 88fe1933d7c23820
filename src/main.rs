//! The capkind manager: runs the provider's controllers against the management cluster in
//! KUBECONFIG (or the in-cluster configuration) and the Docker engine in DOCKER_HOST.

use clap::{CommandFactory, Parser};

use capkind::manager::{self, Flags};

#[tokio::main]
async fn main() {
    let flags = Flags::parse();
    if let Err(message) = flags.validate() {
        Flags::command()
            .error(clap::error::ErrorKind::ValueValidation, message)
            .exit();
    }
    // Install the one TLS crypto provider before any client is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Err(e) = manager::run(flags).await {
        eprintln!("capkind: {e}");
        std::process::exit(1);
    }
}
