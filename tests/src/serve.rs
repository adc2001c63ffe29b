//! The store data of a component served the way `wasmtime serve` serves it (WASI with nothing
//! granted, wasi:http, a resource table): shared by the benchmark's `wasmtime serve` anchor
//! and the `http_instance_cost` example.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::{WasiHttpCtxView, WasiHttpView};
use wasmtime_wasi_http::WasiHttpCtx;

/// One request's store data.
pub struct Serve {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
}

impl Default for Serve {
    fn default() -> Self {
        Self { wasi: WasiCtx::builder().build(), http: WasiHttpCtx::new(), table: ResourceTable::new() }
    }
}

impl WasiView for Serve {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for Serve {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: wasmtime_wasi_http::p2::default_hooks() }
    }
}

impl wasmtime_wasi_http::p3::WasiHttpView for Serve {
    fn http(&mut self) -> wasmtime_wasi_http::p3::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::p3::WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: wasmtime_wasi_http::p3::default_hooks() }
    }
}
