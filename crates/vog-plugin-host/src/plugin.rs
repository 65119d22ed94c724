//! Loaded plugin libraries and the host-side `GradientBackend` / `Model` over their handles.

use std::collections::HashMap;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use libloading::Library;
use vog_core::{
    BackendInfo, Classes, Error, Floats, GradOutput, GradRequest, GradientBackend, Model,
    ModelInfo, Result, Target,
};
use vog_plugin::{
    abi_string, error_from_info, level_from_u32, status, target, OwnedErrorInfo, VogErrorInfo,
    VogGradOutput, VogGradRequest, VogLevel, VogLogger, VogModelInfo, VogPluginInfo,
    VogPluginVTable, VogStr, ABI_1_0_TABLE_SIZE, ABI_MAJOR, ABI_VERSION, SYMBOL_ABI_VERSION,
    SYMBOL_VTABLE,
};

use crate::PluginError;

/// A loaded plugin library: its function table and static facts.
#[derive(Debug)]
pub struct Plugin {
    path: PathBuf,
    vtable: &'static VogPluginVTable,
    abi_version: u32,
    info: BackendInfo,
}

/// Libraries loaded so far, by canonical path. They are never unloaded (ABI rule 7).
fn registry() -> &'static Mutex<HashMap<PathBuf, Arc<Plugin>>> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<Plugin>>>> = OnceLock::new();
    LOADED.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Loads the plugin at `path` (or returns the one already loaded from that file).
