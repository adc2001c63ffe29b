//! Fuzz targets (issue 26): every decoder of bytes that reach a host from the network, fed the
//! seeds in `host/fuzz-corpus/<target>/` and then, by proptest, random bytes and mutations of
//! those seeds (bytes changed, inserted, removed, the input cut short). Each must answer, a
//! value or an error, without panicking, aborting or building more than its bound.
//!
//! `cargo test` runs `TRELLIS_FUZZ_CASES` cases per target (default 1000: about a second in all). Run
//! longer by hand: `TRELLIS_FUZZ_CASES=100000 cargo test -p trellis-host --lib fuzz`. A failing
//! input is kept by proptest in `host/proptest-regressions/fuzz.txt` (commit it); once fixed,
//! add it to the target's corpus too.

use std::path::PathBuf;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use wasmtime::component::{Type, Val};

/// The seeds of `target`, sorted by file name.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().filter_map(|f| std::fs::read(f).ok()).collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

fn runner() -> TestRunner {
    let cases = std::env::var("TRELLIS_FUZZ_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(1000);
    TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() })
}

/// Random bytes, or a seed with a few edits.
fn inputs(seeds: Vec<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    let random = proptest::collection::vec(any::<u8>(), 0..512);
    let n = seeds.len();
    let edits = proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 0..8);
    let mutated = (0..n, edits).prop_map(move |(i, edits)| {
        let mut s = seeds[i].clone();
        for (at, op, b) in edits {
            match op {
                0 if !s.is_empty() => {
                    let k = at.index(s.len());
                    s[k] = b;
                }
                1 => s.insert(at.index(s.len() + 1), b),
                2 if !s.is_empty() => {
                    s.remove(at.index(s.len()));
                }
                3 => s.truncate(at.index(s.len() + 1)),
                _ => {}
            }
        }
        s
    });
    prop_oneof![1 => random, 3 => mutated].boxed()
}

/// The seed `name` of `target`.
fn seed(target: &str, name: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus").join(target).join(name)).expect("the seed")
}

/// Runs `check` on every seed of `target`, then on generated inputs.
fn fuzz(target: &str, check: impl Fn(&[u8])) {
    fuzz_with(target, Vec::new(), check);
}

