//! `wasi:keyvalue/batch`: many keys in one call, bounded: at most [`MAX_BATCH_KEYS`] keys, and
//! `get-many` returns at most [`MAX_BATCH_BYTES`] of values (the values live in host memory
//! before they are lowered into the guest).

use wasmtime::component::Resource;

use super::bindings::wasi::keyvalue::batch;
use super::{bucket_of, other, traced, KvBucket, KvError};
use crate::capabilities::view::View;

/// Keys one batch call may name.
pub const MAX_BATCH_KEYS: usize = 1000;

/// Bytes of values one `get-many` may return.
pub const MAX_BATCH_BYTES: usize = 16 << 20;

fn check_count(n: usize) -> Result<(), KvError> {
    if n > MAX_BATCH_KEYS {
        return Err(KvError::Other(format!("a batch of {n} keys; at most {MAX_BATCH_KEYS} per call")));
    }
    Ok(())
}

/// Refuses values past [`MAX_BATCH_BYTES`] in total.
fn check_bytes(values: &[Option<(String, Vec<u8>)>]) -> Result<(), KvError> {
    let total: usize = values.iter().flatten().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_BATCH_BYTES {
        return Err(KvError::Other(format!("`get-many` would return {total} bytes; at most {MAX_BATCH_BYTES} per call (ask for fewer keys)")));
    }
    Ok(())
}

impl batch::Host for View<'_> {
    async fn get_many(&mut self, b: Resource<KvBucket>, keys: Vec<String>) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        check_count(keys.len())?;
        let (c, bucket) = bucket_of(self, &b)?;
        let values = traced("get-many", &c, async {
            match bucket {
                KvBucket::JetStream(kv) => {
                    let (mut out, mut total) = (Vec::with_capacity(keys.len()), 0usize);
                    for key in keys {
                        match kv.get(&key).await.map_err(other)? {
                            Some(v) => {
                                total += key.len() + v.len();
                                if total > MAX_BATCH_BYTES {
                                    return Err(KvError::Other(format!(
                                        "`get-many` would return more than {MAX_BATCH_BYTES} bytes (ask for fewer keys)"
                                    )));
                                }
                                out.push(Some((key, v.to_vec())));
                            }
                            None => out.push(None),
                        }
                    }
                    Ok(out)
                }
                KvBucket::Provider(p) => p.get_many(&c, keys).await,
            }
        })
        .await?;
        check_bytes(&values)?;
        Ok(values)
    }

    async fn set_many(&mut self, b: Resource<KvBucket>, key_values: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        check_count(key_values.len())?;
        let (c, bucket) = bucket_of(self, &b)?;
        traced("set-many", &c, async {
            match bucket {
                KvBucket::JetStream(kv) => {
                    for (key, value) in key_values {
                        kv.put(&key, value.into()).await.map_err(other)?;
                    }
                    Ok(())
                }
                KvBucket::Provider(p) => p.set_many(&c, key_values).await,
            }
        })
        .await
    }

    async fn delete_many(&mut self, b: Resource<KvBucket>, keys: Vec<String>) -> Result<(), KvError> {
        check_count(keys.len())?;
        let (c, bucket) = bucket_of(self, &b)?;
        traced("delete-many", &c, async {
            match bucket {
                KvBucket::JetStream(kv) => {
                    for key in keys {
                        kv.delete(&key).await.map_err(other)?;
                    }
                    Ok(())
                }
                KvBucket::Provider(p) => p.delete_many(&c, keys).await,
            }
        })
        .await
    }
}
