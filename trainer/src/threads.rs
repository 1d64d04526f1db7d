//! Who runs candle's element-wise CPU ops.
//!
//! candle 0.11 runs its element-wise CPU ops (add, mul, affine, ...) on a thread pool of its
//! own beside rayon's (`CANDLE_NUM_THREADS`, by default as many threads as rayon), entered
//! through one lock. The trainer already keeps every core busy with whole batches
//! (`train/shards.rs`, `Classifier::map_batches`), so two batches' small ops met at that lock,
//! and the pool's extra thread spun on a core the other batch needed. With the pool off (each
//! op on the thread that calls it) MiniLM training on two cores went from a median of 15.8 to
//! 17.1 samples/s over four interleaved rounds, and predict from ~59 to ~63 (four runs each).

/// The variable candle sizes its pool by.
const CANDLE_NUM_THREADS: &str = "CANDLE_NUM_THREADS";

/// Turns candle's pool off (`CANDLE_NUM_THREADS=1`) unless the environment sets it. Call first
/// thing in `main`, before any other thread starts: it changes the process environment.
pub fn tune_candle() {
    if std::env::var_os(CANDLE_NUM_THREADS).is_none() {
        // SAFETY: `main` calls this before it starts any thread, so no other thread can be
        // reading or writing the environment at the same time.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var(CANDLE_NUM_THREADS, "1");
        }
    }
}
