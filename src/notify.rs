//! Cross-worker wake-ups (push delivery): not wired yet; posts are picked up
//! by each worker's `interval` loop.

use crate::shm::ZoneHandle;

/// Wakes the other workers attached to `handle`'s zone.
pub fn wake_others(_handle: &ZoneHandle, _slot: Option<usize>) {}
