//! [`Floats`]: f32 values a backend hands over, in its own `Vec` or lent from the memory that
//! computed them (a plugin's output, a framework's tensor) until the receiver drops them — so a
//! gradient crosses from the runtime to the statistics without a copy.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

/// f32 values, owned or lent. Reads as a slice; [`Floats::into_vec`] and [`Clone`] copy a lent
/// buffer, and dropping it gives the buffer back to its owner.
pub struct Floats(Repr);

enum Repr {
    Owned(Vec<f32>),
    Lent(Lent),
}

struct Lent {
    ptr: *const f32,
    len: usize,
    release: Option<Box<dyn FnOnce() + Send>>,
}

impl Lent {
    fn values(&self) -> &[f32] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `Floats::lent`'s contract: `len` valid f32s at `ptr` until `release` runs,
        // which is not before `self` is dropped.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

// SAFETY: a lent buffer is only read, never written, through `Floats`; its owner promised (in
// `Floats::lent`) that it stays valid and unchanged until `release` runs, from any thread, and
// `release` itself is `Send`.
unsafe impl Send for Floats {}
// SAFETY: shared access only reads the buffer (see above).
unsafe impl Sync for Floats {}

impl Floats {
    /// Values lent by their owner: `len` f32s at `ptr`, handed back by calling `release` (once,
    /// when the `Floats` is dropped, on whatever thread drops it).
    ///
    /// # Safety
    /// `ptr` must point to `len` initialized, properly aligned f32s (or `len` must be 0) that stay
    /// valid and unchanged until `release` runs, and `release` must be safe to run on any thread.
    pub unsafe fn lent(
        ptr: *const f32,
        len: usize,
        release: impl FnOnce() + Send + 'static,
    ) -> Self {
        Floats(Repr::Lent(Lent {
            ptr,
            len,
            release: Some(Box::new(release)),
        }))
    }

    /// Whether the values are lent (not in a `Vec` of this process's allocator).
    pub fn is_lent(&self) -> bool {
        matches!(self.0, Repr::Lent(_))
    }

    /// The values as a `Vec`: free when owned, a copy (and the buffer given back) when lent.
    pub fn into_vec(self) -> Vec<f32> {
        match self.0 {
            Repr::Owned(v) => v,
            Repr::Lent(l) => l.values().to_vec(),
        }
    }

    /// The `Vec` when owned; `None` (and the buffer given back) when lent. For reusing
    /// allocations.
    pub fn into_owned(self) -> Option<Vec<f32>> {
        match self.0 {
            Repr::Owned(v) => Some(v),
            Repr::Lent(_) => None,
        }
    }
}

impl Deref for Floats {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match &self.0 {
            Repr::Owned(v) => v,
            Repr::Lent(l) => l.values(),
        }
    }
}

impl From<Vec<f32>> for Floats {
    fn from(v: Vec<f32>) -> Self {
        Floats(Repr::Owned(v))
    }
}

impl Default for Floats {
    fn default() -> Self {
        Floats(Repr::Owned(Vec::new()))
    }
}

impl Clone for Floats {
    fn clone(&self) -> Self {
        Floats(Repr::Owned(self.to_vec()))
    }
}

impl PartialEq for Floats {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl fmt::Debug for Floats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.is_lent() { "lent" } else { "owned" };
        write!(f, "Floats({what}, {:?})", &**self)
    }
}

/// Buffers handed out as lent [`Floats`] and taken back when those are dropped, so a backend that
/// returns one gradient per call reuses a few allocations instead of asking the system for fresh
/// (page-faulting, zeroed) memory every batch. Clones share one pool. A buffer waits in the pool
/// only after it was lent and dropped, so the pool never holds more than were alive at once (and
/// at most [`Recycler::KEEP`]); the rest are freed.
#[derive(Clone, Default)]
pub struct Recycler(Arc<Mutex<Vec<Vec<f32>>>>);

