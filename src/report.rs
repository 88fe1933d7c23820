//! What a user is shown of a failure, in conditions, events and logs: whole lines as a terminal
//! shows them, cut to what the API accepts at line boundaries (marked as cut), and never the
//! content of a key, token or certificate. Pure.

/// The most an Event's note may hold: events.k8s.io/v1 refuses longer notes
/// ("can have at most 1024 characters"; the API server counts bytes).
pub const EVENT_NOTE_LIMIT: usize = 1024;

/// The most a condition's message holds (Cluster API's v1beta2 conditions allow 10240).
pub const CONDITION_MESSAGE_LIMIT: usize = 10240;

/// How many of a failed command's last output lines a condition keeps.
pub const OUTPUT_LINES: usize = 10;

/// The line that stands for the lines a cut removed.
fn cut_marker(lines: usize) -> String {
    let s = if lines == 1 { "" } else { "s" };
    format!("[{lines} line{s} cut]")
}

/// `text` within `limit` bytes: unchanged when it fits; otherwise its first line (the summary:
/// which command failed, how), a marker line saying how many lines were cut, and as many of
/// its last lines as fit. A single line too long for the limit is shortened at its end, never
/// at its start, and marked with `…`.
pub fn fit(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let lines: Vec<&str> = text.lines().collect();
    let Some((first, rest)) = lines.split_first() else {
        return String::new();
    };
    // The marker is at most this long for any count that can occur.
    let marker_room = cut_marker(lines.len()).len() + 1;
    let head = shorten(first, limit.saturating_sub(marker_room + 1));
    let mut budget = limit.saturating_sub(head.len() + 1 + marker_room);
    let mut tail: Vec<&str> = Vec::new();
    for line in rest.iter().rev() {
        if line.len() + 1 > budget {
            break;
        }
        budget -= line.len() + 1;
        tail.push(line);
    }
    tail.reverse();
    let cut = rest.len() - tail.len();
    if head.len() + 1 + marker_room > limit {
        // No room for a marker: the summary line alone.
        return shorten(first, limit);
    }
    let mut out = head;
    if cut > 0 {
        out.push('\n');
        out.push_str(&cut_marker(cut));
    }
    for line in tail {
        out.push('\n');
        out.push_str(line);
    }
    out
}

/// `line` within `limit` bytes, cut at a character boundary and ended with `…`.
fn shorten(line: &str, limit: usize) -> String {
    if line.len() <= limit {
        return line.to_string();
    }
    let ellipsis = if limit >= 3 { "…" } else { "" };
    let mut end = limit - ellipsis.len();
    while end > 0 && !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &line[..end])
}

/// The last `n` lines of a command's output, without the partial first line that a byte-count
/// cut leaves (`cut_at_start`: the output given is already the tail of something longer).
pub fn last_lines(output: &str, n: usize, cut_at_start: bool) -> Vec<&str> {
    let mut lines: Vec<&str> = output.lines().collect();
    if cut_at_start && !lines.is_empty() {
        lines.remove(0);
    }
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// Console output as plain text: terminal control sequences (colours, cursor moves: ESC `[`
/// up to a final letter, and ESC `]` up to BEL or ESC `\\`) and carriage returns removed.
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                Some('[') => {
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() || c == '@' || c == '~' {
                            break;
                        }
                    }
                }
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// `text` with secrets hidden: the values of kubeadm's secret flags, bootstrap tokens
/// (`abcdef.0123456789abcdef`), long hex strings (certificate keys) and PEM blocks.
pub fn redact(text: &str) -> String {
    let mut out = Vec::new();
    let mut in_pem = false;
    for line in text.split('\n') {
        if in_pem {
            if line.contains("-----END ") {
                in_pem = false;
            }
            continue;
        }
        if line.contains("-----BEGIN ") {
            in_pem = !line.contains("-----END ");
            out.push("[redacted PEM block]".to_string());
            continue;
        }
        out.push(redact_words(line));
    }
    out.join("\n")
}

const SECRET_FLAGS: [&str; 4] = [
    "--token",
    "--certificate-key",
    "--discovery-token",
    "--tls-bootstrap-token",
];

fn redact_words(line: &str) -> String {
    let mut out = Vec::new();
    let mut hide_next = false;
    for word in line.split(' ') {
        if hide_next && !word.is_empty() {
            out.push("[redacted]".to_string());
            hide_next = false;
            continue;
        }
        match SECRET_FLAGS.iter().find(|f| word.starts_with(*f)) {
            Some(flag) if word.as_bytes().get(flag.len()) == Some(&b'=') => {
                out.push(format!("{flag}=[redacted]"))
            }
            Some(flag) if word.len() == flag.len() => {
                out.push(word.to_string());
                hide_next = true;
            }
            _ if is_secret_word(word) => out.push("[redacted]".to_string()),
            _ => out.push(word.to_string()),
        }
    }
    out.join(" ")
}

