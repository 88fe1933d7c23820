//! cloud-config, as Cluster API's kubeadm bootstrap provider writes it: `write_files` and
//! `runcmd`, handled in the order their sections appear; other sections are skipped and listed.

use std::io::Read;

use base64::Engine;
use serde_yaml::Value;

use super::{Error, File, Plan, parse_mode};

/// Turns cloud-config into a plan.
pub fn plan(data: &[u8]) -> Result<Plan, Error> {
    let syntax = |reason: String| Error::Syntax {
        format: "cloud-config",
        reason,
    };
    let doc: Value = serde_yaml::from_slice(data).map_err(|e| syntax(location_only(&e)))?;
    let Value::Mapping(sections) = doc else {
        return Err(syntax("the document is not a mapping of sections".into()));
    };
    let mut plan = Plan::default();
    for (key, value) in sections {
        match key.as_str() {
            Some("write_files") => write_files(&mut plan, &value)?,
            Some("runcmd") => runcmd(&mut plan, &value)?,
            Some(other) => plan.ignored.push(other.to_string()),
            None => return Err(syntax("a section name is not a string".into())),
        }
    }
    Ok(plan)
}

/// serde_yaml's messages can quote the input; keep only where the problem is.
fn location_only(e: &serde_yaml::Error) -> String {
    match e.location() {
        Some(l) => format!("syntax error at line {}, column {}", l.line(), l.column()),
        None => "syntax error".to_string(),
    }
}

fn write_files(plan: &mut Plan, value: &Value) -> Result<(), Error> {
    let entries = value.as_sequence().ok_or_else(|| Error::Syntax {
        format: "cloud-config",
        reason: "write_files is not a list".into(),
    })?;
    for entry in entries {
        let path = entry
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let bad = |reason: &str| Error::File {
            path: path.clone(),
            reason: reason.to_string(),
        };
        if !path.starts_with('/') {
            return Err(bad("path must be absolute"));
        }
        let content = entry
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let encoding = entry
            .get("encoding")
            .and_then(Value::as_str)
            .unwrap_or("text/plain");
        let owner = entry
            .get("owner")
            .and_then(Value::as_str)
            .filter(|o| !matches!(*o, "root" | "root:root" | "0:0"));
        plan.write(File {
            content: decode(content, encoding).map_err(|r| bad(&r))?,
            mode: parse_mode(&path, entry.get("permissions"))?,
            owner: owner.map(str::to_string),
            append: entry
                .get("append")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            path,
        });
    }
    Ok(())
}

fn decode(content: &str, encoding: &str) -> Result<Vec<u8>, String> {
    let b64 = |s: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(s.split_whitespace().collect::<String>())
            .map_err(|_| "content is not valid base64".to_string())
    };
    let gunzip = |bytes: Vec<u8>| {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .map_err(|_| "content is not valid gzip".to_string())?;
        Ok::<_, String>(out)
    };
    match encoding.to_ascii_lowercase().as_str() {
        "" | "text/plain" => Ok(content.as_bytes().to_vec()),
        "b64" | "base64" => b64(content),
        "gz" | "gzip" => gunzip(content.as_bytes().to_vec()),
        "gz+b64" | "gzip+base64" | "gz+base64" | "gzip+b64" => gunzip(b64(content)?),
        other => Err(format!("unknown encoding {other:?}")),
    }
}

