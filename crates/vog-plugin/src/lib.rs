//! The **vog plugin ABI**: how a gradient backend compiled as a shared library (`cdylib`) talks
//! to the `vog` host, whatever compiler version or framework built it.
//!
//! A plugin author implements [`vog_core::GradientBackend`] and [`PluginBackend`] and writes one
//! line, `vog_plugin::export_backend!(MyBackend);`. The macro generates every `extern "C"` symbol;
//! authors write no unsafe code. The host side lives in the `vog-plugin-host` crate.
//!
//! ```ignore
//! use vog_plugin::PluginBackend;
//!
//! impl PluginBackend for MyBackend {
//!     fn describe() -> vog_core::BackendInfo { /* name, version, extensions, devices */ }
//!     fn create(options: &str) -> vog_core::Result<Self> { /* parse TOML options */ }
//!     fn self_test() -> vog_core::Result<String> { /* build a tiny model, check it */ }
//! }
//! vog_plugin::export_backend!(MyBackend);
//! ```
//!
//! # The interface
//!
//! A plugin exports exactly two symbols:
//!
//! * `vog_plugin_abi_version() -> u32`: the ABI version it was built for, `major << 16 | minor`.
//!   The host calls it **before anything else** and refuses a plugin whose major differs from its
//!   own ([`ABI_MAJOR`]).
//! * `vog_plugin_vtable() -> *const VogPluginVTable`: a static table of functions. Its first
//!   field is its own size in bytes; later minor versions only **append** fields, each an
//!   `Option` of a function pointer, so a host reads a field only when the plugin's table is large
//!   enough to hold it and treats the others as absent. A host accepts every table of at least
//!   [`ABI_1_0_TABLE_SIZE`] bytes.
//!
//! Only `#[repr(C)]` plain data, `(pointer, length)` pairs, `extern "C"` function pointers and
//! opaque `*mut c_void` handles cross the boundary. Never Rust `String`, `Vec`, `&str` or trait
//! objects: their layout is not stable across compilers.
//!
//! # Ownership rules
//!
//! 1. **Host inputs are borrowed for the call only.** Strings ([`VogStr`]), request buffers
//!    ([`VogGradRequest`]) and the logger's context stay owned by the host; the plugin copies what
//!    it wants to keep before returning.
//! 2. **The side that allocates, frees.** A [`VogGradOutput`] is allocated by the plugin and
//!    released by the host with `free_output`, exactly once. Before ABI 1.2 the host copies its
//!    buffers and frees it before its next call into the plugin. From 1.2 on, a plugin promises
//!    that an output is independent of its model and of later calls: its buffers stay valid and
//!    unchanged until `free_output`, which may come after any later call, on any thread. The host
//!    then reads the gradient where the plugin left it (no copy) and frees the output when it
//!    has folded the gradient into its statistics; logits and classes are still copied at once.
//!    Plugins built with this crate (`export_backend!`) keep each output in its own allocation and
//!    so make the 1.2 promise. Backend and model handles are
//!    created by `create`/`load` and released by `destroy`/`unload`, exactly once each.
//! 3. **Handles nest.** The host keeps a backend alive while any model loaded from it is alive,
//!    and calls `unload` for every model before `destroy` for its backend.
//! 4. **Strings returned by the plugin** (by `info`, `self_test` and `last_error`) point into
//!    storage owned by the plugin's calling thread and stay valid until that thread's next call
//!    into the plugin. The host copies them at once.
//! 5. **Errors.** Every fallible function returns a status ([`status`]); on anything but
//!    [`status::OK`] the host immediately calls `last_error` on the same thread to copy out the
//!    message, the file or backend it concerns, and numeric details. A panic inside the plugin is
//!    caught (`catch_unwind`) and reported as [`status::PANIC`] with its message and location; it
//!    never unwinds into the host. `init` installs a panic hook in the plugin's own copy of `std`
//!    that records the location instead of printing it (plugins must be built with
//!    `panic = "unwind"`, Cargo's default).
//! 6. **Threads.** `info`, `self_test`, `create`, `load` and `destroy` may be called from any
//!    thread; one backend handle may be used by several threads at once (backends are `Sync`).
//!    A model handle is used by one thread at a time (models are `Send`).
//! 7. **Lifetime.** The host never unloads a plugin library: it stays mapped until the process
//!    exits, so function pointers and statics stay valid.
//! 8. **Logging.** `init` receives a [`VogLogger`] before any other call but `info`; the plugin
//!    forwards its `tracing` events to it, so `RUST_LOG` filters plugin logs like the host's.
//!    The logger's context and callbacks stay valid for the life of the process.
//!
//! Paths cross as UTF-8; a path that is not valid UTF-8 is rejected by the host.

