//! `wkube image`: the node's local image store (an OCI image layout under the data dir),
//! and its containerd's for container images.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;

use node::image_archive::{read_archive, ContainerImage};
use node::images::ImageStore;
use node::runtime::oci::{OciRuntime, OciSettings};

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Store a WASI component as an OCI wasm artifact under NAME:TAG, or the images of an
    /// OCI image archive (`skopeo copy ... oci-archive:FILE`) or Docker archive (`docker
    /// save`): wasm artifacts in the node's store, container images in its containerd's (for
    /// `imagePullPolicy: Never`).
    Import {
        /// The component (`.wasm`) or the image archive (`.tar`).
        file: PathBuf,
        /// The image reference pods will use, e.g. `hello:1.0`. Required for a
        /// component; an archive names its images itself.
        reference: Option<String>,
        #[arg(long, env = "WKUBE_DATA_DIR", default_value_os_t = crate::default_data_dir())]
        data_dir: PathBuf,
        /// The containerd the node runs containers on, if not its own (as given to
        /// `wkube server --containerd-socket`).
        #[arg(long, value_name = "PATH")]
        containerd_socket: Option<PathBuf>,
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

/// Imports container images into the node's containerd: the one serving `socket`, else
/// its own one if it runs (a `wkube server` on this data dir started it), else its own one
/// started for the import and stopped after.
fn import_containers(
    data_dir: &Path,
    socket: Option<PathBuf>,
    file: &Path,
    images: &[ContainerImage],
) -> anyhow::Result<()> {
    let dir = data_dir.join("containerd");
    let own = dir.join("containerd.sock");
    let socket = socket.or_else(|| {
        std::os::unix::net::UnixStream::connect(&own)
            .is_ok()
            .then_some(own)
    });
    let oci = OciRuntime::new(OciSettings {
        dir,
        socket,
        insecure_registries: Vec::new(),
        sandbox_pool: None,
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let imported = oci.import_images(file, images).await;
        oci.shutdown().await;
        Ok(imported?)
    })
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
            containerd_socket,
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
                let contents = read_archive(&file, reference.as_deref())?;
                if !contents.containers.is_empty() {
                    import_containers(&data_dir, containerd_socket, &file, &contents.containers)?;
                }
                for image in &contents.containers {
                    println!("imported {} ({})", image.name, image.target.digest());
                }
                contents.import_wasm(&store)?
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
