//! Frames after start-up (Query, Parse, Bind, Describe, Execute, Close, Sync, Flush,
//! CopyData/Done/Fail, password and SASL messages, Terminate), several to a buffer and
//! split anywhere, through pgwire's server codec in the ready state. The first byte
//! picks the protocol version start-up agreed on (3.0 or 3.2).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgwire::messages::ProtocolVersion;
use weir_fuzz::{Conn, run_split_checked};

fuzz_target!(|data: &[u8]| {
    let Some((&version, stream)) = data.split_first() else {
        return;
    };
    let version = if version & 1 == 0 {
        ProtocolVersion::PROTOCOL3_0
    } else {
        ProtocolVersion::PROTOCOL3_2
    };
    run_split_checked(stream, || Conn::ready(version));
});