#![deny(missing_docs)]

use std::ffi::c_void;

mod error;
#[doc(hidden)]
pub mod export;
mod logging;

pub use error::{error_from_info, OwnedErrorInfo};
pub use logging::{level_from_u32, level_to_u32};

/// ABI major version: a plugin with another major is refused.
pub const ABI_MAJOR: u32 = 1;
/// ABI minor version: functions appended to the table within a major (1.1:
/// `model_channel_axis`), or promises added (1.2: outputs outlive their call; see rule 2).
pub const ABI_MINOR: u32 = 2;
/// The ABI version this crate implements, `major << 16 | minor`.
pub const ABI_VERSION: u32 = (ABI_MAJOR << 16) | ABI_MINOR;

/// Symbol of the ABI version function.
pub const SYMBOL_ABI_VERSION: &str = "vog_plugin_abi_version";

/// Size in bytes of an ABI 1.0 function table: every entry up to and including `free_output`.
/// A host accepts any table at least this large; entries appended by later minor versions are
/// `Option`s that a host treats as absent when the plugin's table ends before them.
pub const ABI_1_0_TABLE_SIZE: usize =
    std::mem::offset_of!(VogPluginVTable, free_output) + std::mem::size_of::<usize>();
/// Symbol of the function table accessor.
pub const SYMBOL_VTABLE: &str = "vog_plugin_vtable";

/// Formats an ABI version as `major.minor`.
pub fn abi_string(version: u32) -> String {
    format!("{}.{}", version >> 16, version & 0xffff)
}

/// Status codes returned by fallible plugin functions.
pub mod status {
    /// Success.
    pub const OK: i32 = 0;
    /// A failure without a more specific code.
    pub const ERROR: i32 = 1;
    /// The plugin panicked; the panic was caught at the boundary.
    pub const PANIC: i32 = 2;
    /// Invalid arguments (null pointers, bad UTF-8, bad sizes).
    pub const INVALID: i32 = 3;
    /// Invalid options or configuration.
    pub const CONFIG: i32 = 4;
    /// A checkpoint file cannot be used.
    pub const CHECKPOINT: i32 = 5;
    /// Shapes do not fit.
    pub const SHAPE: i32 = 6;
    /// A class index is out of range; details: class, number of classes, row.
    pub const CLASS_OUT_OF_RANGE: i32 = 7;
    /// A NaN or infinity; details: row, element, what (0 logits, 1 gradient, 2 other).
    pub const NON_FINITE: i32 = 8;
    /// An I/O error on the file in `subject`.
    pub const IO: i32 = 9;
    /// A backend-specific failure; `subject` names the backend.
    pub const BACKEND: i32 = 10;
}

/// A borrowed UTF-8 string: pointer and length, not NUL-terminated.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VogStr {
    /// First byte (may dangle when `len` is 0).
    pub ptr: *const u8,
    /// Length in bytes.
    pub len: usize,
}

