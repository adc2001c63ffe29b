//! A compiled, pre-instantiated component and the functions it exports.

use std::collections::BTreeMap;
use std::time::Instant;

use tracing::info;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Type};

use crate::error::{HostError, Result};

use crate::wasm::engine::WasmRuntime;
use wasmtime::component::Linker;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use crate::wasm::state::GuestState;

/// One exported function.
#[derive(Debug, Clone)]
pub struct ExportedFunc {
    /// Where it is in the component.
    pub index: ComponentExportIndex,
    /// Parameter names and types.
    pub params: Vec<(String, Type)>,
    /// Result types.
    pub results: Vec<Type>,
}

/// An export carried over wRPC: name, parameter types, result types.
pub type WrpcFunction = (String, Vec<Type>, Vec<Type>);

/// A component ready to serve calls: compiled, its imports resolved against the host's linker.
/// Immutable; an update builds a new one.
pub struct PreparedComponent {
    /// The reference it was loaded from.
    pub image_ref: String,
    /// Compiled code with imports resolved; instantiated once per call.
    pub pre: InstancePre<GuestState>,
    /// Exported functions by name: `ns:pkg/iface@ver.func`, `ns:pkg/iface.func`, or `func`.
    pub functions: BTreeMap<String, ExportedFunc>,
    /// Size of the component file in bytes.
    pub size: usize,
    /// The `wasi:http/incoming-handler` entry point, when the component exports it.
    pub proxy: Option<ProxyPre<GuestState>>,
    /// Whether it exports WASI 0.3's `wasi:http/handler` (served by reused, concurrent
    /// instances: `transport::http_pool`).
    pub http_0_3: bool,
    /// What its imports were linked with (its id, links, the lattice): handed to each call's
    /// store for the capabilities bound with `bindgen!` ([`GuestState::imports`]), and asked
    /// for its outgoing HTTP.
    pub imports: Option<crate::wasm::state::CapabilityContext>,
    /// Whether it imports `wasi:http/outgoing-handler` (only then is the HTTP client link looked
    /// up when a call starts).
    pub imports_outgoing_http: bool,
    /// The compiled code, shared with every component of the same bytes on this host.
    pub code: std::sync::Arc<crate::wasm::compiled::Compiled>,
    /// What its scale asked of its resources (`component_limits`); none when loaded.
    pub limits: crate::wasm::limits::ComponentLimits,
}

