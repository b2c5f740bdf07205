//! `crdgen`: writes every CRD of the operator to `crds/<plural>.<group>.yaml`.
//!
//! `crdgen` rewrites the files; `crdgen --check` changes nothing and exits 1, naming each file,
//! when `crds/` is out of date (for CI). `--dir DIR` picks another directory.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use traffic_mirror_operator::api;

/// Command-line options of crdgen.
#[derive(Parser, Debug)]
#[command(about = "Generate the CRD YAML files of traffic-mirror-operator")]
struct Args {
    /// Only check that the files are current; exit non-zero and name the stale files otherwise.
    #[arg(long)]
    check: bool,
    /// Directory of the CRD files (default: the crate's crds/).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let dir = args.dir.unwrap_or_else(api::crds_dir);
    if args.check {
        match api::stale_crd_files(&dir) {
            Ok(stale) if stale.is_empty() => {
                println!("{} is up to date", dir.display());
                ExitCode::SUCCESS
            }
            Ok(stale) => {
                for path in stale {
                    eprintln!("out of date: {}", path.display());
                }
                eprintln!("run `cargo run --bin crdgen` to regenerate");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("crdgen: {e}");
                ExitCode::from(2)
            }
        }
    } else {
        match api::write_crds(&dir) {
            Ok(written) => {
                for path in written {
                    println!("wrote {}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("crdgen: {e}");
                ExitCode::from(2)
            }
        }
    }
}
