//! Generates the gRPC code and the reflection descriptor set from `proto/` with protox,
//! so building needs no system `protoc`.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTO_FILES: &[&str] = &[
    "iqs/common/v1/common.proto",
    "iqs/rubric/v1/rubric.proto",
    "iqs/evaluation/v1/evaluation.proto",
    "iqs/analytics/v1/analytics.proto",
    "iqs/autoqa/v1/scorer.proto",
    "iqs/integration/v1/webhook.proto",
];

/// Implemented by scorers elsewhere, called by IQS: generated, but not in the reflection
/// set of what IQS serves.
const CALLED_NOT_SERVED: &[&str] = &["iqs/autoqa/v1/scorer.proto"];

/// Served only by `iqs bench echo-server`: generated, but kept out of the reflection set.
const BENCH_PROTO_FILES: &[&str] = &["iqs/bench/v1/echo.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    // sqlx::migrate! embeds migrations/ at compile time; a new file must rebuild it.
    println!("cargo:rerun-if-changed=migrations");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(protox::compile(BENCH_PROTO_FILES, ["proto"])?)?;
    let descriptors = protox::compile(PROTO_FILES, ["proto"])?;
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    let mut served = descriptors.clone();
    served
        .file
        .retain(|file| !CALLED_NOT_SERVED.contains(&file.name()));
    fs::write(out_dir.join("iqs_descriptor.bin"), served.encode_to_vec())?;
    // Every message knows its protobuf name (`prost::Name`), so the codec can bound a
    // request by its schema before decoding it.
    let mut types = prost_build::Config::new();
    types.enable_type_names();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::BoundedCodec")
        .compile_fds_with_config(descriptors, types)?;
    Ok(())
}
