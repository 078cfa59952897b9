//! Process CPU time, peak memory and thread count for `foley bench`, from /proc on Linux (zero elsewhere: the
//! report then says 0 rather than guessing).

/// User + system CPU seconds of this process so far (all threads), from /proc/self/stat.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // fields after the parenthesised command name; utime and stime are fields 14 and 15 (1-based)
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // field 3 (state) is f[0], so field n is f[n - 3]; USER_HZ is 100 on every Linux we target
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident set size in MB (VmHWM of /proc/self/status).
pub fn peak_rss_mb() -> f64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return 0.0 };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The number of threads candle's CPU kernels use (RAYON_NUM_THREADS, else the cores).
pub fn threads() -> usize {
    candle_core::utils::get_num_threads()
}

/// The processor, as every benchmark number must name it: model name, family/model and the SIMD extensions that
/// decide which kernels run, e.g. `AMD EPYC (family 25 model 17; avx2 fma avx512f avx512_bf16)`, from
/// /proc/cpuinfo (empty elsewhere).
pub fn cpu_model() -> String {
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else { return String::new() };
    let field = |name: &str| {
        info.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let flags = field("flags");
    let simd: Vec<&str> = ["avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"]
        .into_iter()
        .filter(|f| flags.split_whitespace().any(|x| x == *f))
        .collect();
    format!("{} (family {} model {}; {})", field("model name"), field("cpu family"), field("model"), simd.join(" "))
}
