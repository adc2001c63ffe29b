//! `wasi:keyvalue` served by an external provider (wasmCloud's Redis or NATS KV provider, …):
//! each operation is a `wrpc:keyvalue@0.2.0-draft` call to the provider over wRPC, with the
//! guest's bucket identifier, as wasmCloud hosts make it — bounded per provider and by the
//! call's deadline like any provider call ([`crate::wasm::transport::wrpc::Wrpc::invoke`]).

use bytes::Bytes;

use super::bindings::wasi::keyvalue::store::KeyResponse;
use super::KvError;
use crate::capabilities::context::ImportContext;

mod bindings {
    wit_bindgen_wrpc::generate!({
        inline: "package trellis:kv; world kv { import wrpc:keyvalue/store@0.2.0-draft; import wrpc:keyvalue/atomics@0.2.0-draft; import wrpc:keyvalue/batch@0.2.0-draft; }",
        path: "../wit/wrpc-keyvalue",
        world: "trellis:kv/kv",
        generate_all,
    });
}

use bindings::wrpc::keyvalue::{atomics, batch, store};

/// A bucket an external provider serves.
#[derive(Debug, Clone)]
pub struct ProviderBucket {
    /// The provider the link targets.
    pub provider: String,
    /// The link (sent as the `link-name` header).
    pub link_name: String,
    /// The guest's identifier, passed on as the bucket.
    pub bucket: String,
}

impl From<store::Error> for KvError {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::NoSuchStore => Self::NoSuchStore,
            store::Error::AccessDenied => Self::AccessDenied,
            store::Error::Other(m) => Self::Other(m),
        }
    }
}

impl ProviderBucket {
    async fn run<T, F, Fut>(&self, ctx: &ImportContext, call: F) -> Result<T, KvError>
    where
        F: FnOnce(std::sync::Arc<wrpc_transport_nats::Client>, Option<async_nats::HeaderMap>) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Result<T, store::Error>>>,
    {
        let timeout = ctx.runtime.config().max_execution_time;
        match ctx.wrpc.invoke(&ctx.source_id, &self.link_name, &self.provider, timeout, call).await {
            Ok(answer) => answer.map_err(KvError::from),
            Err(e) => Err(KvError::Other(format!("key-value provider `{}`: {e}", self.provider))),
        }
    }

    /// `get`.
    pub async fn get(&self, ctx: &ImportContext, key: String) -> Result<Option<Vec<u8>>, KvError> {
        let bucket = self.bucket.clone();
        let value = self.run(ctx, |c, cx| async move { store::get(&*c, cx, &bucket, &key).await }).await?;
        Ok(value.map(|v| v.to_vec()))
    }

    /// `set`.
    pub async fn set(&self, ctx: &ImportContext, key: String, value: Vec<u8>) -> Result<(), KvError> {
        let bucket = self.bucket.clone();
        self.run(ctx, |c, cx| async move { store::set(&*c, cx, &bucket, &key, &Bytes::from(value)).await }).await
    }

    /// `delete`.
    pub async fn delete(&self, ctx: &ImportContext, key: String) -> Result<(), KvError> {
        let bucket = self.bucket.clone();
        self.run(ctx, |c, cx| async move { store::delete(&*c, cx, &bucket, &key).await }).await
    }

    /// `exists`.
    pub async fn exists(&self, ctx: &ImportContext, key: String) -> Result<bool, KvError> {
        let bucket = self.bucket.clone();
        self.run(ctx, |c, cx| async move { store::exists(&*c, cx, &bucket, &key).await }).await
    }

    /// `list-keys`.
    pub async fn list_keys(&self, ctx: &ImportContext, cursor: Option<u64>) -> Result<KeyResponse, KvError> {
        let bucket = self.bucket.clone();
        let page = self.run(ctx, |c, cx| async move { store::list_keys(&*c, cx, &bucket, cursor).await }).await?;
        Ok(KeyResponse { keys: page.keys, cursor: page.cursor })
    }

    /// `atomics.increment`.
    pub async fn increment(&self, ctx: &ImportContext, key: String, delta: u64) -> Result<u64, KvError> {
        let bucket = self.bucket.clone();
        self.run(ctx, |c, cx| async move { atomics::increment(&*c, cx, &bucket, &key, delta).await }).await
    }

    /// `batch.get-many`.
    pub async fn get_many(&self, ctx: &ImportContext, keys: Vec<String>) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        let bucket = self.bucket.clone();
        let values = self.run(ctx, |c, cx| async move { batch::get_many(&*c, cx, &bucket, &keys.iter().map(String::as_str).collect::<Vec<_>>()).await }).await?;
        Ok(values.into_iter().map(|v| v.map(|(k, v)| (k, v.to_vec()))).collect())
    }

    /// `batch.set-many`.
    pub async fn set_many(&self, ctx: &ImportContext, key_values: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        let bucket = self.bucket.clone();
        let pairs: Vec<(String, Bytes)> = key_values.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect();
        self.run(ctx, |c, cx| async move {
            let borrowed: Vec<(&str, &Bytes)> = pairs.iter().map(|(k, v)| (k.as_str(), v)).collect();
            batch::set_many(&*c, cx, &bucket, &borrowed).await
        })
        .await
    }

    /// `batch.delete-many`.
    pub async fn delete_many(&self, ctx: &ImportContext, keys: Vec<String>) -> Result<(), KvError> {
        let bucket = self.bucket.clone();
        self.run(ctx, |c, cx| async move { batch::delete_many(&*c, cx, &bucket, &keys.iter().map(String::as_str).collect::<Vec<_>>()).await }).await
    }
}
