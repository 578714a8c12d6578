//! Generates the gRPC contracts; protoc comes from the `protoc-bin-vendored` crate, so nothing
//! beyond Rust needs to be installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let protos = [
        "order.proto",
        "payment.proto",
        "delivery.proto",
        "user.proto",
        "ad.proto",
        "search.proto",
        "media.proto",
        "report.proto",
        "notification.proto",
    ];
    let paths: Vec<String> = protos.iter().map(|p| format!("../../proto/{p}")).collect();
    for p in &paths {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_build::configure()
        // Maps as BTreeMap: ordered, and the workspace bans HashMap.
        .btree_map(["."])
        .compile_protos(&paths, &["../../proto".to_owned()])?;
    Ok(())
}
