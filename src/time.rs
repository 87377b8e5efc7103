//! A millisecond clock that works natively and in the browser (`std::time::Instant` panics on
//! wasm32): for cold-start breakdowns and latency figures. And the host CPU every speed figure
//! names ([`host_cpu`]).

/// Milliseconds since an arbitrary origin (fixed for the process / page).
pub fn now_ms() -> f64 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        use std::time::Instant;
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
    }
    #[cfg(target_arch = "wasm32")]
    {
        web_sys::window().and_then(|w| w.performance()).map_or_else(js_sys::Date::now, |p| p.now())
    }
}

/// Runs `f` and returns its result with the milliseconds it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = now_ms();
    let out = f();
    (out, now_ms() - start)
}

/// The host CPU's model name (`/proc/cpuinfo`), empty where it is unknown (other systems, the
/// browser). Software GPUs run on it, so a speed figure means little without it.
pub fn host_cpu() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_default()
}