impl std::fmt::Debug for PreparedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedComponent")
            .field("image_ref", &self.image_ref)
            .field("functions", &self.functions.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl PreparedComponent {
    /// Compiles (or shares the compiled code of identical bytes already in use here, or takes
    /// it from the compile cache) and links `bytes`, fetched from `reference`
    /// ([`crate::wasm::sources::load::fetch`]). CPU-heavy: run it on a blocking thread.
    ///
    /// # Errors
    /// [`HostError::ComponentRef`] for a bad reference or file, [`HostError::Component`] when
    /// it does not compile or imports something the host cannot provide.
    /// `link` defines, in the host's linker, what the component imports beyond WASI (see
    /// `capabilities::imports::link_imports`); `imports` is the component's context, whose
    /// resolver decides its capabilities.
    pub fn load(
        runtime: &WasmRuntime,
        reference: &str,
        bytes: Vec<u8>,
        link: impl FnOnce(&mut Linker<GuestState>, &Component) -> wasmtime::Result<()>,
        imports: Option<crate::wasm::state::CapabilityContext>,
    ) -> Result<Self> {
        let began = Instant::now();
        let (code, shared) = runtime
            .compiled()
            .get_or_compile(runtime.engine(), &bytes)
            .map_err(|e| HostError::Component { reference: reference.into(), reason: format!("invalid component: {e:#}") })?;
        let component = code.component.clone();
        let mut linker = runtime.linker().clone();
        link(&mut linker, &component).map_err(|e| HostError::Component {
            reference: reference.into(),
            reason: format!("cannot link its imports: {e:#}"),
        })?;
        let pre = linker.instantiate_pre(&component).map_err(|e| HostError::Component {
            reference: reference.into(),
            reason: format!("the host cannot satisfy its imports: {e:#}"),
        })?;
        let functions = exports(runtime, &component);
        let proxy = ProxyPre::new(pre.clone()).ok();
        let http_0_3 = wasmtime_wasi_http::p3::bindings::ServiceIndices::new(&pre).is_ok();
        let imports_outgoing_http = component
            .component_type()
            .imports(runtime.engine())
            .any(|(name, _)| name.starts_with("wasi:http/outgoing-handler@"));
        info!(reference, bytes = bytes.len(), shared, elapsed = ?began.elapsed(), functions = functions.len(), "component prepared");
        Ok(Self { image_ref: reference.into(), pre, functions, size: bytes.len(), proxy, http_0_3, imports, imports_outgoing_http, code, limits: Default::default() })
    }

    /// Whether it serves HTTP: it exports `wasi:http/incoming-handler` (0.2) or
    /// `wasi:http/handler` (0.3).
    pub fn serves_http(&self) -> bool {
        self.proxy.is_some() || self.http_0_3
    }

    /// The function called `name`: exact, or without the package version.
    pub fn function(&self, name: &str) -> Option<&ExportedFunc> {
        self.export(name).map(|(_, f)| f)
    }

    /// The function called `name` (exact, or without the package version) and its full name
    /// as exported (`ns:pkg/iface@version.func`).
    pub fn export(&self, name: &str) -> Option<(&str, &ExportedFunc)> {
        self.functions.get_key_value(name).map(|(k, f)| (k.as_str(), f)).or_else(|| {
            // `ns:pkg/iface.func` matches `ns:pkg/iface@1.2.3.func`.
            let (iface, func) = name.rsplit_once('.')?;
            if iface.contains('@') {
                return None;
            }
            self.functions
                .iter()
                .find(|(k, _)| {
                    k.rsplit_once('.').is_some_and(|(ki, kf)| {
                        kf == func && ki.split_once('@').is_some_and(|(base, _)| base == iface)
                    })
                })
                .map(|(k, f)| (k.as_str(), f))
        })
    }

    /// The exported functions wRPC can carry (no resources), by instance
    /// (`ns:pkg/iface@version`): name (as wRPC names it: a resource's `[static]r.f` is `r.f`),
    /// parameter types, result types.
    pub fn wrpc_exports(&self) -> BTreeMap<String, Vec<WrpcFunction>> {
        let mut out: BTreeMap<String, Vec<WrpcFunction>> = BTreeMap::new();
        for (name, f) in &self.functions {
            // A resource's function (`…@1.0.0.[static]r.f`) is split at its bracket, any other
            // at the last dot.
            let split = name.find(".[").map(|i| (&name[..i], &name[i + 1..])).or_else(|| name.rsplit_once('.'));
            let Some((instance, func)) = split else { continue };
            let func = crate::wasm::transport::handles::wire_name(func);
            if !instance.contains(':') || instance.starts_with("wasi:http/") {
                continue;
            }
            let params: Vec<Type> = f.params.iter().map(|(_, t)| t.clone()).collect();
            if !params.iter().chain(&f.results).all(crate::wasm::transport::wrpc_value::plain_type) {
                continue;
            }
            out.entry(instance.to_string()).or_default().push((func.to_string(), params, f.results.clone()));
        }
        out
    }

    /// Names of all exported functions, without package versions, for error messages.
    pub fn function_names(&self) -> Vec<String> {
        self.functions.keys().map(|k| strip_version(k)).collect()
    }
}

fn strip_version(name: &str) -> String {
    match (name.split_once('@'), name.rsplit_once('.')) {
        (Some((base, _)), Some((_, func))) => format!("{base}.{func}"),
        _ => name.to_string(),
    }
}

fn exports(runtime: &WasmRuntime, component: &Component) -> BTreeMap<String, ExportedFunc> {
    let engine = runtime.engine();
    let mut out = BTreeMap::new();
    let ty = component.component_type();
    for (name, item) in ty.exports(engine) {
        match item {
            ComponentItem::ComponentFunc(func) => {
                if let Some(index) = component.get_export_index(None, name) {
                    out.insert(name.to_string(), exported(index, &func));
                }
            }
            ComponentItem::ComponentInstance(instance) => {
                let Some(instance_index) = component.get_export_index(None, name) else { continue };
                for (fname, item) in instance.exports(engine) {
                    if let ComponentItem::ComponentFunc(func) = item {
                        if let Some(index) = component.get_export_index(Some(&instance_index), fname) {
                            out.insert(format!("{name}.{fname}"), exported(index, &func));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn exported(index: ComponentExportIndex, func: &wasmtime::component::types::ComponentFunc) -> ExportedFunc {
    ExportedFunc {
        index,
        params: func.params().map(|(n, t)| (n.to_string(), t)).collect(),
        results: func.results().collect(),
    }
}