/// A bootstrap token, or 32 or more hex digits (certificate keys, as `kubeadm init
/// --upload-certs` prints them), possibly quoted or followed by punctuation.
fn is_secret_word(word: &str) -> bool {
    let w = word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '.');
    let lower_alnum = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let token = match w.split_once('.') {
        Some((id, secret)) => {
            id.len() == 6 && secret.len() == 16 && lower_alnum(id) && lower_alnum(secret)
        }
        None => false,
    };
    let hex = w.len() >= 32 && w.bytes().all(|b| b.is_ascii_hexdigit());
    token || hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_control_sequences_are_removed() {
        let cases = [
            ("plain\n", "plain\n"),
            (
                "\x1b[0;1;31mFailed to create inotify object\x1b[0m\r\n",
                "Failed to create inotify object\n",
            ),
            ("\x1b]0;title\x07after", "after"),
            ("\x1b]0;title\x1b\\after", "after"),
            ("\x1b[?25l\x1b[2Kline", "line"),
            ("ü\x1b", "ü"),
        ];
        for (input, want) in cases {
            assert_eq!(plain(input), want, "{input:?}");
        }
    }

    #[test]
    fn short_text_is_kept() {
        assert_eq!(fit("a\nb", 10), "a\nb");
        assert_eq!(fit("", 10), "");
    }

    #[test]
    fn long_text_keeps_the_first_and_the_last_whole_lines() {
        let mut text = String::from("command \"kubeadm init\" exited with 1; last lines:");
        for i in 0..200 {
            text.push_str(&format!("\nline {i:03} of the output"));
        }
        let fitted = fit(&text, 200);
        assert!(fitted.len() <= 200, "{} bytes", fitted.len());
        let lines: Vec<&str> = fitted.lines().collect();
        assert_eq!(
            lines[0],
            "command \"kubeadm init\" exited with 1; last lines:"
        );
        assert_eq!(lines[1], "[195 lines cut]");
        assert_eq!(
            &lines[2..],
            [
                "line 195 of the output",
                "line 196 of the output",
                "line 197 of the output",
                "line 198 of the output",
                "line 199 of the output"
            ]
        );
    }

    #[test]
    fn an_overlong_line_is_shortened_at_its_end() {
        let text = format!("{}\nlast", "é".repeat(100));
        let fitted = fit(&text, 50);
        assert!(fitted.len() <= 50, "{fitted}");
        assert!(fitted.starts_with("éé") && fitted.contains('…'), "{fitted}");
        assert!(fitted.ends_with("\n[1 line cut]") || fitted.ends_with("\nlast"));
    }

    #[test]
    fn every_size_fits() {
        let text: String = (0..50).map(|i| format!("{}\n", "x".repeat(i))).collect();
        for limit in [0, 1, 5, 20, 64, 100, 1024] {
            assert!(fit(&text, limit).len() <= limit, "limit {limit}");
        }
    }

    #[test]
    fn a_partial_first_line_is_dropped() {
        assert_eq!(
            last_lines("ial line\nwhole\nlast\n\n", 10, true),
            ["whole", "last"]
        );
        assert_eq!(
            last_lines("first\nsecond\nthird", 2, false),
            ["second", "third"]
        );
        assert!(last_lines("", 3, true).is_empty());
    }

    #[test]
    fn secrets_are_redacted() {
        let cases = [
            (
                "kubeadm join 1.2.3.4:6443 --token abc.def --certificate-key=123 --v=5",
                "kubeadm join 1.2.3.4:6443 --token [redacted] --certificate-key=[redacted] --v=5",
            ),
            ("echo --tokenizer x", "echo --tokenizer x"),
            (
                "[bootstrap-token] Using token: abcdef.0123456789abcdef",
                "[bootstrap-token] Using token: [redacted]",
            ),
            (
                "Using certificate key:\n0f3c9b2a5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081",
                "Using certificate key:\n[redacted]",
            ),
            (
                "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\nafter",
                "key:\n[redacted PEM block]\nafter",
            ),
            ("version v1.20.2 at 10.0.0.1", "version v1.20.2 at 10.0.0.1"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(input), expected, "{input}");
        }
    }
}
