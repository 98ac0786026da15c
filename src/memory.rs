//! Giving freed memory back to the operating system.

/// Returns the allocator's freed memory to the operating system now. mimalloc (the global
/// allocator, `main.rs`) does so only a second after a free, and only when a later free runs its
/// purge: after the password hashing arenas (19 MiB each) are released in a quiet service, nothing
/// else would, and the process would keep them resident.
#[allow(unsafe_code)]
pub fn return_freed_memory() {
    // SAFETY: mi_collect takes no pointers, touches only the allocator's own state, and may be
    // called on any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
