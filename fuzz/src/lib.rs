//! What the fuzz targets share: a model of one PostgreSQL connection on Weir's port that
//! feeds client bytes through pgwire's server codec in the states `weir serve` puts it
//! in, and the rule for panics (contained like the server contains them, or fatal).
//!
//! A panic inside pgwire's decoder ends only that connection's task in the server
//! (`src/server/pgwire/mod.rs`), so by default the targets catch such panics, print each
//! distinct site once (`weir-fuzz: contained …`), and go on. What the server could not
//! contain fails the run: memory errors, aborts, hangs, a decoder that returns a message
//! without consuming bytes (the server would loop on it), huge allocations, and panics in
//! Weir's own code. `WEIR_FUZZ_STRICT=1` makes every panic and framing fault a crash.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Mutex, Once, OnceLock};

use bytes::{Buf, BytesMut};
use pgwire::api::{DefaultClient, PgWireConnectionState};
use pgwire::messages::{PgWireFrontendMessage, ProtocolVersion, SslNegotiationMetaMessage};
use pgwire::tokio::server::PgWireMessageServerCodec;
use tokio_util::codec::Decoder;

thread_local! {
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// Whether every panic and framing fault must crash the run (`WEIR_FUZZ_STRICT=1`).
pub fn strict() -> bool {
    static STRICT: OnceLock<bool> = OnceLock::new();
    *STRICT.get_or_init(|| std::env::var("WEIR_FUZZ_STRICT").is_ok_and(|v| v == "1"))
}

fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        // libfuzzer-sys's hook prints and aborts; keep it for panics nobody catches.
        let fatal = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) {
                let site = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some((site, message)));
            } else {
                fatal(info);
            }
        }));
    });
}

/// Report a fault the server survives: printed once per distinct `key`; a crash when strict.
pub fn contained(kind: &str, key: &str, detail: &str) {
    if strict() {
        panic!("{kind} at {key}: {detail}");
    }
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if seen
        .get_or_insert_with(HashSet::new)
        .insert(format!("{kind} {key}"))
    {
        eprintln!("weir-fuzz: contained {kind} at {key}: {detail}");
    }
}

/// Run `f` as the server's connection task runs it: a panic is caught and reported as
/// contained (returns `None`); when strict it is not caught.
pub fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Option<T> {
    if strict() {
        return Some(f());
    }
    install_hook();
    CATCHING.with(|c| c.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(false));
    match result {
        Ok(v) => Some(v),
        Err(_) => {
            let (site, message) = LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_default();
            contained(&format!("panic in {what}"), &site, &message);
            None
        }
    }
}

/// One connection's codec, buffer and state, as `pgwire::tokio::process_socket` drives them
/// with Weir's start-up handler (no TLS acceptor, no authentication).
pub struct Conn {
    codec: PgWireMessageServerCodec<String>,
    buf: BytesMut,
    started: bool,
    ssl_done: bool,
    gss_done: bool,
    closed: bool,
    /// What happened, in order: one line per decoded message, error or end.
    pub log: Vec<String>,
    /// Messages decoded after start-up, for targets that look further into them.
    pub messages: Vec<PgWireFrontendMessage>,
}

