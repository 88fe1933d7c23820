//! Plain HTTP/1.0 requests to loopback ports, for probes, metrics and haproxy's stats page.

use std::io::{Read, Write};
use std::time::Duration;

/// GET `path` from 127.0.0.1:`port`: the whole response, or what went wrong (callers retry until
/// the listener is up).
pub fn get(port: u16, path: &str) -> String {
    let attempt = || -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    };
    attempt().unwrap_or_else(|e| format!("request failed: {e}"))
}

/// Whether a response has status 200.
pub fn is_ok(response: &str) -> bool {
    response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200")
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Waits until an HTTPS `url` (any certificate; curl, as a user would) answers with a body
/// containing `expected`, or panics after `timeout` with what came back last.
pub async fn wait_for_https_body(url: &str, expected: &str, timeout: Duration) {
    crate::wait::until(&format!("{url} answering"), timeout, || async {
        let out = std::process::Command::new("curl")
            .args(["-sk", "--max-time", "3", url])
            .output()
            .map_err(|e| format!("run curl: {e}"))?;
        let body = String::from_utf8_lossy(&out.stdout).to_string();
        if body.contains(expected) {
            Ok(())
        } else {
            Err(format!("curl exit {:?}: {body}", out.status.code()))
        }
    })
    .await;
}
