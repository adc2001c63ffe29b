//! The host's wasmtime engine, linker, epoch ticker and guest thread pool.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{info, warn};
use wasmtime::component::Linker;
use wasmtime::{Cache, CacheConfig, Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::{HostError, Result};
use crate::wasm::state::GuestState;

/// How often the epoch advances: the granularity of deadlines and of guest yields.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Most of a freed instance's tables kept resident (see [`WasmConfig::keep_resident`]).
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// Limits and resources for running guests. Host flags set these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WasmConfig {
    /// How long one invocation may run before it is stopped.
    pub max_execution_time: Duration,
    /// Linear memory a component instance may use, in bytes.
    pub max_component_memory: u64,
    /// Largest component file accepted, in bytes.
    pub max_component_size: u64,
    /// How long a call waits for a free instance slot (`max_instances`) before failing busy.
    pub max_queue_wait: Duration,
    /// Calls that may wait for a free instance slot per component; more are refused `busy` at
    /// once (so a flood of calls cannot pile up tasks and payloads).
    pub max_queued_calls: usize,
    /// Concurrent instances the pooling allocator pre-reserves; `0` uses on-demand allocation.
    pub pool_instances: u32,
    /// Bytes of each pooled instance's linear memory reset in place (not returned to the
    /// kernel) when the instance is freed: calls then reuse warm pages instead of faulting them
    /// in again. At most this much stays resident per idle pool slot (wasmtime keeps up to 100
    /// idle slots warm). `0` returns everything with `madvise`.
    pub keep_resident: u64,
    /// Guest memory behind virtual-memory guard pages (wasmtime's default, and Trellis's): an
    /// out-of-bounds access faults in hardware and guest memory accesses keep wasmtime's
    /// Spectre hardening. The price is paid on instance reuse: a slot whose memory grew has
    /// its page protections changed back (`mprotect`), and each change interrupts every core
    /// running the process (TLB shootdown), which dominates short calls and requests.
    /// Without guard pages (`--no-guard-pages`) guest code checks bounds itself and a reused
    /// slot keeps its protections, but wasmtime then compiles guest memory accesses without
    /// Spectre mitigations: for hosts that run only trusted components.
    pub guard_pages: bool,
    /// Where compiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Threads guests run on; `0` means one per CPU.
    pub guest_threads: usize,
    /// Which files components may be loaded from (none by default).
    pub file_load: crate::wasm::sources::load::FileLoad,
    /// How components are pulled from OCI registries.
    pub oci: crate::wasm::sources::oci::OciConfig,
}

impl Default for WasmConfig {
    fn default() -> Self {
        Self {
            max_execution_time: Duration::from_secs(600),
            max_component_memory: 256 << 20,
            max_component_size: 50 << 20,
            max_queue_wait: Duration::from_secs(10),
            max_queued_calls: 1000,
            pool_instances: 1000,
            keep_resident: 1 << 20,
            guard_pages: true,
            cache_dir: None,
            guest_threads: 0,
            file_load: crate::wasm::sources::load::FileLoad::default(),
            oci: crate::wasm::sources::oci::OciConfig::default(),
        }
    }
}

/// One per host: the engine every component of the host is compiled with, the linker holding
/// what the host offers to guests, and the threads guests run on.
pub struct WasmRuntime {
    engine: Engine,
    linker: Linker<GuestState>,
    config: WasmConfig,
    /// Guest execution: a multi-threaded tokio runtime, so guests use every core and never run
    /// on the actix arbiter thread.
    guests: Option<tokio::runtime::Runtime>,
    guests_handle: tokio::runtime::Handle,
    ticker: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    pooling: bool,
    /// Compiled components by content, shared between component ids.
    compiled: crate::wasm::compiled::CompiledCache,
    /// What calls record (counts, durations, busy instances).
    metrics: crate::metrics::Metrics,
    /// The taps `trellis spy` arms.
    spy: crate::spy::Spy,
}

impl std::fmt::Debug for WasmRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRuntime").field("config", &self.config).field("pooling", &self.pooling).finish_non_exhaustive()
    }
}

impl WasmRuntime {
    /// Builds the engine (pooling allocator when possible, else on-demand with a warning),
    /// starts the epoch ticker and the guest threads.
    ///
    /// # Errors
    /// [`HostError::Wasm`] when no engine can be built or the cache directory is unusable.
    pub fn new(config: WasmConfig) -> Result<Self> {
        let memory = usize::try_from(config.max_component_memory)
            .map_err(|_| crate::error::ConfigError::AddressSpace)?;
        let mut pooling = config.pool_instances > 0;
        let engine = match Self::build_engine(&config, memory, pooling) {
            Ok(engine) => engine,
            Err(e) if pooling => {
                warn!(error = %e, "pooling allocator unavailable here; falling back to on-demand instance allocation");
                pooling = false;
                Self::build_engine(&config, memory, false)?
            }
            Err(e) => return Err(e),
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| HostError::Wasm(format!("cannot link WASI: {e}")))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| HostError::Wasm(format!("cannot link wasi:http: {e}")))?;
        // WASI 0.3 beside 0.2: the same context (which grants nothing), so a 0.3 component has
        // what a 0.2 one has. Outgoing 0.3 HTTP is refused by its hooks (`GuestState`).
        wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(|e| HostError::Wasm(format!("cannot link WASI 0.3: {e}")))?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(|e| HostError::Wasm(format!("cannot link wasi:http 0.3: {e}")))?;