/// As [`fuzz`], with `extra` seeds beside the corpus.
fn fuzz_with(target: &str, extra: Vec<Vec<u8>>, check: impl Fn(&[u8])) {
    let mut seeds = corpus(target);
    seeds.extend(extra);
    for seed in &seeds {
        check(seed);
    }
    runner()
        .run(&inputs(seeds), |input| {
            check(&input);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("fuzz target `{target}`: {e}"));
}

#[test]
fn control_commands() {
    let subjects = trellis_messages::Subjects::new("wasmbus.ctl", "fuzz");
    // A seed is the subject after the lattice's prefix, a newline, and the body.
    let parse = |input: &[u8]| {
        let split = input.iter().position(|b| *b == b'\n').unwrap_or(input.len());
        let subject = format!("wasmbus.ctl.v1.fuzz.{}", String::from_utf8_lossy(&input[..split]));
        trellis_messages::command::CtlCommand::parse(&subjects, &subject, input.get(split + 1..).unwrap_or_default())
    };
    for good in ["host-ping", "component-scale", "link-put", "label-put", "provider-start"] {
        assert!(parse(&seed("control", good)).is_ok(), "{good}: {:?}", parse(&seed("control", good)));
    }
    fuzz("control", |input| {
        let _ = parse(input);
    });
}

/// A component whose export `f` takes a list of a record holding every kind of plain value.
const TYPES: &str = r#"(component
  (core module $m
    (memory (export "memory") 1)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) i32.const 8)
    (func (export "f") (param i32 i32)))
  (core instance $i (instantiate $m))
  (type $flags' (flags "a" "b" "c" "d" "e" "f" "g" "h" "i"))
  (export $flags "some-flags" (type $flags'))
  (type $enum' (enum "x" "y" "z"))
  (export $enum "an-enum" (type $enum'))
  (type $variant' (variant (case "none") (case "num" u32) (case "text" string)))
  (export $variant "a-variant" (type $variant'))
  (type $big' (record
    (field "b" bool) (field "i8" s8) (field "u16" u16) (field "i64" s64) (field "x" f32) (field "y" f64) (field "c" char)
    (field "s" string) (field "l" (list u32)) (field "ll" (list (list u8)))
    (field "o" (option s32)) (field "r" (result string (error u8))) (field "t" (tuple bool string))
    (field "v" $variant) (field "e" $enum) (field "fl" $flags)))
  (export $big "big" (type $big'))
  (func (export "f") (param "x" (list $big))
    (canon lift (core func $i "f") (memory (core memory $i "memory")) (realloc (core func $i "realloc")))))"#;

/// The parameter type of [`TYPES`]'s `f`.
fn big_list() -> Type {
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::new(&engine, TYPES).expect("the types component");
    let types = component.component_type();
    let f = types.exports(&engine).find_map(|(name, item)| match (name, item) {
        ("f", wasmtime::component::types::ComponentItem::ComponentFunc(f)) => Some(f),
        _ => None,
    });
    let f = f.expect("export f");
    let ty = f.params().next().expect("a parameter").1;
    ty
}

/// wRPC's encoding of a plain value, written here to make seeds and to check the decoder.
fn encode(v: &Val, out: &mut Vec<u8>) {
    fn uleb(mut n: u64, out: &mut Vec<u8>) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    fn sleb(mut n: i64, out: &mut Vec<u8>) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            let done = (n == 0 && b & 0x40 == 0) || (n == -1 && b & 0x40 != 0);
            out.push(if done { b } else { b | 0x80 });
            if done {
                return;
            }
        }
    }
    match v {
        Val::Bool(b) => out.push(u8::from(*b)),
        Val::S8(n) => out.push(*n as u8),
        Val::U8(n) => out.push(*n),
        Val::S16(n) => sleb(i64::from(*n), out),
        Val::U16(n) => uleb(u64::from(*n), out),
        Val::S32(n) => sleb(i64::from(*n), out),
        Val::U32(n) => uleb(u64::from(*n), out),
        Val::S64(n) => sleb(*n, out),
        Val::U64(n) => uleb(*n, out),
        Val::Float32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Val::Float64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Val::Char(c) => out.extend_from_slice(c.to_string().as_bytes()),
        Val::String(s) => {
            uleb(s.len() as u64, out);
            out.extend_from_slice(s.as_bytes());
        }
        Val::List(items) => {
            uleb(items.len() as u64, out);
            items.iter().for_each(|i| encode(i, out));
        }
        Val::Record(fields) => fields.iter().for_each(|(_, v)| encode(v, out)),
        Val::Tuple(items) => items.iter().for_each(|i| encode(i, out)),
        Val::Option(o) => {
            out.push(u8::from(o.is_some()));
            if let Some(v) = o {
                encode(v, out);
            }
        }
        Val::Result(r) => {
            let (tag, payload) = match r {
                Ok(p) => (0, p),
                Err(p) => (1, p),
            };
            out.push(tag);
            if let Some(v) = payload {
                encode(v, out);
            }
        }
        other => panic!("the seed encoder writes no {other:?} (variants, enums and flags need their type)"),
    }
}

/// Two elements of `list<big>` as `Val`s and as wRPC bytes (variant `num(7)`, enum `y`, flags
/// `a` and `i`, written by hand: their encoding needs the type).
fn sample() -> (Val, Vec<u8>) {
    let element = |s: &str, l: Vec<u32>| {
        vec![
            ("b".to_string(), Val::Bool(true)),
            ("i8".into(), Val::S8(-5)),
            ("u16".into(), Val::U16(300)),
            ("i64".into(), Val::S64(-70_000)),
            ("x".into(), Val::Float32(1.5)),
            ("y".into(), Val::Float64(-2.25)),
            ("c".into(), Val::Char('ø')),
            ("s".into(), Val::String(s.into())),
            ("l".into(), Val::List(l.into_iter().map(Val::U32).collect())),
            ("ll".into(), Val::List(vec![Val::List(vec![Val::U8(1), Val::U8(2)]), Val::List(vec![])])),
            ("o".into(), Val::Option(Some(Box::new(Val::S32(-1))))),
            ("r".into(), Val::Result(Err(Some(Box::new(Val::U8(9)))))),
            ("t".into(), Val::Tuple(vec![Val::Bool(false), Val::String("t".into())])),
        ]
    };
    let mut bytes = Vec::new();
    let mut vals = Vec::new();
    bytes.push(2);
    for (s, l) in [("hello", vec![1, 2, 300]), ("", vec![])] {
        let fields = element(s, l);
        encode(&Val::Record(fields.clone()), &mut bytes);
        bytes.extend_from_slice(&[1, 7, 1, 0b0000_0001, 0b0000_0001]);
        let mut fields = fields;
        fields.push(("v".into(), Val::Variant("num".into(), Some(Box::new(Val::U32(7))))));
        fields.push(("e".into(), Val::Enum("y".into())));
        fields.push(("fl".into(), Val::Flags(vec!["a".into(), "i".into()])));
        vals.push(Val::Record(fields));
    }
    (Val::List(vals), bytes)
}

/// Decodes `bytes` as `ty` with a 256 KiB budget.
fn decode(ty: &Type, bytes: &[u8]) -> std::io::Result<Val> {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let pool = crate::wasm::transport::wrpc_value::ValuePool::new(1 << 20);
    let mut budget = pool.budget(256 << 10);
    rt.block_on(crate::wasm::transport::wrpc_value::read_plain(&mut &bytes[..], ty, &mut budget))
}

#[test]
fn wrpc_values() {
    let ty = big_list();
    let (val, bytes) = sample();
    assert_eq!(decode(&ty, &bytes).expect("the sample decodes"), val, "the decoder reads what wRPC writes");
    fuzz_with("wrpc-value", vec![bytes], |input| {
        let _ = decode(&ty, input);
    });
}

#[test]
fn wave_arguments() {
    let ty = big_list();
    assert!(Val::from_wave(&ty, &String::from_utf8_lossy(&seed("wave", "sample"))).is_ok(), "the sample parses");
    fuzz("wave", |input| {
        let _ = Val::from_wave(&ty, &String::from_utf8_lossy(input));
    });
}

#[test]
fn manifests() {
    assert!(crate::apps::manifest::parse(&seed("manifest", "echo.yaml"), None).is_ok());
    fuzz("manifest", |input| {
        for content_type in [None, Some("application/yaml"), Some("application/json")] {
            let _ = crate::apps::manifest::parse(input, content_type);
        }
    });
}

#[test]
fn component_specs_and_invocations() {
    assert!(crate::lattice::spec::ComponentSpec::decode(&seed("json", "spec")).is_ok());
    fuzz("json", |input| {
        let _ = crate::lattice::spec::ComponentSpec::decode(input);
        let _ = serde_json::from_slice::<trellis_messages::invocation::InvocationRequest>(input);
        let _ = serde_json::from_slice::<crate::trust::policy::Decision>(input);
        let _ = crate::providers::external::start_data::read_creds(&String::from_utf8_lossy(input));
    });
}

#[test]
fn liveness_records() {
    let identity = crate::identity::HostIdentity::new(None, None).expect("a key");
    fuzz("liveness", |input| {
        let _ = crate::apps::liveness::open_sealed(&identity.id(), input, 1_700_000_000_000);
    });
}

#[test]
fn schedule_records() {
    assert!(serde_json::from_slice::<trellis_messages::schedule::TickRecord>(&seed("schedule", "record")).is_ok());
    fuzz("schedule", |input| {
        if let Ok(record) = serde_json::from_slice::<trellis_messages::schedule::TickRecord>(input) {
            let _ = crate::capabilities::schedule::claims::believable("k", record, 1_700_000_000_000, 1_700_000_030_000);
        }
    });
}
