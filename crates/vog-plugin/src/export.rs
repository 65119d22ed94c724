//! The plugin side of the ABI, instantiated by [`export_backend!`](crate::export_backend). Every
//! function checks its pointers, runs its body under `catch_unwind`, and reports failures through
//! the calling thread's error slot.

use std::cell::RefCell;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use vog_core::{Classes, GradOutput, GradRequest, Model, Target, TensorView};

use crate::error::OwnedErrorInfo;
use crate::logging::HostSubscriber;
use crate::{
    status, target, PluginBackend, VogErrorInfo, VogGradOutput, VogGradRequest, VogLogger,
    VogModelInfo, VogPluginInfo, VogPluginVTable, VogStr, ABI_VERSION, MAX_RANK,
};

thread_local! {
    /// The last failure on this thread (ownership rule 5).
    static LAST_ERROR: RefCell<OwnedErrorInfo> = RefCell::new(OwnedErrorInfo::default());
    /// Strings handed to the host by `info` and `self_test` (ownership rule 4).
    static RETURNED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// Where the last panic on this thread happened (set by the plugin's panic hook).
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The plugin's own panic hook (a plugin has its own copy of `std`, so this never touches the
/// host's): remember where the panic happened for the error report instead of printing it.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        tracing::debug!(location = at.as_deref().unwrap_or("?"), "plugin panicked");
        PANIC_AT.with(|p| *p.borrow_mut() = at);
    }));
}

type Outcome = Result<(), OwnedErrorInfo>;

fn invalid(message: &str) -> OwnedErrorInfo {
    OwnedErrorInfo {
        status: status::INVALID,
        message: message.to_string(),
        ..Default::default()
    }
}

fn core(e: vog_core::Error) -> OwnedErrorInfo {
    OwnedErrorInfo::from_error(&e)
}

/// Runs `body`, turning errors and panics into a status and the thread's error slot.
fn guard(function: &'static str, body: impl FnOnce() -> Outcome) -> i32 {
    let info = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return status::OK,
        Ok(Err(info)) => info,
        Err(payload) => {
            let mut info = OwnedErrorInfo::from_panic(function, payload.as_ref());
            if let Some(at) = PANIC_AT.with(|p| p.borrow_mut().take()) {
                info.message.push_str(&format!(" (at {at})"));
            }
            info
        }
    };
    let code = info.status;
    LAST_ERROR.with(|slot| *slot.borrow_mut() = info);
    code
}

/// Stores strings for the host and returns views of them (valid until the next call).
fn hand_out(strings: Vec<String>) -> Vec<VogStr> {
    RETURNED.with(|r| {
        *r.borrow_mut() = strings;
        r.borrow().iter().map(|s| VogStr::new(s)).collect()
    })
}

/// # Safety
/// `logger` follows ownership rule 8.
unsafe extern "C" fn init(logger: VogLogger) -> i32 {
    guard("init", || {
        // A second `init` (or a library that set its own subscriber) keeps the first one.
        let _ = tracing::subscriber::set_global_default(HostSubscriber::new(logger));
        install_panic_hook();
        Ok(())
    })
}

/// # Safety
/// `out` is null or valid for a write.
unsafe extern "C" fn info<B: PluginBackend>(out: *mut VogPluginInfo) -> i32 {
    guard("info", || {
        if out.is_null() {
            return Err(invalid("info: null output pointer"));
        }
        let i = B::describe();
        let s = hand_out(vec![
            i.name,
            i.version,
            i.extensions.join(","),
            i.devices.join(","),
        ]);
        // SAFETY: `out` is non-null and the host passes a writable `VogPluginInfo`.
        unsafe {
            out.write(VogPluginInfo {
                name: s[0],
                version: s[1],
                extensions: s[2],
                devices: s[3],
            })
        };
        Ok(())
    })
}

/// # Safety
/// `out` is null or valid for a write.
unsafe extern "C" fn last_error(out: *mut VogErrorInfo) {
    if out.is_null() {
        return;
    }
    LAST_ERROR.with(|slot| {
        let e = slot.borrow();
        let info = VogErrorInfo {
            status: e.status,
            message: VogStr::new(&e.message),
            subject: VogStr::new(&e.subject),
            detail: e.detail,
        };
        // SAFETY: `out` is non-null and the host passes a writable `VogErrorInfo`; the strings
        // live in this thread's slot until its next failure (rule 4).
        unsafe { out.write(info) };
    });
}

