//! The node image of a Machine and how it runs: `customImage`, or the `kindest/node` image of
//! its Kubernetes version, pinned by digest when a kind release published it. The table is
//! data (`kindest-node.txt`, which names its source); pure.

/// How a node image runs: kind changed it in v0.20 (a private cgroup namespace, the kubelet
/// under `/kubelet`), so images built by kind v0.19 and earlier run the old way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Images of kind v0.19 and earlier: the host's cgroup namespace.
    Kind0_19,
    /// Images of kind v0.20 and later, and any image not in the table: a private cgroup
    /// namespace.
    #[default]
    Kind0_20,
}

impl Mode {
    /// Whether the node container gets a cgroup namespace of its own.
    pub fn cgroupns_private(self) -> bool {
        self == Mode::Kind0_20
    }
}

/// A node image and how it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeImage {
    /// The image reference to run (and pull when missing).
    pub reference: String,
    /// How it runs.
    pub mode: Mode,
}

/// Why no image could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the Machine has no spec.version and the KindMachine no spec.customImage, so no node image can be chosen"
)]
pub struct NoImage;

/// One published image: the kind release, the tag, the digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// The kind release that built it, e.g. `v0.24`.
    pub kind: String,
    /// The image's tag, e.g. `v1.31.0`.
    pub tag: String,
    /// Its digest, `sha256:...`.
    pub digest: String,
}

impl Published {
    /// The pinned reference, `kindest/node:<tag>@<digest>`.
    pub fn reference(&self) -> String {
        format!("{REPOSITORY}:{}@{}", self.tag, self.digest)
    }

    /// How the image runs: by the kind release that built it.
    pub fn mode(&self) -> Mode {
        match minor(&self.kind) {
            Some(m) if m <= 19 => Mode::Kind0_19,
            _ => Mode::Kind0_20,
        }
    }
}

/// The repository of kind's node images.
pub const REPOSITORY: &str = "kindest/node";

const TABLE: &str = include_str!("kindest-node.txt");

/// The published images, newest kind release first, read from the table once; lines that do
/// not read as `<kind> <tag> sha256:<64 hex>` are skipped (a test checks there are none).
pub fn published() -> &'static [Published] {
    static PUBLISHED: std::sync::LazyLock<Vec<Published>> =
        std::sync::LazyLock::new(|| TABLE.lines().filter_map(parse_line).collect());
    &PUBLISHED
}

fn parse_line(line: &str) -> Option<Published> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut words = line.split_whitespace();
    let (kind, tag, digest) = (words.next()?, words.next()?, words.next()?);
    let hex = digest.strip_prefix("sha256:")?;
    let ok = words.next().is_none()
        && kind.starts_with('v')
        && tag.starts_with('v')
        && hex.len() == 64
        && hex.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| Published {
        kind: kind.into(),
        tag: tag.into(),
        digest: digest.into(),
    })
}

/// The minor of `v0.24` or `v1.31.0`.
fn minor(version: &str) -> Option<u32> {
    version
        .trim_start_matches('v')
        .split('.')
        .nth(1)?
        .parse()
        .ok()
}

/// `(major.minor, patch)` of a tag such as `v1.31.0` or `v1.32.0_build.1`.
fn release(tag: &str) -> Option<(&str, u32)> {
    let v = tag.trim_start_matches('v');
    let (minor, rest) = v.rsplit_once('.')?;
    let patch: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((minor, patch.parse().ok()?))
}

/// The node image: `customImage` when set (run the way the table says when it is a published
/// image, else the newest way), else `kindest/node:<version>` (`+` written as `_`, as OCI tags
/// cannot hold `+`), pinned by digest when a kind release published that version.
pub fn image(custom: Option<&str>, version: Option<&str>) -> Result<NodeImage, NoImage> {
    let table = published();
    if let Some(custom) = custom.filter(|c| !c.is_empty()) {
        let mode = table
            .iter()
            .find(|p| p.reference() == custom)
            .map_or(Mode::default(), Published::mode);
        return Ok(NodeImage {
            reference: custom.to_string(),
            mode,
        });
    }
    let version = version.filter(|v| !v.is_empty()).ok_or(NoImage)?;
    let tag = format!("v{}", version.trim_start_matches('v')).replace('+', "_");
    if let Some(p) = table.iter().find(|p| p.tag == tag) {
        return Ok(NodeImage {
            reference: p.reference(),
            mode: p.mode(),
        });
    }
    Ok(NodeImage {
        mode: guess(table, &tag),
        reference: format!("{REPOSITORY}:{tag}"),
    })
}

