//! A shared library with an unrelated export and none of the plugin symbols.

/// Something a library might export.
#[unsafe(no_mangle)]
pub extern "C" fn add_one(x: i32) -> i32 {
    x + 1
}