/// # Safety
/// `report` is null or valid for a write.
unsafe extern "C" fn self_test<B: PluginBackend>(report: *mut VogStr) -> i32 {
    guard("self_test", || {
        if report.is_null() {
            return Err(invalid("self_test: null output pointer"));
        }
        let text = B::self_test().map_err(core)?;
        let s = hand_out(vec![text]);
        // SAFETY: `report` is non-null and writable (checked above; host contract).
        unsafe { report.write(s[0]) };
        Ok(())
    })
}

/// # Safety
/// `options` is borrowed for the call (rule 1); `out` is null or valid for a write.
unsafe extern "C" fn create<B: PluginBackend>(options: VogStr, out: *mut *mut c_void) -> i32 {
    guard("create", || {
        if out.is_null() {
            return Err(invalid("create: null output pointer"));
        }
        // SAFETY: the host lends `options` for the duration of this call.
        let text =
            unsafe { options.to_str() }.map_err(|_| invalid("backend options are not UTF-8"))?;
        let backend = B::create(text).map_err(core)?;
        // SAFETY: `out` is non-null and writable; ownership of the box passes to the host handle.
        unsafe { out.write(Box::into_raw(Box::new(backend)).cast()) };
        Ok(())
    })
}

/// # Safety
/// `backend` was returned by `create::<B>` and is released once (rule 2).
unsafe extern "C" fn destroy<B: PluginBackend>(backend: *mut c_void) {
    guard("destroy", || {
        if !backend.is_null() {
            // SAFETY: `backend` came from `Box::into_raw(Box::<B>)` in `create` and is released once.
            drop(unsafe { Box::from_raw(backend.cast::<B>()) });
        }
        Ok(())
    });
}

/// # Safety
/// `backend` is a live handle from `create::<B>`; `path` is borrowed; `out` is writable.
unsafe extern "C" fn load<B: PluginBackend>(
    backend: *mut c_void,
    path: VogStr,
    out: *mut *mut c_void,
) -> i32 {
    guard("load", || {
        if backend.is_null() || out.is_null() {
            return Err(invalid("load: null handle or output pointer"));
        }
        // SAFETY: `backend` is a live `B` (rule 3: the host keeps it alive); shared access only.
        let b = unsafe { &*backend.cast::<B>() };
        // SAFETY: the host lends `path` for the duration of this call.
        let path = unsafe { path.to_str() }.map_err(|_| invalid("checkpoint path is not UTF-8"))?;
        let model: Box<dyn Model> = b.load(Path::new(path)).map_err(core)?;
        // SAFETY: `out` is non-null and writable; the double box gives the host a thin pointer.
        unsafe { out.write(Box::into_raw(Box::new(model)).cast()) };
        Ok(())
    })
}

/// # Safety
/// `model` is a live handle from `load`; `out` is writable.
unsafe extern "C" fn model_info(model: *mut c_void, out: *mut VogModelInfo) -> i32 {
    guard("model_info", || {
        if model.is_null() || out.is_null() {
            return Err(invalid("model_info: null handle or output pointer"));
        }
        // SAFETY: `model` came from `load` (a `Box<Box<dyn Model>>`) and is still alive.
        let m = unsafe { &*model.cast::<Box<dyn Model>>() };
        let i = m.info();
        let mut info = VogModelInfo {
            input_rank: u32::MAX,
            input_shape: [0; MAX_RANK],
            num_classes: u64::MAX,
        };
        if let Some(shape) = i.input_shape.filter(|s| s.len() <= MAX_RANK) {
            info.input_rank = shape.len() as u32;
            for (slot, d) in info.input_shape.iter_mut().zip(shape) {
                *slot = d as u64;
            }
        }
        if let Some(c) = i.num_classes {
            info.num_classes = c as u64;
        }
        // SAFETY: `out` is non-null and writable.
        unsafe { out.write(info) };
        Ok(())
    })
}

/// # Safety
/// `model` is a live handle from `load` (a null handle answers "unknown").
unsafe extern "C" fn model_channel_axis(model: *mut c_void) -> u32 {
    if model.is_null() {
        return crate::channel_axis::UNKNOWN;
    }
    let answer = std::panic::catch_unwind(|| {
        // SAFETY: `model` came from `load` (a `Box<Box<dyn Model>>`) and is still alive.
        let m = unsafe { &*model.cast::<Box<dyn Model>>() };
        match m.info().channel_axis {
            Some(vog_core::ChannelAxis::First) => crate::channel_axis::FIRST,
            Some(vog_core::ChannelAxis::Last) => crate::channel_axis::LAST,
            _ => crate::channel_axis::UNKNOWN,
        }
    });
    answer.unwrap_or(crate::channel_axis::UNKNOWN)
}

