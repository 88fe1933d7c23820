//! Ignition (spec 2.x and 3.x), as Cluster API's kubeadm bootstrap provider writes it:
//! `storage.files` with data URLs, and `systemd.units` written to /etc/systemd/system and
//! enabled and started when asked. CABPK runs kubeadm from such a unit.

use base64::Engine;
use serde::Deserialize;

use super::{Error, File, Plan};

#[derive(Deserialize, Default)]
struct Config {
    #[serde(default)]
    storage: Storage,
    #[serde(default)]
    systemd: Systemd,
}

#[derive(Deserialize, Default)]
struct Storage {
    #[serde(default)]
    files: Vec<IgnitionFile>,
}

#[derive(Deserialize)]
struct IgnitionFile {
    path: String,
    #[serde(default)]
    contents: Contents,
    #[serde(default)]
    append: serde_json::Value,
    mode: Option<u32>,
    user: Option<Named>,
    group: Option<Named>,
}

#[derive(Deserialize, Default)]
struct Contents {
    source: Option<String>,
}

#[derive(Deserialize)]
struct Named {
    name: Option<String>,
    id: Option<u32>,
}

#[derive(Deserialize, Default)]
struct Systemd {
    #[serde(default)]
    units: Vec<Unit>,
}

#[derive(Deserialize)]
struct Unit {
    name: String,
    contents: Option<String>,
    enabled: Option<bool>,
    enable: Option<bool>,
}

/// Turns an Ignition config into a plan: all files, then the units, then systemd.
pub fn plan(data: &[u8]) -> Result<Plan, Error> {
    let config: Config = serde_json::from_slice(data).map_err(|e| Error::Syntax {
        format: "ignition",
        reason: format!(
            "line {}, column {}: {}",
            e.line(),
            e.column(),
            format!("{:?} error", e.classify()).to_lowercase()
        ),
    })?;
    let mut plan = Plan::default();
    for f in config.storage.files {
        let bad = |reason: &str| Error::File {
            path: f.path.clone(),
            reason: reason.to_string(),
        };
        if !f.path.starts_with('/') {
            return Err(bad("path must be absolute"));
        }
        let content = match &f.contents.source {
            Some(url) => data_url(url).map_err(|r| bad(&r))?,
            None => Vec::new(),
        };
        let name = |n: &Option<Named>| {
            n.as_ref()
                .and_then(|n| n.name.clone().or_else(|| n.id.map(|i| i.to_string())))
        };
        let owner = match (name(&f.user), name(&f.group)) {
            (None, None) => None,
            (user, group) => Some(format!(
                "{}:{}",
                user.unwrap_or_else(|| "root".into()),
                group.unwrap_or_else(|| "root".into())
            )),
        }
        .filter(|o| o != "root:root" && o != "0:0");
        // Spec 2.x: `append: true`; spec 3.x: `append: [sources]`, whose contents we add.
        let appended = match &f.append {
            serde_json::Value::Bool(b) => *b,
            serde_json::Value::Array(items) => !items.is_empty(),
            _ => false,
        };
        plan.write(File {
            path: f.path.clone(),
            content,
            mode: f.mode.unwrap_or(0o644),
            owner,
            append: appended,
        });
        if let serde_json::Value::Array(items) = &f.append {
            for item in items {
                let source = item
                    .get("source")
                    .and_then(|s| s.as_str())
                    .unwrap_or_default();
                let content = data_url(source).map_err(|r| bad(&r))?;
                plan.write(File {
                    path: f.path.clone(),
                    content,
                    mode: f.mode.unwrap_or(0o644),
                    owner: None,
                    append: true,
                });
            }
        }
    }
    let mut enable = Vec::new();
    for unit in &config.systemd.units {
        if let Some(contents) = &unit.contents {
            let path = format!("/etc/systemd/system/{}", unit.name);
            plan.write(File {
                path,
                content: contents.clone().into_bytes(),
                mode: 0o644,
                owner: None,
                append: false,
            });
        }
        if unit.enabled.or(unit.enable).unwrap_or(false) {
            enable.push(unit.name.clone());
        }
    }
    if !config.systemd.units.is_empty() {
        plan.run(["systemctl", "daemon-reload"].map(String::from).to_vec());
    }
    for unit in enable {
        plan.run(vec![
            "systemctl".into(),
            "enable".into(),
            "--now".into(),
            unit,
        ]);
    }
    Ok(plan)
}