impl VogStr {
    /// Borrows a Rust string for the duration of a call.
    pub fn new(s: &str) -> Self {
        VogStr {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// The empty string.
    pub const EMPTY: VogStr = VogStr {
        ptr: std::ptr::null(),
        len: 0,
    };

    /// Reads the string.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes that stay valid for `'a` (or `len` must be 0).
    pub unsafe fn to_str<'a>(self) -> Result<&'a str, std::str::Utf8Error> {
        if self.len == 0 {
            return Ok("");
        }
        // SAFETY: the caller guarantees `ptr` points to `len` bytes valid for 'a.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr, self.len) };
        std::str::from_utf8(bytes)
    }

    /// Copies the string out, replacing invalid UTF-8.
    ///
    /// # Safety
    /// As for [`VogStr::to_str`], for the duration of this call.
    pub unsafe fn to_string_lossy(self) -> String {
        if self.len == 0 {
            return String::new();
        }
        // SAFETY: the caller guarantees `ptr` points to `len` readable bytes.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr, self.len) };
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// Error details copied out by the host after a failed call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VogErrorInfo {
    /// The status of the failed call.
    pub status: i32,
    /// Human-readable message.
    pub message: VogStr,
    /// The file (or, for [`status::BACKEND`], the backend) the error concerns; may be empty.
    pub subject: VogStr,
    /// Numeric details, meaning per status (see [`status`]).
    pub detail: [u64; 3],
}

/// Static facts about a plugin's backend. Lists are comma-separated.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VogPluginInfo {
    /// Backend name (`candle`, `onnx`).
    pub name: VogStr,
    /// Backend version.
    pub version: VogStr,
    /// Checkpoint file extensions, comma-separated, without dots.
    pub extensions: VogStr,
    /// Devices, comma-separated (`cpu,cuda:0`).
    pub devices: VogStr,
}

/// Largest input rank [`VogModelInfo`] can describe.
pub const MAX_RANK: usize = 8;

/// What a loaded model can say about itself.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VogModelInfo {
    /// Rank of the expected example shape; `u32::MAX` when unknown.
    pub input_rank: u32,
    /// The expected example shape (first `input_rank` entries).
    pub input_shape: [u64; MAX_RANK],
    /// Number of classes; `u64::MAX` when unknown.
    pub num_classes: u64,
}

/// Target codes of [`VogGradRequest::target`].
pub mod target {
    /// The pre-softmax logit.
    pub const LOGIT: u32 = 0;
    /// The softmax probability.
    pub const PROBABILITY: u32 = 1;
}

/// One batch of work, borrowed from the host for the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VogGradRequest {
    /// Shape of the input, batch first.
    pub shape: *const u64,
    /// Number of dimensions.
    pub rank: usize,
    /// Row-major input values.
    pub data: *const f32,
    /// Number of input values.
    pub len: usize,
    /// One class per row, or null for the argmax of each row's logits.
    pub classes: *const u32,
    /// Number of classes given (rows), 0 with a null `classes`.
    pub num_given: usize,
    /// [`target::LOGIT`] or [`target::PROBABILITY`].
    pub target: u32,
}

/// One batch of results, allocated by the plugin and released with `free_output`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VogGradOutput {
    /// Logits, `[rows, num_classes]`.
    pub logits: *const f32,
    /// Number of logits.
    pub logits_len: usize,
    /// Columns of `logits`.
    pub num_classes: usize,
    /// Input gradient, shaped like the input.
    pub gradient: *const f32,
    /// Number of gradient values.
    pub gradient_len: usize,
    /// Shape of one gradient row when it differs from the input's; null means "like the input".
    pub gradient_shape: *const u64,
    /// Entries of `gradient_shape`.
    pub gradient_rank: usize,
    /// The class differentiated per row.
    pub classes: *const u32,
    /// Number of classes (rows).
    pub classes_len: usize,
    /// The plugin's allocation behind the buffers.
    pub owner: *mut c_void,
}

impl VogGradOutput {
    /// An output with no buffers, for the plugin to fill.
    pub const EMPTY: VogGradOutput = VogGradOutput {
        logits: std::ptr::null(),
        logits_len: 0,
        num_classes: 0,
        gradient: std::ptr::null(),
        gradient_len: 0,
        gradient_shape: std::ptr::null(),
        gradient_rank: 0,
        classes: std::ptr::null(),
        classes_len: 0,
        owner: std::ptr::null_mut(),
    };
}

/// Log levels of [`VogLogger`]: 1 error, 2 warn, 3 info, 4 debug, 5 trace.
pub type VogLevel = u32;

/// The host's logging callbacks, handed to the plugin by `init`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VogLogger {
    /// Host context passed back to every callback; valid for the life of the process.
    pub context: *mut c_void,
    /// Whether events of this level and target would be recorded.
    pub enabled:
        Option<unsafe extern "C" fn(context: *mut c_void, level: VogLevel, target: VogStr) -> bool>,
    /// Records one event.
    pub log: Option<
        unsafe extern "C" fn(
            context: *mut c_void,
            level: VogLevel,
            target: VogStr,
            message: VogStr,
        ),
    >,
}