/// # Safety
/// `model` came from `load` and is released once (rule 2).
unsafe extern "C" fn unload(model: *mut c_void) {
    guard("unload", || {
        if !model.is_null() {
            // SAFETY: `model` came from `Box::into_raw(Box::<Box<dyn Model>>)` in `load`.
            drop(unsafe { Box::from_raw(model.cast::<Box<dyn Model>>()) });
        }
        Ok(())
    });
}

/// # Safety
/// `model` is a live handle used by one thread at a time (rule 6); `request` and its buffers are
/// borrowed for the call (rule 1); `out` is writable.
unsafe extern "C" fn input_gradients(
    model: *mut c_void,
    request: *const VogGradRequest,
    out: *mut VogGradOutput,
) -> i32 {
    guard("input_gradients", || {
        if model.is_null() || request.is_null() || out.is_null() {
            return Err(invalid(
                "input_gradients: null handle, request or output pointer",
            ));
        }
        // SAFETY: `model` is a live `Box<dyn Model>` used by this thread only (rule 6).
        let m = unsafe { &mut *model.cast::<Box<dyn Model>>() };
        // SAFETY: `request` is non-null and valid for the call.
        let r = unsafe { &*request };
        if r.shape.is_null() || (r.len > 0 && r.data.is_null()) {
            return Err(invalid("input_gradients: null shape or data"));
        }
        // SAFETY: the host lends `rank` shape entries and `len` values for the call.
        let shape: Vec<usize> = unsafe { std::slice::from_raw_parts(r.shape, r.rank) }
            .iter()
            .map(|&d| d as usize)
            .collect();
        let data: &[f32] = if r.len == 0 {
            &[]
        } else {
            // SAFETY: non-null (checked above) and lent by the host for `len` values (rule 1).
            unsafe { std::slice::from_raw_parts(r.data, r.len) }
        };
        let input = TensorView::new(&shape, data).map_err(core)?;
        let classes = if r.classes.is_null() {
            Classes::Argmax
        } else {
            // SAFETY: the host lends `num_given` class indices for the call.
            Classes::Given(unsafe { std::slice::from_raw_parts(r.classes, r.num_given) })
        };
        let target = match r.target {
            target::LOGIT => Target::Logit,
            target::PROBABILITY => Target::Probability,
            other => {
                return Err(invalid(&format!(
                    "input_gradients: unknown target code {other}"
                )))
            }
        };
        let output: GradOutput = m
            .input_gradients(&GradRequest {
                input,
                classes,
                target,
            })
            .map_err(core)?;
        // The gradient's row shape travels as u64s owned by the same allocation.
        let shape64: Vec<u64> = output
            .gradient_shape
            .iter()
            .flatten()
            .map(|&d| d as u64)
            .collect();
        let owner = Box::new((output, shape64));
        let (o, shape64) = (&owner.0, &owner.1);
        let filled = VogGradOutput {
            logits: o.logits.as_ptr(),
            logits_len: o.logits.len(),
            num_classes: o.num_classes,
            gradient: o.gradient.as_ptr(),
            gradient_len: o.gradient.len(),
            gradient_shape: if o.gradient_shape.is_some() {
                shape64.as_ptr()
            } else {
                std::ptr::null()
            },
            gradient_rank: shape64.len(),
            classes: o.classes.as_ptr(),
            classes_len: o.classes.len(),
            owner: Box::into_raw(owner).cast(),
        };
        // SAFETY: `out` is non-null and writable; the buffers stay alive until `free_output`.
        unsafe { out.write(filled) };
        Ok(())
    })
}

/// # Safety
/// `output` was filled by `input_gradients` and is released once (rule 2).
unsafe extern "C" fn free_output(output: *mut VogGradOutput) {
    guard("free_output", || {
        if output.is_null() {
            return Ok(());
        }
        // SAFETY: `output` is non-null and was filled by `input_gradients`.
        let o = unsafe { &mut *output };
        if !o.owner.is_null() {
            // SAFETY: `owner` came from `Box::into_raw(Box::<(GradOutput, Vec<u64>)>)` and is
            // released once; the struct is reset so that a second call is harmless.
            drop(unsafe { Box::from_raw(o.owner.cast::<(GradOutput, Vec<u64>)>()) });
        }
        *o = VogGradOutput::EMPTY;
        Ok(())
    });
}

/// The function table for backend `B`.
pub const fn vtable<B: PluginBackend>() -> VogPluginVTable {
    VogPluginVTable {
        size: std::mem::size_of::<VogPluginVTable>(),
        abi_version: ABI_VERSION,
        init,
        info: info::<B>,
        last_error,
        self_test: self_test::<B>,
        create: create::<B>,
        destroy: destroy::<B>,
        load: load::<B>,
        model_info,
        unload,
        input_gradients,
        free_output,
        model_channel_axis: Some(model_channel_axis),
    }
}
