//! Writes the provider's CRDs to `config/crd/bases/` and their kustomization.
//! Usage: `cargo run -p capkind-api --bin crdgen [CONFIG_CRD_DIR]` (default: config/crd).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| "config/crd".into());
    let bases = dir.join("bases");
    std::fs::create_dir_all(&bases)?;
    for crd in capkind_api::crds::all() {
        let path = bases.join(capkind_api::crds::file_name(&crd));
        std::fs::write(&path, capkind_api::crds::to_yaml(&crd)?)?;
        println!("wrote {}", path.display());
    }
    std::fs::write(
        dir.join("kustomization.yaml"),
        capkind_api::crds::kustomization(),
    )?;
    Ok(())
}
