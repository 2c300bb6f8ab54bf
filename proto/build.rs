//! Compiles `proto/*.proto` with `protox` (pure Rust) so no system `protoc` is needed, and writes
//! the encoded `FileDescriptorSet` next to the generated code: the Storage Write API needs the
//! message descriptor, and tests compare it with Terraform's schemas.

use std::{env, fs, path::PathBuf};

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/trade.proto", "proto/gap.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("descriptor.bin"), fds.encode_to_vec())?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
