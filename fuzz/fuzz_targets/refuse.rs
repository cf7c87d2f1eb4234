//! Weir's own start-up reader: `session::refuse` (src/server/pgwire/session.rs), which
//! answers a connection past `max_connections` — SSL/GSS requests declined with `N`, a
//! CancelRequest closed quietly, anything else answered with one FATAL ErrorResponse.
//! The module is compiled from Weir's source as is; a panic here is Weir's and crashes.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/server/pgwire/session.rs"]
mod session;
// session.rs takes its locks through Weir's one poisoned-lock policy.
#[allow(dead_code)]
#[path = "../../src/locks.rs"]
mod locks;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    runtime().block_on(session::refuse(
        tokio::io::join(data, &mut out),
        "53300",
        "sorry, too many clients already",
    ));
    // Only `N` answers, then at most one ErrorResponse that is the whole rest.
    let answers = out.iter().take_while(|b| **b == b'N').count();
    let rest = &out[answers..];
    if !rest.is_empty() {
        assert_eq!(rest[0], b'E', "unexpected answer {out:?}");
        let len = i32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        assert_eq!(len + 1, rest.len(), "ErrorResponse length {out:?}");
        assert!(
            rest.windows(6).any(|w| w == b"C53300"),
            "ErrorResponse without its code {out:?}"
        );
    }
});