/// Decodes `data:[<media type>][;base64],<data>` (RFC 2397).
fn data_url(url: &str) -> Result<Vec<u8>, String> {
    let rest = url
        .strip_prefix("data:")
        .ok_or_else(|| "only data: URLs are supported as file sources".to_string())?;
    let (meta, payload) = rest
        .split_once(',')
        .ok_or_else(|| "malformed data URL".to_string())?;
    if meta.ends_with(";base64") {
        return base64::engine::general_purpose::STANDARD
            .decode(payload)
            .map_err(|_| "data URL is not valid base64".into());
    }
    let bytes = payload.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let value = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("bad percent-encoding in data URL")?;
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::Step;
    use super::*;

    #[test]
    fn files_units_and_systemd() {
        let json = r#"{
          "ignition": {"version": "2.3.0"},
          "storage": {"files": [
            {"path": "/etc/kubeadm.sh", "mode": 448, "contents": {"source": "data:,%23!%2Fbin%2Fbash%0Akubeadm%20init%0A"}},
            {"path": "/etc/secret", "contents": {"source": "data:text/plain;base64,c2VjcmV0"}, "user": {"name": "kube"}},
            {"path": "/etc/log", "append": true, "contents": {"source": "data:,x"}}
          ]},
          "systemd": {"units": [
            {"name": "kubeadm.service", "enabled": true, "contents": "[Service]\nExecStart=/etc/kubeadm.sh\n"},
            {"name": "other.service", "contents": "[Unit]\n"}
          ]}
        }"#;
        let plan = plan(json.as_bytes()).expect("plan");
        let Step::WriteFiles(files) = &plan.steps[0] else {
            panic!("{:?}", plan.steps)
        };
        let summary = super::super::summary(files);
        assert_eq!(
            summary[0],
            (
                "/etc/kubeadm.sh",
                &b"#!/bin/bash\nkubeadm init\n"[..],
                0o700,
                None,
                false
            )
        );
        assert_eq!(
            summary[1],
            (
                "/etc/secret",
                &b"secret"[..],
                0o644,
                Some("kube:root"),
                false
            )
        );
        assert_eq!(summary[2], ("/etc/log", &b"x"[..], 0o644, None, true));
        assert_eq!(summary[3].0, "/etc/systemd/system/kubeadm.service");
        assert_eq!(summary[4].0, "/etc/systemd/system/other.service");
        assert_eq!(
            plan.steps[1],
            Step::Run(vec!["systemctl".into(), "daemon-reload".into()])
        );
        assert_eq!(
            plan.steps[2],
            Step::Run(vec![
                "systemctl".into(),
                "enable".into(),
                "--now".into(),
                "kubeadm.service".into()
            ])
        );
        assert_eq!(plan.steps.len(), 3);
    }

    #[test]
    fn spec3_append_sources() {
        let json = r#"{"ignition": {"version": "3.2.0"}, "storage": {"files": [
            {"path": "/etc/hosts", "append": [{"source": "data:,10.0.0.1%20a%0A"}]}]}}"#;
        let plan = plan(json.as_bytes()).expect("plan");
        let Step::WriteFiles(files) = &plan.steps[0] else {
            panic!()
        };
        assert_eq!(
            files.last().map(|f| (f.append, f.content.as_slice())),
            Some((true, &b"10.0.0.1 a\n"[..]))
        );
    }

    #[test]
    fn bad_input() {
        assert!(
            plan(b"{not json")
                .expect_err("syntax")
                .to_string()
                .contains("not valid ignition")
        );
        let remote = r#"{"storage": {"files": [{"path": "/a", "contents": {"source": "https://example.com/x"}}]}}"#;
        assert!(
            plan(remote.as_bytes())
                .expect_err("remote")
                .to_string()
                .contains("only data: URLs")
        );
        let relative = r#"{"storage": {"files": [{"path": "a"}]}}"#;
        assert!(
            plan(relative.as_bytes())
                .expect_err("relative")
                .to_string()
                .contains("absolute")
        );
    }
}
