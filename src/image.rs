//! `wkube image`: the node's local image store (an OCI image layout under the data dir).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

use node::images::ImageStore;

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Store a WASI component as an OCI wasm artifact under NAME:TAG.
    Import {
        /// The component (`.wasm`).
        file: PathBuf,
        /// The image reference pods will use, e.g. `hello:1.0`.
        reference: String,
        #[arg(long, env = "WKUBE_DATA_DIR", default_value_os_t = crate::default_data_dir())]
        data_dir: PathBuf,
    },
    /// List the images in the store.
    Ls {
        #[arg(long, env = "WKUBE_DATA_DIR", default_value_os_t = crate::default_data_dir())]
        data_dir: PathBuf,
    },
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
            let bytes = std::fs::read(&file).with_context(|| format!("{}", file.display()))?;
            let store = ImageStore::open(&store_dir(&data_dir))?;
            let info = store
                .import_wasm(&bytes, &reference)
                .with_context(|| format!("{}", file.display()))?;
            println!("imported {} ({})", info.reference, info.digest);
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