impl Conn {
    /// A connection just accepted: SSL/GSS negotiation, then the start-up packet.
    pub fn accepted() -> Self {
        let client = DefaultClient::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 40000)), false);
        Conn {
            codec: PgWireMessageServerCodec::new(client),
            buf: BytesMut::new(),
            started: false,
            ssl_done: false,
            gss_done: false,
            closed: false,
            log: Vec::new(),
            messages: Vec::new(),
        }
    }

    /// A connection past start-up (protocol 3.0 or 3.2), reading queries.
    pub fn ready(version: ProtocolVersion) -> Self {
        let mut conn = Self::accepted();
        conn.started = true;
        conn.codec.client_info.protocol_version = version;
        conn.codec.client_info.state = PgWireConnectionState::ReadyForQuery;
        conn
    }

    pub fn closed(&self) -> bool {
        self.closed
    }

    fn close(&mut self, why: String) {
        self.log.push(why);
        self.closed = true;
    }

    /// Bytes arriving from the client: decode every message they complete.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.closed || chunk.is_empty() {
            return;
        }
        if !self.started {
            self.started = true;
            // process_socket peeks the first byte: 0x16 is a direct TLS handshake, which
            // Weir (no TLS acceptor) answers by closing.
            if chunk[0] == 0x16 {
                self.close("direct tls: closed".into());
                return;
            }
        }
        self.buf.extend_from_slice(chunk);
        while !self.closed && self.step() {}
    }

    /// The client closed its side: what is left in the buffer is an error (`decode_eof`).
    pub fn finish(&mut self) {
        if !self.closed {
            let left = self.buf.len();
            self.close(format!("eof, {left} bytes left"));
        }
    }

    /// One decode; false when more bytes are needed or the connection is closed.
    fn step(&mut self) -> bool {
        let state = self.codec.client_info.state;
        let before = self.buf.len();
        // The length a tagged message declares, to check it consumes exactly its frame.
        let declared = (self.buf.len() >= 5).then(|| (self.buf[0], (&self.buf[1..5]).get_i32()));
        let codec = &mut self.codec;
        let buf = &mut self.buf;
        let Some(result) = guarded("pgwire decode", || codec.decode(buf)) else {
            // The connection's task ends.
            self.close("panic: closed".into());
            return false;
        };
        let consumed = before - self.buf.len();
        match state {
            PgWireConnectionState::AwaitingSslRequest => match result {
                Ok(None) => false,
                Ok(Some(PgWireFrontendMessage::SslNegotiation(meta))) => {
                    match meta {
                        SslNegotiationMetaMessage::PostgresSsl(_) => {
                            self.log.push("ssl request: refused".into());
                            self.ssl_done = true;
                            if self.gss_done {
                                self.awaiting_startup();
                            }
                        }
                        SslNegotiationMetaMessage::PostgresGss(_) => {
                            self.log.push("gss request: refused".into());
                            self.gss_done = true;
                            if self.ssl_done {
                                self.awaiting_startup();
                            }
                        }
                        SslNegotiationMetaMessage::None => self.awaiting_startup(),
                    }
                    self.no_loop(consumed, state);
                    true
                }
                Ok(Some(other)) => {
                    self.log.push(format!("before start-up: {other:?}"));
                    self.awaiting_startup();
                    true
                }
                // peek_for_sslrequest stops at an error; start-up then reads the same buffer.
                Err(e) => {
                    self.log.push(format!("negotiation error: {e}"));
                    self.awaiting_startup();
                    true
                }
            },
            PgWireConnectionState::AwaitingStartup
            | PgWireConnectionState::AuthenticationInProgress => match result {
                Ok(None) => false,
                Ok(Some(PgWireFrontendMessage::CancelRequest(c))) => {
                    self.close(format!("cancel request: {c:?}"));
                    false
                }
                Ok(Some(PgWireFrontendMessage::Startup(s))) => {
                    self.no_loop(consumed, state);
                    // pgwire's protocol_negotiation, then Weir's on_startup finishes.
                    let major = s.protocol_number_major;
                    let minor = s.protocol_number_minor;
                    let version = ProtocolVersion::from_version_number(major, minor)
                        .or((major == 3).then(ProtocolVersion::default));
                    self.log.push(format!("startup: {s:?}"));
                    match version {
                        Some(v) => {
                            self.codec.client_info.protocol_version = v;
                            self.codec.client_info.state = PgWireConnectionState::ReadyForQuery;
                            true
                        }
                        None => {
                            self.close(format!("unsupported protocol {major}.{minor}: closed"));
                            false
                        }
                    }
                }
                Ok(Some(other)) => {
                    // Weir's start-up handler ignores anything but Startup.
                    self.no_loop(consumed, state);
                    self.log.push(format!("during start-up: {other:?}"));
                    true
                }
                Err(e) => {
                    self.close(format!("start-up error: {e}"));
                    false
                }
            },
            _ => match result {
                Ok(None) => false,
                Ok(Some(PgWireFrontendMessage::Terminate(_))) => {
                    self.close("terminate".into());
                    false
                }
                Ok(Some(msg)) => {
                    self.no_loop(consumed, state);
                    if let Some((tag, len)) = declared
                        && len >= 4
                        && consumed != len as usize + 1
                    {
                        contained(
                            "frame overrun",
                            &format!("message {:?}", tag as char),
                            &format!("declared length {len}, decoder consumed {consumed} bytes"),
                        );
                    }
                    self.log.push(format!("{msg:?}"));
                    self.messages.push(msg);
                    true
                }
                Err(e) => {
                    self.close(format!("error: {e}"));
                    false
                }
            },
        }
    }

    fn awaiting_startup(&mut self) {
        self.codec.client_info.state = PgWireConnectionState::AwaitingStartup;
    }

    /// The server loops on `socket.next()`: a message that consumes nothing and leaves
    /// the state as it was would be decoded again forever.
    fn no_loop(&self, consumed: usize, before: PgWireConnectionState) {
        if consumed == 0 && format!("{:?}", self.codec.client_info.state) == format!("{before:?}") {
            panic!(
                "decoder returned a message without consuming bytes in {before:?}: the server would loop"
            );
        }
    }
}

/// Split points that do not depend on anything but the data: a cheap hash walk.
pub fn splits(data: &[u8]) -> Vec<usize> {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
    }
    let mut cuts = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        h ^= h << 13;
        h ^= h >> 7;
        h ^= h << 17;
        at += 1 + (h % 23) as usize;
        cuts.push(at.min(data.len()));
    }
    cuts
}

/// Feed `data` to `conn` all at once, byte by byte, and in hash-chosen pieces; the three
/// must decode alike, since TCP may deliver any of them. Returns the all-at-once run.
pub fn run_split_checked(data: &[u8], make: impl Fn() -> Conn) -> Conn {
    let mut whole = make();
    whole.feed(data);
    whole.finish();

    let mut bytewise = make();
    for b in data {
        bytewise.feed(std::slice::from_ref(b));
        if bytewise.closed() {
            break;
        }
    }
    bytewise.finish();

    let mut pieces = make();
    let mut from = 0;
    for to in splits(data) {
        pieces.feed(&data[from..to]);
        from = to;
    }
    pieces.finish();

    for (name, other) in [("byte by byte", &bytewise), ("in pieces", &pieces)] {
        if other.log != whole.log {
            let at = whole
                .log
                .iter()
                .zip(&other.log)
                .position(|(a, b)| a != b)
                .unwrap_or(whole.log.len().min(other.log.len()));
            let first = |log: &Vec<String>| log.get(at).cloned().unwrap_or_default();
            let kind = first(&whole.log);
            let key: String = kind.chars().take_while(|c| c.is_alphanumeric()).collect();
            contained(
                "split-dependent decoding",
                &key,
                &format!(
                    "all at once: {:.200} / {name}: {:.200}",
                    first(&whole.log),
                    first(&other.log)
                ),
            );
        }
    }
    whole
}
