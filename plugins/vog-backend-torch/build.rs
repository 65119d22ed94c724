//! Records an rpath to libtorch's `lib` directory in the plugin, so that it finds `libtorch*.so`
//! at run time without LD_LIBRARY_PATH (torch-sys exports the directory it linked against).

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
