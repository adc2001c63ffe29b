//! Unit tests of the capability resolver; [`link`] and [`resolver`] serve the other modules' tests too.

use super::*;

pub(super) fn link(target: &str, ns: &str, pkg: &str, iface: &str, config: &[&str]) -> Link {
    Link {
        source_id: "c".into(),
        target: target.into(),
        name: "default".into(),
        wit_namespace: ns.into(),
        wit_package: pkg.into(),
        interfaces: vec![iface.into()],
        source_config: vec![],
        target_config: config.iter().map(|s| s.to_string()).collect(),
    }
}

pub(super) fn resolver() -> (Resolver, LatticeView, ProviderDirectory) {
    let (view, dir) = (LatticeView::default(), ProviderDirectory::default());
    (Resolver::new(view.clone(), dir.clone(), GuestPolicy::default()), view, dir)
}

#[test]
fn provider_grants_need_a_running_provider_of_the_kind() {
    let (r, view, dir) = resolver();
    let err = r.provider("c", "default", Capability::KeyValue).unwrap_err();
    assert!(err.to_string().contains("no link named `default` from `c` for `wasi:keyvalue/store`"), "{err}");
    view.set_links("c", vec![link("kv", "wasi", "keyvalue", "store", &["cfg"]), link("echo", "wasi", "http", "outgoing-handler", &[])]);
    let err = r.provider("c", "default", Capability::KeyValue).unwrap_err();
    assert!(err.to_string().contains("`kv`, which is not a running keyvalue provider"), "{err}");
    dir.add("h", "kv", "trellis://messaging");
    let err = r.provider("c", "default", Capability::KeyValue).unwrap_err();
    assert!(err.to_string().contains("a messaging-nats provider, not a keyvalue provider"), "{err}");
    dir.set_host("h", [("kv".to_string(), "trellis://keyvalue".to_string())]);
    view.set_config("cfg", Some(BTreeMap::from([("bucket".into(), "b1".into())])));
    let grant = r.provider("c", "default", Capability::KeyValue).unwrap();
    assert_eq!(r.kv_bucket(&grant).unwrap(), "b1");
    // A link to a component grants no HTTP.
    assert!(r.provider("c", "default", Capability::HttpClient).is_err());
    dir.remove("h", "kv");
    assert!(r.provider("c", "default", Capability::KeyValue).is_err(), "stopping the provider revokes");
}

#[test]
fn buckets() {
    let (r, view, dir) = resolver();
    dir.add("h", "kv", "trellis://keyvalue");
    view.set_links("c", vec![link("kv", "wasi", "keyvalue", "store", &["cfg"])]);
    let grant = r.provider("c", "default", Capability::KeyValue).unwrap();
    let err = r.kv_bucket(&grant).unwrap_err();
    assert!(matches!(err, Denied::NoBucket { .. }) && err.to_string().contains("names no bucket"), "{err}");
    let with_default =
        Resolver::new(view.clone(), dir, GuestPolicy { kv_default_bucket: Some("apps".into()), ..GuestPolicy::default() });
    assert_eq!(with_default.kv_bucket(&grant).unwrap(), "apps");
    for system in ["LATTICEDATA_default", "CONFIGDATA_x", "wadm_manifests", "configdata_y", "TRELLIS_LIVE_default", "TRELLIS_ARTIFACTS_x", "TRELLIS_SCHEDULES_default"] {
        view.set_config("cfg", Some(BTreeMap::from([("BUCKET".into(), system.into())])));
        let grant = r.provider("c", "default", Capability::KeyValue).unwrap();
        assert!(r.kv_bucket(&grant).unwrap_err().to_string().contains("lattice's own buckets"), "{system}");
    }
    assert!(check_bucket("a.b").is_err());
    assert!(check_bucket("trellis_demo_counters").is_ok());
}

fn grant_of(target: BlobstoreTarget) -> ProviderGrant {
    match target {
        BlobstoreTarget::Builtin(grant) => grant,
        BlobstoreTarget::ExternalProvider(p) => panic!("a built-in grant, not provider `{p}`"),
    }
}

