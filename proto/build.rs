//! Generates the gRPC code for `avap.proto` without a system `protoc`:
//! `protox` parses the file into a `FileDescriptorSet` and
//! `tonic-prost-build` turns that into prost messages, a client and a server.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=avap.proto");
    let fds = protox::compile(["avap.proto"], ["."])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