        let threads = if config.guest_threads == 0 {
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
        } else {
            config.guest_threads
        };
        let guests = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("trellis-guest")
            .enable_all()
            .build()
            .map_err(|e| HostError::Runtime(format!("cannot start guest threads: {e}")))?;

        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("trellis-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| HostError::Runtime(format!("cannot start the epoch ticker: {e}")))?
        };
        let pagemap_scan = pooling && PoolingAllocationConfig::is_pagemap_scan_available();
        info!(pooling, pagemap_scan, keep_resident = config.keep_resident, guard_pages = config.guard_pages, guest_threads = threads, cache = ?config.cache_dir, "wasm runtime ready");
        let guests_handle = guests.handle().clone();
        Ok(Self {
            engine,
            linker,
            config,
            guests: Some(guests),
            guests_handle,
            ticker: Some((stop, ticker)),
            pooling,
            compiled: crate::wasm::compiled::CompiledCache::default(),
            metrics: crate::metrics::Metrics::default(),
            spy: crate::spy::Spy::new("").0,
        })
    }

    fn build_engine(config: &WasmConfig, memory: usize, pooling: bool) -> Result<Engine> {
        let mut c = Config::new();
        c.wasm_component_model(true).epoch_interruption(true).cranelift_opt_level(wasmtime::OptLevel::Speed);
        // Component-model async: WASI 0.3 (`async` exports and imports, `stream`, `future`).
        c.wasm_component_model_async(true);
        if !config.guard_pages {
            // Explicit bounds checks instead of traps from guard pages; wasmtime requires
            // (and sets) its heap and table Spectre mitigations off with this. See
            // `WasmConfig::guard_pages`.
            c.signals_based_traps(false).memory_guard_size(0);
        }
        if pooling {
            let mut pool = PoolingAllocationConfig::default();
            let n = config.pool_instances;
            pool.total_component_instances(n)
                .total_core_instances(n.saturating_mul(2))
                .total_memories(n)
                .total_tables(n.saturating_mul(2))
                .total_stacks(n)
                .max_memory_size(memory);
            // Reset a freed instance's memory by rewriting its dirty pages instead of `madvise`:
            // no TLB-shootdown interrupts to every core and no page faults on the slot's next
            // use. With PAGEMAP_SCAN (Linux 6.7+) only pages the guest touched are rewritten;
            // without it the first `keep_resident` bytes are `memset`.
            let keep = usize::try_from(config.keep_resident).unwrap_or(usize::MAX);
            pool.linear_memory_keep_resident(keep).table_keep_resident(keep.min(TABLE_KEEP_RESIDENT)).pagemap_scan(Enabled::Auto);
            c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        if let Some(dir) = &config.cache_dir {
            std::fs::create_dir_all(dir)
                .map_err(|source| HostError::File { what: "compile cache directory", path: dir.clone(), source })?;
            let mut cache = CacheConfig::new();
            cache.with_directory(dir.clone());
            let cache = Cache::new(cache).map_err(|e| HostError::Wasm(format!("compile cache in {}: {e}", dir.display())))?;
            c.cache(Some(cache));
        }
        let engine = Engine::new(&c).map_err(|e| HostError::Wasm(format!("cannot build the wasm engine: {e}")))?;
        if pooling {
            // The pool reserves its address space lazily on some systems: prove it works now.
            probe(&engine)?;
        }
        Ok(engine)
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// What the host links into every component.
    pub fn linker(&self) -> &Linker<GuestState> {
        &self.linker
    }

    /// The limits.
    pub fn config(&self) -> &WasmConfig {
        &self.config
    }

    /// Where guest work runs.
    pub fn guests(&self) -> &tokio::runtime::Handle {
        &self.guests_handle
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// Compiled components in use on this host, by content.
    pub fn compiled(&self) -> &crate::wasm::compiled::CompiledCache {
        &self.compiled
    }

    /// The metrics calls record into.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// The taps of this host's components.
    pub fn spy(&self) -> &crate::spy::Spy {
        &self.spy
    }

    /// The same runtime recording calls into `spy` (the host's).
    #[must_use]
    pub fn with_spy(mut self, spy: crate::spy::Spy) -> Self {
        self.spy = spy;
        self
    }

    /// The same runtime recording into `metrics` (the host's, labelled with its lattice and id).
    #[must_use]
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = metrics;
        self
    }
}

/// Instantiates an empty component once, so a pool that cannot reserve memory fails here (and
/// falls back) rather than on the first real call.
fn probe(engine: &Engine) -> Result<()> {
    let component = wasmtime::component::Component::new(engine, "(component (core module (memory 1)))")
        .map_err(|e| HostError::Wasm(format!("probe component: {e}")))?;
    let linker = Linker::<()>::new(engine);
    let mut store = wasmtime::Store::new(engine, ());
    linker.instantiate(&mut store, &component).map_err(|e| HostError::Wasm(format!("probe instance: {e}")))?;
    Ok(())
}

impl Drop for WasmRuntime {
    fn drop(&mut self) {
        if let Some((stop, ticker)) = self.ticker.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = ticker.join();
        }
        if let Some(rt) = self.guests.take() {
            // Dropping a runtime inside another runtime's context panics; this never blocks.
            rt.shutdown_background();
        }
    }
}