#[test]
fn blobstore_containers() {
    let (r, view, dir) = resolver();
    dir.add("h", "blobs", "trellis://blobstore-nats");
    dir.add("h", "kv", "trellis://keyvalue");
    view.set_links("c", vec![link("blobs", "wasi", "blobstore", "blobstore", &["cfg"])]);
    let grant = grant_of(r.blobstore("c", "default").unwrap());
    assert!(r.blob_container(&grant, "photos").is_ok(), "no list: any ordinary container");
    for refused in ["TRELLIS_ARTIFACTS_x", "LATTICEDATA_default", "a.b", ""] {
        assert!(r.blob_container(&grant, refused).is_err(), "{refused}");
    }
    view.set_config("cfg", Some(BTreeMap::from([("containers".into(), "photos, docs".into())])));
    let grant = grant_of(r.blobstore("c", "default").unwrap());
    assert!(r.blob_container(&grant, "docs").is_ok());
    let err = r.blob_container(&grant, "other").unwrap_err();
    assert!(matches!(&err, Denied::Container { container, .. } if container == "other") && err.to_string().contains("not among those"), "{err}");
    for empty in ["", " , "] {
        view.set_config("cfg", Some(BTreeMap::from([("containers".into(), empty.into())])));
        let grant = grant_of(r.blobstore("c", "default").unwrap());
        assert!(r.blob_container(&grant, "photos").unwrap_err().to_string().contains("(`containers`: none)"), "`{empty}` names no container");
    }
    view.set_links("c", vec![link("kv", "wasi", "blobstore", "blobstore", &[])]);
    assert!(r.blobstore("c", "default").unwrap_err().to_string().contains("not a blobstore-nats provider"));
    // An external provider (wasmCloud's blobstore-fs, say) is called over wRPC.
    dir.add("h", "fs", "ghcr.io/wasmcloud/blobstore-fs:0.11.1");
    view.set_links("c", vec![link("fs", "wasi", "blobstore", "blobstore", &[])]);
    assert!(matches!(r.blobstore("c", "default"), Ok(BlobstoreTarget::ExternalProvider(p)) if p == "fs"));
    // `*` allows any ordinary container.
    view.set_links("c", vec![link("blobs", "wasi", "blobstore", "blobstore", &["cfg"])]);
    view.set_config("cfg", Some(BTreeMap::from([("containers".into(), "docs, *".into())])));
    let grant = grant_of(r.blobstore("c", "default").unwrap());
    assert!(r.blob_container(&grant, "anything").is_ok());
    assert!(r.blob_container(&grant, "TRELLIS_ARTIFACTS_x").is_err(), "never the lattice's own");
    view.set_links("c", vec![]);
    assert!(r.blobstore("c", "default").is_err());
}

#[test]
fn publishing() {
    let (r, view, dir) = resolver();
    dir.add("h", "msg", "trellis://messaging");
    view.set_links("c", vec![link("msg", "wasmcloud", "messaging", "consumer", &["cfg"])]);
    let grant = r.provider("c", "default", Capability::Messaging).unwrap();
    assert!(r.may_publish(&grant, "orders.new", None).unwrap_err().to_string().contains("no subject"));
    view.set_config("cfg", Some(BTreeMap::from([("subjects".into(), "orders.*, audit.>, >".into())])));
    let grant = r.provider("c", "default", Capability::Messaging).unwrap();
    r.may_publish(&grant, "orders.new", None).unwrap();
    // `>` in the allow-list still never reaches the lattice's subjects.
    for s in ["wasmbus.ctl.v1.default.host.stop.N", "$JS.API.INFO", "trellis.rpc.default.x", "_INBOX.x"] {
        assert!(r.may_publish(&grant, s, None).unwrap_err().to_string().contains("lattice itself"), "{s}");
    }
    // The reply subject of the message being handled is granted, unless it is a system subject.
    r.may_publish(&grant, "_INBOX.abc.1", Some("_INBOX.abc.1")).unwrap();
    assert!(r.may_publish(&grant, "_INBOX.abc.2", Some("_INBOX.abc.1")).is_err());
    let evil = "wasmbus.ctl.v1.default.host.stop.N";
    assert!(r.may_publish(&grant, evil, Some(evil)).is_err());
    assert!(r.may_publish(&grant, "orders.*", None).is_err(), "no wildcards");
}

#[test]
fn reply_grants() {
    let msg = |reply: Option<&str>| {
        Val::Record(vec![
            ("subject".into(), Val::String("s".into())),
            ("body".into(), Val::List(vec![])),
            ("reply-to".into(), Val::Option(reply.map(|r| Box::new(Val::String(r.into()))))),
        ])
    };
    assert_eq!(reply_grant(MESSAGE_HANDLER, &[msg(Some("_INBOX.1"))]), Some("_INBOX.1".into()));
    assert_eq!(reply_grant(MESSAGE_HANDLER, &[msg(None)]), None);
    assert_eq!(reply_grant("trellis:echo/echo.echo", &[msg(Some("_INBOX.1"))]), None);
}