pub fn load(path: &Path) -> Result<Arc<Plugin>, PluginError> {
    let canonical = path.canonicalize().map_err(|e| PluginError::Open {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut loaded = registry().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = loaded.get(&canonical) {
        return Ok(p.clone());
    }
    let plugin = Arc::new(open(&canonical)?);
    tracing::debug!(path = %canonical.display(), backend = %plugin.info.name, abi = %abi_string(plugin.abi_version), "plugin loaded");
    loaded.insert(canonical, plugin.clone());
    Ok(plugin)
}

/// Copies a plugin's function table into the host's table type `T`: the first `usize` of the
/// table is its size; at least [`ABI_1_0_TABLE_SIZE`] bytes are required, and the bytes of `T`
/// beyond the plugin's table (entries appended by later minor versions, all `Option`s of function
/// pointers) are zero, that is `None`. A larger table from a newer minor is read up to `T`'s size.
///
/// # Safety
///
/// `table` must point to a readable table whose first `usize` is its size in bytes, laid out as
/// `T` up to that size; `T` must be `#[repr(C)]` with a prefix of ABI 1.0's table and only
/// `Option`s of function pointers (or other types valid when zeroed) after it.
#[doc(hidden)]
pub unsafe fn read_table<T>(table: *const u8) -> Result<T, String> {
    // SAFETY: per the contract, the first field is the table's size.
    let size = unsafe { std::ptr::read_unaligned(table.cast::<usize>()) };
    if size < ABI_1_0_TABLE_SIZE || size < std::mem::size_of::<usize>() {
        return Err(format!(
            "table has {size} bytes; ABI {} needs at least {ABI_1_0_TABLE_SIZE}",
            abi_string(ABI_VERSION)
        ));
    }
    let n = size.min(std::mem::size_of::<T>());
    let mut out = std::mem::MaybeUninit::<T>::zeroed();
    // SAFETY: `n` bytes are readable at `table` (it declares `size` ≥ `n`) and writable in `out`;
    // the two do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(table, out.as_mut_ptr().cast::<u8>(), n) };
    // SAFETY: the first `n` bytes are the plugin's valid fields of `T`'s layout, the rest zeroed
    // `Option`s (`None`); the size field keeps the plugin's own value.
    Ok(unsafe { out.assume_init() })
}

fn open(path: &Path) -> Result<Plugin, PluginError> {
    // SAFETY: loading a library runs its initialisers. A vog plugin is trusted code the user
    // chose to run (like any executable); nothing here can make that safer.
    let library = unsafe { Library::new(path) }.map_err(|e| PluginError::Open {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    // Leaked on purpose: plugin libraries stay mapped for the life of the process (ABI rule 7),
    // so `'static` function pointers into them stay valid.
    let library: &'static Library = Box::leak(Box::new(library));
    let missing = |symbol, hint| PluginError::MissingSymbol {
        path: path.to_path_buf(),
        symbol,
        hint,
    };

    // SAFETY: the symbol is looked up by name; its type is the one the ABI defines for it.
    let version_fn =
        unsafe { library.get::<unsafe extern "C" fn() -> u32>(SYMBOL_ABI_VERSION.as_bytes()) }
            .map_err(|_| {
                missing(
            SYMBOL_ABI_VERSION,
            "this library is not a vog plugin (export one with vog_plugin::export_backend!)",
        )
            })?;
    // SAFETY: `vog_plugin_abi_version` takes nothing and returns a u32 in every ABI version.
    let abi_version = unsafe { version_fn() };
    if abi_version >> 16 != ABI_MAJOR {
        return Err(PluginError::AbiMismatch {
            path: path.to_path_buf(),
            plugin: abi_string(abi_version),
            host: abi_string(ABI_VERSION),
            host_major: ABI_MAJOR,
        });
    }
    // SAFETY: as above; the major matches, so the accessor has this type.
    let vtable_fn = unsafe {
        library.get::<unsafe extern "C" fn() -> *const VogPluginVTable>(SYMBOL_VTABLE.as_bytes())
    }
    .map_err(|_| {
        missing(
            SYMBOL_VTABLE,
            "the library exports an ABI version but no function table",
        )
    })?;
    // SAFETY: the accessor returns a pointer to the plugin's static table (or null).
    let table = unsafe { vtable_fn() };
    let bad = |message: String| PluginError::BadTable {
        path: path.to_path_buf(),
        message,
    };
    if table.is_null() {
        return Err(bad("vog_plugin_vtable returned null".into()));
    }
    // SAFETY: non-null, and the plugin's table lives in its statics for the life of the process
    // (the library is never unloaded); `read_table` reads no further than the size it declares.
    let vtable: &'static VogPluginVTable = Box::leak(Box::new(
        unsafe { read_table::<VogPluginVTable>(table.cast()) }.map_err(bad)?,
    ));
    if vtable.abi_version != abi_version {
        return Err(bad(format!(
            "table says ABI {} but vog_plugin_abi_version says {}",
            abi_string(vtable.abi_version),
            abi_string(abi_version)
        )));
    }
    let unnamed = BackendInfo {
        name: "plugin".into(),
        version: String::new(),
        extensions: vec![],
        devices: vec![],
    };
    let mut plugin = Plugin {
        path: path.to_path_buf(),
        vtable,
        abi_version,
        info: unnamed,
    };
    // SAFETY: the host logger's callbacks are thread-safe functions and its context is null,
    // so it is valid for the life of the process (rule 8).
    let s = unsafe { (vtable.init)(host_logger()) };
    plugin.check(s).map_err(|source| PluginError::Call {
        path: path.to_path_buf(),
        function: "init",
        source,
    })?;
    let mut raw = VogPluginInfo {
        name: VogStr::EMPTY,
        version: VogStr::EMPTY,
        extensions: VogStr::EMPTY,
        devices: VogStr::EMPTY,
    };
    // SAFETY: `raw` is writable; the strings it receives are copied before the next call (rule 4).
    let s = unsafe { (vtable.info)(&mut raw) };
    plugin.check(s).map_err(|source| PluginError::Call {
        path: path.to_path_buf(),
        function: "info",
        source,
    })?;
    let list = |v: VogStr| -> Vec<String> {
        // SAFETY: rule 4: valid until the next call into the plugin on this thread.
        let s = unsafe { v.to_string_lossy() };
        s.split(',')
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    };
    plugin.info = BackendInfo {
        // SAFETY: as for `list`.
        name: unsafe { raw.name.to_string_lossy() },
        // SAFETY: as for `list`.
        version: unsafe { raw.version.to_string_lossy() },
        extensions: list(raw.extensions),
        devices: list(raw.devices),
    };
    Ok(plugin)
}

impl Plugin {
    /// The library file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ABI version the plugin was built for.
    pub fn abi_version(&self) -> u32 {
        self.abi_version
    }

    /// Whether the plugin's outputs may outlive the call that made them (ABI 1.2 or later): then
    /// the host reads a gradient in the plugin's buffer instead of copying it.
    pub fn lends_outputs(&self) -> bool {
        self.abi_version & 0xffff >= 2
    }

    /// The ABI version as `major.minor`.
    pub fn abi_string(&self) -> String {
        abi_string(self.abi_version)
    }

    /// Name, version, checkpoint extensions and devices.
    pub fn info(&self) -> &BackendInfo {
        &self.info
    }

    /// Turns a status into a result, copying out the error details on failure (rule 5).
    fn check(&self, code: i32) -> Result<()> {
        if code == status::OK {
            return Ok(());
        }
        let mut raw = VogErrorInfo {
            status: code,
            message: VogStr::EMPTY,
            subject: VogStr::EMPTY,
            detail: [0; 3],
        };
        // SAFETY: `raw` is writable; called on the thread that saw the failure, right after it.
        unsafe { (self.vtable.last_error)(&mut raw) };
        let info = OwnedErrorInfo {
            status: code,
            // SAFETY: rule 4: the strings are valid until this thread's next call; copied now.
            message: unsafe { raw.message.to_string_lossy() },
            // SAFETY: as above.
            subject: unsafe { raw.subject.to_string_lossy() },
            detail: raw.detail,
        };
        Err(error_from_info(
            info,
            &self.info.name,
            &self.path.display().to_string(),
        ))
    }

    /// An error for a plugin that broke the ABI contract.
    fn broken(&self, what: &str) -> Error {
        Error::backend(
            &self.info.name,
            format!("{what} (plugin {})", self.path.display()),
        )
    }

    /// Runs the plugin's self-test and returns its report.
    pub fn self_test(&self) -> Result<String> {
        let mut report = VogStr::EMPTY;
        // SAFETY: `report` is writable; the string is copied before the next call (rule 4).
        let s = unsafe { (self.vtable.self_test)(&mut report) };
        self.check(s)?;
        // SAFETY: rule 4.
        Ok(unsafe { report.to_string_lossy() })
    }

    /// Creates a backend instance from the TOML text of `[backend.options]`.
    pub fn create(self: &Arc<Self>, options: &str) -> Result<ExternBackend> {
        let mut handle: *mut c_void = std::ptr::null_mut();
        // SAFETY: `options` is borrowed for the call (rule 1); `handle` is writable.
        let s = unsafe { (self.vtable.create)(VogStr::new(options), &mut handle) };
        self.check(s)?;
        if handle.is_null() {
            return Err(self.broken("create returned a null handle"));
        }
        Ok(ExternBackend {
            inner: Arc::new(BackendHandle {
                plugin: self.clone(),
                handle,
            }),
        })
    }
}

/// One backend instance inside a plugin.
struct BackendHandle {
    plugin: Arc<Plugin>,
    handle: *mut c_void,
}

// SAFETY: ABI rule 6: a backend handle may be used from several threads at once; the plugin side
// guarantees it by requiring `GradientBackend: Send + Sync`.
unsafe impl Send for BackendHandle {}
// SAFETY: as above.
unsafe impl Sync for BackendHandle {}

impl Drop for BackendHandle {
    fn drop(&mut self) {
        // SAFETY: `handle` came from `create` and is released once; every model holds an `Arc`
        // to this handle, so all of them were unloaded first (rule 3).
        unsafe { (self.plugin.vtable.destroy)(self.handle) };
    }
}

/// A backend living in a plugin, usable wherever a [`GradientBackend`] is.
pub struct ExternBackend {
    inner: Arc<BackendHandle>,
}

impl std::fmt::Debug for ExternBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternBackend")
            .field("plugin", &self.inner.plugin.path)
            .finish()
    }
}

