fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (proto_dir, out_dir) = (&args[1], &args[2]);
    let fds = protox::compile(["onnx.proto3"], [proto_dir])?;
    prost_build::Config::new()
        .out_dir(out_dir)
        .disable_comments(["."])
        .compile_fds(fds)?;
    Ok(())
}
