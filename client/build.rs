//! Compiles the relay's `proto/tickrelay.proto` with protox (pure Rust): no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../proto/tickrelay.proto");
    let descriptors = protox::compile(["tickrelay.proto"], ["../proto"])?;
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