impl ExternBackend {
    /// The plugin this backend comes from.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.inner.plugin
    }
}

impl GradientBackend for ExternBackend {
    fn info(&self) -> BackendInfo {
        self.inner.plugin.info.clone()
    }

    fn load(&self, checkpoint: &Path) -> Result<Box<dyn Model>> {
        let plugin = &self.inner.plugin;
        let path = checkpoint.to_str().ok_or_else(|| {
            Error::checkpoint(
                checkpoint,
                "path is not valid UTF-8, which the plugin ABI requires",
            )
        })?;
        let mut handle: *mut c_void = std::ptr::null_mut();
        // SAFETY: the backend handle is alive (we hold it); `path` is borrowed for the call.
        let s = unsafe { (plugin.vtable.load)(self.inner.handle, VogStr::new(path), &mut handle) };
        plugin.check(s)?;
        if handle.is_null() {
            return Err(plugin.broken("load returned a null handle"));
        }
        Ok(Box::new(ExternModel {
            backend: self.inner.clone(),
            handle,
        }))
    }
}

/// A model living in a plugin.
struct ExternModel {
    backend: Arc<BackendHandle>,
    handle: *mut c_void,
}

// SAFETY: ABI rule 6: a model handle may move between threads and is used by one at a time;
// `Model` is `Send` but not `Sync`, and every call takes `&mut self` or `&self` on one thread.
unsafe impl Send for ExternModel {}