/// The function table a plugin exports. Fields are only ever appended within an ABI major.
#[repr(C)]
#[derive(Debug)]
pub struct VogPluginVTable {
    /// `size_of::<VogPluginVTable>()` as the plugin was built.
    pub size: usize,
    /// The ABI version the table follows (equal to `vog_plugin_abi_version()`).
    pub abi_version: u32,
    /// Hands the host's logger to the plugin. Called once, right after the version check.
    pub init: unsafe extern "C" fn(logger: VogLogger) -> i32,
    /// Static facts about the backend.
    pub info: unsafe extern "C" fn(out: *mut VogPluginInfo) -> i32,
    /// Details of the last failure on the calling thread.
    pub last_error: unsafe extern "C" fn(out: *mut VogErrorInfo),
    /// Builds a tiny model, checks the backend end to end, and describes what it checked.
    pub self_test: unsafe extern "C" fn(report: *mut VogStr) -> i32,
    /// Creates a backend instance from options (TOML text of `[backend.options]`).
    pub create: unsafe extern "C" fn(options: VogStr, backend: *mut *mut c_void) -> i32,
    /// Releases a backend instance.
    pub destroy: unsafe extern "C" fn(backend: *mut c_void),
    /// Loads one checkpoint file.
    pub load:
        unsafe extern "C" fn(backend: *mut c_void, path: VogStr, model: *mut *mut c_void) -> i32,
    /// Describes a loaded model.
    pub model_info: unsafe extern "C" fn(model: *mut c_void, out: *mut VogModelInfo) -> i32,
    /// Releases a loaded model.
    pub unload: unsafe extern "C" fn(model: *mut c_void),
    /// One forward and one backward pass over a batch.
    pub input_gradients: unsafe extern "C" fn(
        model: *mut c_void,
        request: *const VogGradRequest,
        out: *mut VogGradOutput,
    ) -> i32,
    /// Releases an output filled by `input_gradients`.
    pub free_output: unsafe extern "C" fn(output: *mut VogGradOutput),
    /// ABI 1.1: where a loaded model keeps the channels of a 3-D example, as its first layers
    /// say: [`channel_axis::UNKNOWN`], [`channel_axis::FIRST`] or [`channel_axis::LAST`].
    /// `None` in a 1.0 plugin's table (the host then knows nothing).
    pub model_channel_axis: Option<unsafe extern "C" fn(model: *mut c_void) -> u32>,
}

/// Codes of [`VogPluginVTable::model_channel_axis`].
pub mod channel_axis {
    /// The model does not say.
    pub const UNKNOWN: u32 = 0;
    /// `[C, H, W]`.
    pub const FIRST: u32 = 1;
    /// `[H, W, C]`.
    pub const LAST: u32 = 2;
}

/// What a backend needs besides [`vog_core::GradientBackend`] to be exported as a plugin.
pub trait PluginBackend: vog_core::GradientBackend + Sized + 'static {
    /// Name, version, checkpoint extensions and devices, without an instance.
    fn describe() -> vog_core::BackendInfo;
    /// Creates an instance from the TOML text of `[backend.options]`, rejecting unknown keys.
    fn create(options: &str) -> vog_core::Result<Self>;
    /// Builds a tiny model in memory or a temporary directory, runs it through the backend and
    /// checks the result (for instance against finite differences); returns what was checked.
    fn self_test() -> vog_core::Result<String>;
}

/// Exports a [`PluginBackend`] as a vog plugin: generates `vog_plugin_abi_version` and
/// `vog_plugin_vtable`. Use it once, in a crate built as a `cdylib`.
#[macro_export]
macro_rules! export_backend {
    ($backend:ty) => {
        /// The plugin ABI version this library was built for.
        #[unsafe(no_mangle)]
        pub extern "C" fn vog_plugin_abi_version() -> u32 {
            $crate::ABI_VERSION
        }

        /// The plugin's function table.
        #[unsafe(no_mangle)]
        pub extern "C" fn vog_plugin_vtable() -> *const $crate::VogPluginVTable {
            static VTABLE: $crate::VogPluginVTable = $crate::export::vtable::<$backend>();
            &VTABLE
        }
    };
}
