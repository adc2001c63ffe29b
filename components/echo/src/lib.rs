//! `trellis:echo/echo`: a plain echo, a guest error on demand, and the hostile behaviours
//! (trap, endless loop, memory bomb, deep recursion) the host must contain.

wit_bindgen::generate!({ path: "../../wit/echo", world: "echo-component" });

use std::hint::black_box;
use std::sync::Mutex;

use exports::trellis::echo::echo::Guest;

struct Echo;

/// What `remember` kept: the string lives on the heap, the pointer in a static.
static KEPT: Mutex<String> = Mutex::new(String::new());

impl Guest for Echo {
    fn echo(message: String) -> String {
        message
    }

    fn try_echo(message: String, fail: bool) -> Result<String, String> {
        if fail {
            Err(message)
        } else {
            Ok(message)
        }
    }

    fn trap(message: String) {
        panic!("{message}");
    }

    fn spin() {
        let mut n: u64 = 0;
        loop {
            n = black_box(n.wrapping_add(1));
        }
    }

    fn hog() -> u64 {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        loop {
            // Touch every page so the memory is really committed.
            chunks.push(black_box(vec![1u8; 1 << 20]));
            if chunks.len() == usize::MAX {
                return chunks.len() as u64;
            }
        }
    }

    fn recurse(depth: u64) -> u64 {
        // Each level is a real wasm call frame (no values on the shadow stack in linear memory),
        // so a large depth exhausts the wasm call stack the host allows.
        #[inline(never)]
        fn go(n: u64) -> u64 {
            if n == 0 {
                return 0;
            }
            go(n - 1).rotate_left(1) ^ n
        }
        black_box(go(black_box(depth)));
        depth
    }

    fn remember(value: String) -> String {
        let mut kept = KEPT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::replace(&mut *kept, value)
    }
}

export!(Echo);