fn runcmd(plan: &mut Plan, value: &Value) -> Result<(), Error> {
    let syntax = |reason: &str| Error::Syntax {
        format: "cloud-config",
        reason: reason.to_string(),
    };
    let items = value
        .as_sequence()
        .ok_or_else(|| syntax("runcmd is not a list"))?;
    for item in items {
        let argv = match item {
            Value::String(line) => {
                vec!["/bin/sh".to_string(), "-c".to_string(), line.clone()]
            }
            Value::Sequence(args) => args
                .iter()
                .map(|a| match a {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    Value::Bool(b) => Ok(b.to_string()),
                    _ => Err(syntax("a runcmd argument is not a string")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(syntax("a runcmd item is neither a string nor a list")),
        };
        plan.run(argv);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Step;
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).expect("gzip");
        enc.finish().expect("gzip")
    }

    fn b64(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    #[test]
    fn files_and_commands_in_document_order() {
        let doc = format!(
            "## template: jinja\n#cloud-config\nwrite_files:\n\
             - path: /etc/plain\n  content: hello\n\
             - path: /etc/b64\n  encoding: b64\n  content: {}\n  permissions: '0600'\n\
             - path: /etc/gz\n  encoding: gzip+base64\n  content: {}\n  owner: kube:kube\n\
             - path: /etc/log\n  content: more\n  append: true\n  owner: root:root\n\
             runcmd:\n- echo one\n- [touch, /tmp/two]\n- 'kubeadm init --config /run/kubeadm/kubeadm.yaml && echo success > /run/cluster-api/bootstrap-success.complete'\n\
             users:\n- name: x\n",
            b64(b"secret"),
            b64(&gzip(b"zipped"))
        );
        let plan = plan(doc.as_bytes()).expect("plan");
        assert_eq!(plan.ignored, ["users"]);
        let Step::WriteFiles(files) = &plan.steps[0] else {
            panic!("files first: {:?}", plan.steps)
        };
        let summary = super::super::summary(files);
        assert_eq!(
            summary,
            [
                ("/etc/plain", &b"hello"[..], 0o644, None, false),
                ("/etc/b64", &b"secret"[..], 0o600, None, false),
                ("/etc/gz", &b"zipped"[..], 0o644, Some("kube:kube"), false),
                ("/etc/log", &b"more"[..], 0o644, None, true),
            ]
        );
        assert_eq!(
            plan.steps[1],
            Step::Run(vec!["/bin/sh".into(), "-c".into(), "echo one".into()])
        );
        assert_eq!(
            plan.steps[2],
            Step::Run(vec!["touch".into(), "/tmp/two".into()])
        );
        let Step::Run(kubeadm) = &plan.steps[3] else {
            panic!()
        };
        assert_eq!(
            kubeadm[2],
            "kubeadm init --config /run/kubeadm/kubeadm.yaml && echo success > /run/cluster-api/bootstrap-success.complete",
            "the command as written (bootstrap::kubeadm adapts it afterwards)"
        );
        assert_eq!(plan.steps.len(), 4, "the files are one step");
    }

    #[test]
    fn runcmd_before_write_files_keeps_that_order() {
        let plan =
            plan(b"runcmd:\n- echo first\nwrite_files:\n- path: /x\n  content: y\nruncmd2: []\n")
                .expect("plan");
        assert!(matches!(plan.steps[0], Step::Run(_)));
        assert!(matches!(plan.steps[1], Step::WriteFiles(_)));
    }

    #[test]
    fn bad_input_is_named_without_quoting_the_data() {
        let cases: [(&[u8], &str); 6] = [
            (
                b"write_files:\n- path: relative\n  content: x\n",
                "bootstrap file relative: path must be absolute",
            ),
            (
                b"write_files:\n- path: /a\n  encoding: b64\n  content: '!!!'\n",
                "bootstrap file /a: content is not valid base64",
            ),
            (
                b"write_files:\n- path: /a\n  encoding: rot13\n  content: x\n",
                "unknown encoding",
            ),
            (
                b"write_files:\n- path: /a\n  permissions: rwx\n",
                "bad permissions",
            ),
            (b"runcmd: echo\n", "runcmd is not a list"),
            (b"key: [unclosed SECRETTOKEN\n", "syntax error at line"),
        ];
        for (doc, expected) in cases {
            let err = plan(doc).expect_err("must fail").to_string();
            assert!(err.contains(expected), "{err}");
            assert!(
                !err.contains("SECRETTOKEN"),
                "the data leaked into the message: {err}"
            );
        }
    }

    #[test]
    fn numeric_permissions() {
        let plan = plan(b"write_files:\n- path: /a\n  permissions: 0755\n").expect("plan");
        let Step::WriteFiles(files) = &plan.steps[0] else {
            panic!()
        };
        assert_eq!(
            files[0].mode, 0o755,
            "an unquoted 0755 is read as octal, as cloud-init does"
        );
    }
}
