//! What a `wasi:keyvalue/watcher` link watches ([`KvWatch`]), read from its config by the
//! resolver ([`super::Resolver::kv_watch`]).

use std::collections::{BTreeMap, BTreeSet};

/// A change a key-value watch reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WatchOp {
    /// A put (`SET@key`).
    Set,
    /// A delete or purge (`DEL@key`).
    Delete,
}

/// What one `wasi:keyvalue/watcher` link watches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KvWatch {
    /// The bucket.
    pub bucket: String,
    /// Each watched key and the changes reported for it.
    pub keys: BTreeMap<String, BTreeSet<WatchOp>>,
}

impl KvWatch {
    /// Keys a link may watch.
    pub const MAX_KEYS: usize = 64;

    /// `watch` of a link's config: `SET@key` and `DEL@key`, comma-separated, as wasmCloud's
    /// key-value providers read it (the operation in any case). Keys are exact (no wildcards).
    ///
    /// # Errors
    /// The first entry that is not one, a key that cannot be a key, or more than
    /// [`Self::MAX_KEYS`] keys.
    pub fn parse_keys(spec: &str) -> Result<BTreeMap<String, BTreeSet<WatchOp>>, String> {
        let mut keys: BTreeMap<String, BTreeSet<WatchOp>> = BTreeMap::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (op, key) = entry.split_once('@').ok_or_else(|| format!("entry `{entry}` is not OPERATION@key"))?;
            let op = match op.trim().to_ascii_uppercase().as_str() {
                "SET" => WatchOp::Set,
                "DEL" => WatchOp::Delete,
                other => return Err(format!("entry `{entry}`: `{other}` is not SET or DEL")),
            };
            let key = key.trim();
            let valid = !key.is_empty()
                && key.len() <= 256
                && !key.starts_with('.')
                && !key.ends_with('.')
                && !key.contains("..")
                && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '/' | '_' | '=' | '.'));
            if !valid {
                return Err(format!("entry `{entry}`: `{key}` is not a key (1 to 256 of A-Z a-z 0-9 - / _ = ., no empty token)"));
            }
            keys.entry(key.to_string()).or_default().insert(op);
            if keys.len() > Self::MAX_KEYS {
                return Err(format!("names more than {} keys", Self::MAX_KEYS));
            }
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::permission::tests::{link, resolver};
    use crate::permission::Denied;

    #[test]
    fn key_value_watches_read_the_links_config_and_refuse_what_is_not_a_key_or_a_guests_bucket() {
        let (r, view, dir) = resolver();
        let mut watcher = link("comp", "wasi", "keyvalue", "watcher", &["target"]);
        watcher.source_id = "kv".into();
        watcher.source_config = vec!["source".into()];
        view.set_links("kv", vec![watcher.clone()]);
        view.set_config("source", Some(BTreeMap::from([("bucket".into(), "b1".into()), ("watch".into(), "SET@a".into())])));
        view.set_config("target", Some(BTreeMap::from([("WATCH".into(), "set@a, DEL@a ,DEL@dir/b.c".into())])));
        assert_eq!(r.watcher_links("kv"), vec![watcher.clone()]);
        let watch = r.kv_watch(&watcher).unwrap();
        assert_eq!(watch.bucket, "b1");
        let ops = |k: &str| watch.keys.get(k).cloned().unwrap_or_default().into_iter().collect::<Vec<_>>();
        assert_eq!(ops("a"), vec![WatchOp::Set, WatchOp::Delete], "the target config's `watch` over the source's, any case");
        assert_eq!(ops("dir/b.c"), vec![WatchOp::Delete]);
        for bad in ["GET@a", "a", "SET@", "SET@a.*", "SET@a b", "SET@.a", "SET@a..b", &format!("SET@{}", "k".repeat(300))] {
            view.set_config("target", Some(BTreeMap::from([("watch".into(), bad.to_string())])));
            assert!(matches!(r.kv_watch(&watcher), Err(Denied::Watch { .. })), "{bad}");
        }
        let many: Vec<String> = (0..=KvWatch::MAX_KEYS).map(|i| format!("SET@k{i}")).collect();
        view.set_config("target", Some(BTreeMap::from([("watch".into(), many.join(","))])));
        assert!(r.kv_watch(&watcher).unwrap_err().to_string().contains("more than 64 keys"));
        view.set_config("target", Some(BTreeMap::from([("watch".into(), "SET@a".into()), ("bucket".into(), "LATTICEDATA_default".into())])));
        assert!(matches!(r.kv_watch(&watcher), Err(Denied::SystemBucket(_))), "a lattice bucket is never watched for a guest");
        // The host that runs the component asks about the link by name, from a running provider.
        view.set_config("target", None);
        assert!(matches!(r.kv_watch_of("kv", "comp", "other"), Err(Denied::NoWatch { .. })));
        assert!(matches!(r.kv_watch_of("kv", "comp", "default"), Err(Denied::NotRunning { .. })), "no provider runs");
        dir.add("h", "kv", "trellis://messaging");
        assert!(r.kv_watch_of("kv", "comp", "default").is_err(), "not a key-value provider");
        dir.set_host("h", [("kv".to_string(), "trellis://keyvalue".to_string())]);
        assert_eq!(r.kv_watch_of("kv", "comp", "default").unwrap().keys.len(), 1);
        assert!(r.kv_watch_of("intruder", "comp", "default").is_err());
    }
}