impl Recycler {
    /// How many returned buffers the pool keeps.
    pub const KEEP: usize = 16;

    /// A buffer of `len` values: a returned one when there is one (its old values kept where
    /// they fit, so the caller overwrites all of them), else a new zeroed one.
    pub fn take(&self, len: usize) -> Vec<f32> {
        let reused = match self.0.lock() {
            Ok(mut pool) => pool.pop(),
            Err(_) => None,
        };
        let mut v = reused.unwrap_or_default();
        v.resize(len, 0.0);
        v
    }

    /// `v` lent out as [`Floats`]; it comes back to the pool when they are dropped.
    pub fn lend(&self, v: Vec<f32>) -> Floats {
        let (ptr, len) = (v.as_ptr(), v.len());
        let pool = Arc::clone(&self.0);
        // SAFETY: `v` moves into the release closure, which neither writes nor drops it before it
        // runs; moving a `Vec` does not move its heap buffer, so `ptr` stays valid and unchanged
        // until then. The closure only takes a mutex, safe on any thread.
        unsafe {
            Floats::lent(ptr, len, move || {
                if let Ok(mut pool) = pool.lock() {
                    if pool.len() < Self::KEEP {
                        pool.push(v);
                    }
                }
            })
        }
    }

    /// Buffers waiting in the pool.
    pub fn pooled(&self) -> usize {
        self.0.lock().map_or(0, |p| p.len())
    }
}

impl fmt::Debug for Recycler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recycler({} pooled)", self.pooled())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn lent_values_read_like_a_slice_and_go_back_once() {
        let buf: Box<[f32]> = vec![1.0, 2.0, 3.0].into_boxed_slice();
        let ptr = buf.as_ptr();
        let released = Arc::new(AtomicUsize::new(0));
        let r = released.clone();
        // SAFETY: `buf` lives in the release closure until it runs.
        let f = unsafe {
            Floats::lent(ptr, 3, move || {
                drop(buf);
                r.fetch_add(1, Ordering::SeqCst);
            })
        };
        assert!(f.is_lent());
        assert_eq!(&*f, &[1.0, 2.0, 3.0]);
        let copy = f.clone();
        assert!(!copy.is_lent());
        assert_eq!(copy, f);
        let moved = std::thread::spawn(move || f.into_vec()).join().unwrap();
        assert_eq!(moved, [1.0, 2.0, 3.0]);
        assert_eq!(released.load(Ordering::SeqCst), 1);
        assert_eq!(Floats::from(vec![4.0]).into_owned(), Some(vec![4.0]));
        // SAFETY: an empty lent buffer is never read.
        let empty = unsafe { Floats::lent(std::ptr::null(), 0, || {}) };
        assert!(empty.is_empty() && empty.into_owned().is_none());
    }

    #[test]
    fn a_recycler_reuses_what_comes_back_and_keeps_a_few() {
        let r = Recycler::default();
        let mut v = r.take(3);
        assert_eq!(v, [0.0; 3]);
        v.copy_from_slice(&[1.0, 2.0, 3.0]);
        let at = v.as_ptr();
        let f = r.lend(v);
        assert!(f.is_lent());
        assert_eq!(&*f, &[1.0, 2.0, 3.0]);
        assert_eq!(r.pooled(), 0, "back only when dropped");
        // Dropped on another thread, it comes back; the next take reuses its allocation.
        std::thread::spawn(move || drop(f)).join().unwrap();
        assert_eq!(r.pooled(), 1);
        let again = r.take(2);
        assert_eq!(again.as_ptr(), at);
        assert_eq!(again, [1.0, 2.0]);
        assert_eq!(r.pooled(), 0);
        // Never more than KEEP wait.
        let lent: Vec<Floats> = (0..Recycler::KEEP + 3).map(|_| r.lend(r.take(8))).collect();
        drop(lent);
        assert_eq!(r.pooled(), Recycler::KEEP);
        assert_eq!(r.take(16).len(), 16);
    }
}
