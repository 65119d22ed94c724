//! A correct ABI version and nothing else: the host must report the missing `vog_plugin_vtable`.

/// The host's own version, so that only the missing table is wrong.
#[unsafe(no_mangle)]
pub extern "C" fn vog_plugin_abi_version() -> u32 {
    vog_plugin::ABI_VERSION
}
