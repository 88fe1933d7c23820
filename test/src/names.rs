//! Names unique to this test process. Every container, network and Cluster a test creates is
//! named with [`token`] first, which is how the watchdog finds what to clean up.

use std::sync::atomic::{AtomicU32, Ordering};

/// A short token unique among the running test processes: `ct<pid>`.
pub fn token() -> String {
    format!("ct{}", std::process::id())
}

/// A fresh DNS-1123 name: `<token>-<prefix><n>`.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!(
        "{}-{prefix}{}",
        token(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