impl Drop for ExternModel {
    fn drop(&mut self) {
        // SAFETY: `handle` came from `load` and is released once, before its backend (rule 3).
        unsafe { (self.backend.plugin.vtable.unload)(self.handle) };
    }
}

/// Copies a plugin buffer; a null pointer is only accepted for an empty buffer.
///
/// # Safety
/// When non-null, `ptr` points to `len` values that stay valid for the call.
unsafe fn copy_buffer<T: Copy>(
    ptr: *const T,
    len: usize,
    what: &str,
    plugin: &Plugin,
) -> Result<Vec<T>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    if ptr.is_null() {
        return Err(plugin.broken(&format!(
            "input_gradients returned a null {what} buffer of length {len}"
        )));
    }
    // SAFETY: non-null and, per the caller, valid for `len` values.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec())
}

impl Model for ExternModel {
    fn info(&self) -> ModelInfo {
        let plugin = &self.backend.plugin;
        let mut raw = VogModelInfo {
            input_rank: u32::MAX,
            input_shape: [0; vog_plugin::MAX_RANK],
            num_classes: u64::MAX,
        };
        // SAFETY: the model handle is alive; `raw` is writable.
        let s = unsafe { (plugin.vtable.model_info)(self.handle, &mut raw) };
        if plugin.check(s).is_err() {
            return ModelInfo::default();
        }
        let rank = raw.input_rank as usize;
        // ABI 1.1; a 1.0 plugin's table has no such entry.
        let channel_axis = plugin.vtable.model_channel_axis.and_then(|f| {
            // SAFETY: the model handle is alive; the function takes only it.
            match unsafe { f(self.handle) } {
                vog_plugin::channel_axis::FIRST => Some(vog_core::ChannelAxis::First),
                vog_plugin::channel_axis::LAST => Some(vog_core::ChannelAxis::Last),
                _ => None,
            }
        });
        ModelInfo {
            channel_axis,
            input_shape: (rank <= vog_plugin::MAX_RANK).then(|| {
                raw.input_shape[..rank]
                    .iter()
                    .map(|&d| d as usize)
                    .collect()
            }),
            num_classes: (raw.num_classes != u64::MAX).then_some(raw.num_classes as usize),
        }
    }