/// How an unpublished version's image most likely runs (CAPD's guess): the newest way, unless
/// every published image of its minor release is a later patch, then the way the oldest of
/// those runs.
fn guess(table: &[Published], tag: &str) -> Mode {
    let Some((minor, patch)) = release(tag) else {
        return Mode::default();
    };
    let same: Vec<(&Published, u32)> = table
        .iter()
        .filter_map(|p| {
            release(&p.tag)
                .filter(|(m, _)| *m == minor)
                .map(|(_, n)| (p, n))
        })
        .collect();
    if same.is_empty() || same.iter().any(|(_, n)| *n < patch) {
        return Mode::default();
    }
    same.last().map_or(Mode::default(), |(p, _)| p.mode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_the_table_reads() {
        let lines = TABLE
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .count();
        assert_eq!(
            published().len(),
            lines,
            "a line of kindest-node.txt does not read"
        );
        assert!(TABLE.contains("Source: "), "the table names its source");
    }

    #[test]
    fn the_table_reaches_the_newest_kind_release() {
        let table = published();
        assert_eq!(table[0].kind, "v0.33");
        for tag in ["v1.36.4", "v1.37.0", "v1.19.16"] {
            assert!(table.iter().any(|p| p.tag == tag), "{tag} missing");
        }
        // Every minor release from 1.19 to 1.37 has an image.
        for minor in 19..=37 {
            let prefix = format!("v1.{minor}.");
            assert!(table.iter().any(|p| p.tag.starts_with(&prefix)), "{prefix}");
        }
    }

    #[test]
    fn images() {
        let pinned = |r: &str, mode| {
            Ok(NodeImage {
                reference: r.into(),
                mode,
            })
        };
        assert_eq!(
            image(Some("my/node:x"), Some("v1.31.0")),
            pinned("my/node:x", Mode::Kind0_20)
        );
        assert_eq!(
            image(None, Some("v1.31.0")),
            pinned(
                "kindest/node:v1.31.0@sha256:53df588e04085fd41ae12de0c3fe4c72f7013bba32a20e7325357a1ac94ba865",
                Mode::Kind0_20
            )
        );
        // Rebuilt by a newer kind: the newest build.
        assert_eq!(
            image(None, Some("1.32.0")),
            pinned(
                "kindest/node:v1.32.0@sha256:c48c62eac5da28cdadcf560d1d8616cfa6783b58f0d94cf63ad1bf49600cb027",
                Mode::Kind0_20
            )
        );
        assert_eq!(
            image(None, Some("v1.36.4")),
            pinned(
                "kindest/node:v1.36.4@sha256:099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed",
                Mode::Kind0_20
            )
        );
        // Built by kind v0.19 or earlier only: the old way.
        assert_eq!(
            image(None, Some("v1.26.4")),
            pinned(
                "kindest/node:v1.26.4@sha256:f4c0d87be03d6bea69f5e5dc0adb678bb498a190ee5c38422bf751541cebe92e",
                Mode::Kind0_19
            )
        );
        let old = "kindest/node:v1.20.15@sha256:a32bf55309294120616886b5338f95dd98a2f7231519c7dedcec32ba29699394";
        assert_eq!(image(Some(old), None), pinned(old, Mode::Kind0_19));
        // Unpublished: unpinned, guessed.
        assert_eq!(
            image(None, Some("1.29.99")),
            pinned("kindest/node:v1.29.99", Mode::Kind0_20)
        );
        assert_eq!(
            image(None, Some("v1.20.2")),
            pinned("kindest/node:v1.20.2", Mode::Kind0_19)
        );
        assert_eq!(
            image(None, Some("v1.38.0")),
            pinned("kindest/node:v1.38.0", Mode::Kind0_20)
        );
        assert_eq!(
            image(None, Some("v1.32.0+build.1")),
            pinned("kindest/node:v1.32.0_build.1", Mode::Kind0_20)
        );
        assert_eq!(image(Some(""), None), Err(NoImage));
    }
}
