//! `wkube image`: the node's local image store (an OCI image layout under the data dir).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

use node::image_archive::import_archive;
use node::images::ImageStore;

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Store a WASI component as an OCI wasm artifact under NAME:TAG, or the wasm
    /// artifacts of an OCI image archive (`skopeo copy ... oci-archive:FILE`).
    Import {
        /// The component (`.wasm`) or the OCI image archive (`.tar`).
        file: PathBuf,
        /// The image reference pods will use, e.g. `hello:1.0`. Required for a
        /// component; an archive names its images itself.
        reference: Option<String>,
        #[arg(long, env = "WKUBE_DATA_DIR", default_value_os_t = crate::default_data_dir())]
        data_dir: PathBuf,
    },
    /// List the images in the store.
    Ls {
        #[arg(long, env = "WKUBE_DATA_DIR", default_value_os_t = crate::default_data_dir())]
        data_dir: PathBuf,
    },
}

/// A wasm binary (`\0asm`), or anything else: read as an archive, which says clearly
/// when it is not one.
fn is_wasm(file: &std::path::Path) -> anyhow::Result<bool> {
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(file).with_context(|| format!("{}", file.display()))?;
    let n =
        std::io::Read::read(&mut f, &mut magic).with_context(|| format!("{}", file.display()))?;
    Ok(n == 4 && &magic == b"\0asm")
}

pub fn store_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("images")
}

pub fn run(cmd: ImageCommand) -> anyhow::Result<()> {
    match cmd {
        ImageCommand::Import {
            file,
            reference,
            data_dir,
        } => {
            let store = ImageStore::open(&store_dir(&data_dir))?;
            let imported = if is_wasm(&file)? {
                let reference = reference.with_context(|| {
                    format!(
                        "{}: a component needs a NAME:TAG to import it as",
                        file.display()
                    )
                })?;
                let bytes = std::fs::read(&file).with_context(|| format!("{}", file.display()))?;
                let info = store
                    .import_wasm(&bytes, &reference)
                    .with_context(|| format!("{}", file.display()))?;
                vec![info]
            } else {
                import_archive(&store, &file, reference.as_deref())?
            };
            for info in imported {
                println!("imported {} ({})", info.reference, info.digest);
            }
        }
        ImageCommand::Ls { data_dir } => {
            let store = ImageStore::open(&store_dir(&data_dir))?;
            println!("{:<50} {:<20} {:>10} TYPE", "REFERENCE", "DIGEST", "SIZE");
            for i in store.list()? {
                let short = i
                    .digest
                    .trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect::<String>();
                println!(
                    "{:<50} {:<20} {:>10} {:?}",
                    i.reference, short, i.size, i.artifact
                );
            }
        }
    }
    Ok(())
}
