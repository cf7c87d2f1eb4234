//! A connection's bytes from the first one: SSLRequest/GSSENCRequest (refused),
//! CancelRequest or StartupMessage, then whatever follows, through pgwire's server codec
//! in the states `weir serve` goes through, delivered whole, byte by byte and in pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_fuzz::{Conn, run_split_checked};

fuzz_target!(|data: &[u8]| {
    run_split_checked(data, Conn::accepted);
});