    fn input_gradients(&mut self, request: &GradRequest<'_>) -> Result<GradOutput> {
        let plugin = &self.backend.plugin;
        let shape: Vec<u64> = request.input.shape().iter().map(|&d| d as u64).collect();
        let (classes, num_given) = match request.classes {
            Classes::Given(c) => (c.as_ptr(), c.len()),
            Classes::Argmax => (std::ptr::null(), 0),
        };
        let raw = VogGradRequest {
            shape: shape.as_ptr(),
            rank: shape.len(),
            data: request.input.data().as_ptr(),
            len: request.input.data().len(),
            classes,
            num_given,
            target: match request.target {
                Target::Logit => target::LOGIT,
                Target::Probability => target::PROBABILITY,
            },
        };
        let mut out = VogGradOutput::EMPTY;
        // SAFETY: the model handle is alive and used by this thread only; `raw` and the buffers
        // it points to are borrowed for the call (rule 1); `out` is writable.
        let s = unsafe { (plugin.vtable.input_gradients)(self.handle, &raw, &mut out) };
        plugin.check(s)?;
        let lease = Lease {
            out,
            free: plugin.vtable.free_output,
        };
        // SAFETY: after OK the plugin's buffers are valid until `free_output` (rule 2), which
        // `lease` calls when dropped, after these copies.
        let (logits, gradient_shape, classes) = unsafe {
            (|| -> Result<_> {
                let out = &lease.out;
                let shape = if out.gradient_shape.is_null() {
                    None
                } else {
                    let s = copy_buffer(
                        out.gradient_shape,
                        out.gradient_rank,
                        "gradient shape",
                        plugin,
                    )?;
                    Some(s.into_iter().map(|d| d as usize).collect())
                };
                Ok((
                    copy_buffer(out.logits, out.logits_len, "logits", plugin)?,
                    shape,
                    copy_buffer(out.classes, out.classes_len, "classes", plugin)?,
                ))
            })()
        }?;
        let (ptr, len) = (lease.out.gradient, lease.out.gradient_len);
        let gradient = if plugin.lends_outputs() && len > 0 {
            if ptr.is_null() {
                return Err(plugin.broken(&format!(
                    "input_gradients returned a null gradient buffer of length {len}"
                )));
            }
            // SAFETY: the plugin's ABI (1.2 or later) keeps an output's buffers valid and
            // unchanged until `free_output`, which may run on any thread after any later call;
            // `lease` calls it once, when the engine drops the gradient.
            unsafe { Floats::lent(ptr, len, move || drop(lease)) }
        } else {
            // SAFETY: as above; `lease` frees the output when this scope ends.
            unsafe { copy_buffer(ptr, len, "gradient", plugin) }?.into()
        };
        Ok(GradOutput {
            logits,
            num_classes: out.num_classes,
            gradient,
            gradient_shape,
            classes,
        })
    }
}

/// A plugin's output, given back with `free_output` when dropped.
struct Lease {
    out: VogGradOutput,
    free: unsafe extern "C" fn(output: *mut VogGradOutput),
}

// SAFETY: only plugins of ABI 1.2 or later have their outputs held past the call (and so moved
// across threads); their ABI lets `free_output` run on any thread, and nothing else touches the
// output's pointers but reads of its buffers.
unsafe impl Send for Lease {}

impl Drop for Lease {
    fn drop(&mut self) {
        // SAFETY: `out` was filled by this plugin's `input_gradients` and is released once, here.
        unsafe { (self.free)(&mut self.out) };
    }
}

/// The logger handed to every plugin: plugin events become host `tracing` events with target
/// `vog::plugin` and the plugin's own target in the `plugin_target` field.
fn host_logger() -> VogLogger {
    VogLogger {
        context: std::ptr::null_mut(),
        enabled: Some(host_enabled),
        log: Some(host_log),
    }
}

unsafe extern "C" fn host_enabled(_context: *mut c_void, level: VogLevel, _target: VogStr) -> bool {
    tracing::level_filters::LevelFilter::current() >= level_from_u32(level)
}

