//! Exports an ABI version one major ahead of the host's; the host must refuse it before looking
//! at anything else (there is no function table at all).

/// One major version ahead.
#[unsafe(no_mangle)]
pub extern "C" fn vog_plugin_abi_version() -> u32 {
    (vog_plugin::ABI_MAJOR + 1) << 16
}
