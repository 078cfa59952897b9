//! Process allocator tuning for CPU inference.
//!
//! candle allocates a fresh buffer for every intermediate tensor. glibc's malloc serves large blocks (above a
//! threshold of at most 32 MiB) straight from `mmap` and unmaps them on `free`, so every op of a forward pass
//! page-faults its output in, 4 KiB at a time, and unmaps it again; with worker threads each unmap is also a
//! TLB-shootdown interrupt on every core. CLIP's activations for a 16-frame chunk are 60–240 MB, so this is
//! most of its system time. Serving every block from the heap (no `mmap` for allocations) and never trimming
//! it keeps those pages mapped for reuse; the heap stays at its high-water mark, which a process that runs the
//! same networks again and again reaches anyway.
//!
//! Measured (2-core AVX-512 machine, `RAYON_NUM_THREADS=2`, glibc 2.36): `foley bench --model small_16k
//! --duration 3 --steps 2` CLIP stage 96.7 s → 68.2 s, Synchformer 18.7 s → 10.8 s, minor page faults
//! 98 M → 2 M (the 8 s run); MM-DiT forward (`dit_forward_bench`, batch 2) 0.70 s → 0.47 s.

/// Applies the malloc settings above (glibc on Linux; elsewhere a no-op; `FOLEY_MALLOC=system` in the
/// environment leaves glibc's defaults, e.g. for a long-lived process that must give memory back). Call once at
/// start-up, before spawning threads. Returns whether they were applied.
pub fn tune_for_inference() -> bool {
    if std::env::var("FOLEY_MALLOC").is_ok_and(|v| v.trim() == "system") {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only adjusts allocator parameters; called before other threads allocate.
        unsafe { libc::mallopt(libc::M_MMAP_MAX, 0) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn applies_on_glibc() {
        let opted_out = std::env::var("FOLEY_MALLOC").is_ok_and(|v| v.trim() == "system");
        let applied = super::tune_for_inference();
        assert_eq!(applied, cfg!(all(target_os = "linux", target_env = "gnu")) && !opted_out);
        // large allocations still work (served from the heap now)
        let v = vec![1u8; 64 << 20];
        assert_eq!(v.iter().map(|&b| b as usize).sum::<usize>(), 64 << 20);
    }
}