unsafe extern "C" fn host_log(
    _context: *mut c_void,
    level: VogLevel,
    target: VogStr,
    message: VogStr,
) {
    // SAFETY: ABI rule 1: both strings are lent for this call.
    let (target, message) = unsafe { (target.to_string_lossy(), message.to_string_lossy()) };
    match level_from_u32(level) {
        tracing::Level::ERROR => {
            tracing::error!(target: "vog::plugin", plugin_target = %target, "{message}")
        }
        tracing::Level::WARN => {
            tracing::warn!(target: "vog::plugin", plugin_target = %target, "{message}")
        }
        tracing::Level::INFO => {
            tracing::info!(target: "vog::plugin", plugin_target = %target, "{message}")
        }
        tracing::Level::DEBUG => {
            tracing::debug!(target: "vog::plugin", plugin_target = %target, "{message}")
        }
        tracing::Level::TRACE => {
            tracing::trace!(target: "vog::plugin", plugin_target = %target, "{message}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" fn init(_: VogLogger) -> i32 {
        7
    }
    unsafe extern "C" fn info(_: *mut VogPluginInfo) -> i32 {
        0
    }
    unsafe extern "C" fn last_error(_: *mut VogErrorInfo) {}
    unsafe extern "C" fn self_test(_: *mut VogStr) -> i32 {
        0
    }
    unsafe extern "C" fn create(_: VogStr, _: *mut *mut c_void) -> i32 {
        0
    }
    unsafe extern "C" fn destroy(_: *mut c_void) {}
    unsafe extern "C" fn load(_: *mut c_void, _: VogStr, _: *mut *mut c_void) -> i32 {
        0
    }
    unsafe extern "C" fn model_info(_: *mut c_void, _: *mut VogModelInfo) -> i32 {
        0
    }
    unsafe extern "C" fn unload(_: *mut c_void) {}
    unsafe extern "C" fn input_gradients(
        _: *mut c_void,
        _: *const VogGradRequest,
        _: *mut VogGradOutput,
    ) -> i32 {
        0
    }
    unsafe extern "C" fn free_output(_: *mut VogGradOutput) {}
    unsafe extern "C" fn extra() -> i32 {
        42
    }

    /// A 1.0 table as a plugin built for ABI 1.0 exports it.
    fn table_1_0(size: usize) -> VogPluginVTable {
        VogPluginVTable {
            size,
            abi_version: ABI_VERSION,
            init,
            info,
            last_error,
            self_test,
            create,
            destroy,
            load,
            model_info,
            unload,
            input_gradients,
            free_output,
            // Filled in, but past a 1.0 table's declared size: a host must not read it.
            model_channel_axis: Some(channel_axis_last),
        }
    }

    unsafe extern "C" fn channel_axis_last(_: *mut c_void) -> u32 {
        vog_plugin::channel_axis::LAST
    }

    /// The table of a later minor: 1.0's entries, then an appended one.
    #[repr(C)]
    struct Next {
        base: VogPluginVTable,
        extra: Option<unsafe extern "C" fn() -> i32>,
    }

    #[test]
    fn a_1_0_table_loads_into_a_host_with_an_appended_entry() {
        // 1.1 appended `model_channel_axis` to 1.0's table.
        assert_eq!(
            ABI_1_0_TABLE_SIZE + std::mem::size_of::<usize>(),
            std::mem::size_of::<VogPluginVTable>()
        );
        let old = table_1_0(ABI_1_0_TABLE_SIZE);
        // SAFETY: `old` declares 1.0's size; the host's 1.1 table zeroes what lies past it.
        let t = unsafe { read_table::<VogPluginVTable>((&old as *const VogPluginVTable).cast()) }
            .unwrap();
        assert!(
            t.model_channel_axis.is_none(),
            "1.1's entry is absent from a 1.0 table"
        );
        // SAFETY: `old` is a 1.0 table declaring its own size; `Next` appends an `Option`.
        let next = unsafe { read_table::<Next>((&old as *const VogPluginVTable).cast()) }.unwrap();
        assert!(
            next.extra.is_none(),
            "an entry past the plugin's table is absent"
        );
        assert_eq!(next.base.size, ABI_1_0_TABLE_SIZE);
        // SAFETY: `init` is the dummy above, which ignores its logger.
        assert_eq!(unsafe { (next.base.init)(host_logger()) }, 7);
    }

    #[test]
    fn a_newer_table_loads_into_this_host_and_a_short_one_is_refused() {
        let newer = Next {
            base: table_1_0(std::mem::size_of::<Next>()),
            extra: Some(extra),
        };
        // SAFETY: `newer` declares its full size; this host reads the 1.0 prefix.
        let t = unsafe { read_table::<VogPluginVTable>((&newer as *const Next).cast()) }.unwrap();
        assert_eq!(t.size, std::mem::size_of::<Next>());
        // SAFETY: `extra` is the dummy above.
        assert_eq!(unsafe { (newer.extra.unwrap())() }, 42);
        // The same table, read by a host that knows the appended entry, finds it.
        // SAFETY: as above.
        let n = unsafe { read_table::<Next>((&newer as *const Next).cast()) }.unwrap();
        // SAFETY: `extra` is the dummy above.
        assert_eq!(unsafe { (n.extra.unwrap())() }, 42);
        let short = table_1_0(ABI_1_0_TABLE_SIZE - 8);
        // SAFETY: a readable table that declares a size below 1.0's.
        let err =
            unsafe { read_table::<VogPluginVTable>((&short as *const VogPluginVTable).cast()) }
                .err()
                .unwrap();
        assert!(err.contains("needs at least"), "{err}");
    }
}
