//! Bound parameters as Weir reads them: Parse (parameter type OIDs) and Bind (values,
//! text or binary) decoded from the stream, then each value read with
//! `Portal::parameter` as the Rust type arrow-pg's `deserialize_parameters` asks for
//! that type (the client's OID; without one, every type in turn).
#![no_main]

use std::sync::Arc;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use libfuzzer_sys::fuzz_target;
use pg_interval::Interval;
use pgwire::api::Type;
use pgwire::api::portal::Portal;
use pgwire::api::stmt::StoredStatement;
use pgwire::messages::{PgWireFrontendMessage, ProtocolVersion};
use rust_decimal::Decimal;
use weir_fuzz::{Conn, guarded};

#[path = "../../src/server/pgwire/binary.rs"]
mod binary;

/// The types arrow-pg 0.16 decodes parameters of (`datatypes/df.rs`).
const TYPES: &[Type] = &[
    Type::BOOL,
    Type::CHAR,
    Type::INT2,
    Type::INT4,
    Type::INT8,
    Type::TEXT,
    Type::VARCHAR,
    Type::BYTEA,
    Type::FLOAT4,
    Type::FLOAT8,
    Type::NUMERIC,
    Type::TIMESTAMP,
    Type::TIMESTAMPTZ,
    Type::DATE,
    Type::TIME,
    Type::UUID,
    Type::JSON,
    Type::JSONB,
    Type::INTERVAL,
    Type::BOOL_ARRAY,
    Type::INT2_ARRAY,
    Type::INT4_ARRAY,
    Type::INT8_ARRAY,
    Type::FLOAT4_ARRAY,
    Type::FLOAT8_ARRAY,
    Type::TEXT_ARRAY,
    Type::VARCHAR_ARRAY,
    Type::INTERVAL_ARRAY,
    Type::NUMERIC_ARRAY,
    Type::MONEY,
    Type::INET,
    Type::MACADDR,
    Type::UNKNOWN,
];

fn read(portal: &Portal<String>, i: usize, ty: &Type) {
    // Weir refuses a binary array whose header claims more elements than its bytes
    // hold (22P03) before any decoder sees it.
    if ty.name().starts_with('_')
        && portal.parameter_format.is_binary(i)
        && portal.parameters[i]
            .as_ref()
            .is_some_and(|v| !binary::array_header_fits(v))
    {
        return;
    }
    // Errors are answers to the client; only a panic matters here.
    let _ = match *ty {
        Type::BOOL => portal.parameter::<bool>(i, ty).map(drop),
        Type::CHAR => portal.parameter::<i8>(i, ty).map(drop),
        Type::INT2 => portal.parameter::<i16>(i, ty).map(drop),
        Type::INT4 => portal.parameter::<i32>(i, ty).map(drop),
        Type::INT8 | Type::MONEY => portal.parameter::<i64>(i, ty).map(drop),
        Type::BYTEA => portal.parameter::<Vec<u8>>(i, ty).map(drop),
        Type::FLOAT4 => portal.parameter::<f32>(i, ty).map(drop),
        Type::FLOAT8 => portal.parameter::<f64>(i, ty).map(drop),
        Type::NUMERIC => portal.parameter::<Decimal>(i, ty).map(drop),
        Type::TIMESTAMP => portal.parameter::<NaiveDateTime>(i, ty).map(drop),
        Type::TIMESTAMPTZ => portal.parameter::<DateTime<FixedOffset>>(i, ty).map(drop),
        Type::DATE => portal.parameter::<NaiveDate>(i, ty).map(drop),
        Type::TIME => portal.parameter::<NaiveTime>(i, ty).map(drop),
        Type::INTERVAL => portal.parameter::<Interval>(i, ty).map(drop),
        Type::BOOL_ARRAY => portal.parameter::<Vec<Option<bool>>>(i, ty).map(drop),
        Type::INT2_ARRAY => portal.parameter::<Vec<Option<i16>>>(i, ty).map(drop),
        Type::INT4_ARRAY => portal.parameter::<Vec<Option<i32>>>(i, ty).map(drop),
        Type::INT8_ARRAY => portal.parameter::<Vec<Option<i64>>>(i, ty).map(drop),
        Type::FLOAT4_ARRAY => portal.parameter::<Vec<Option<f32>>>(i, ty).map(drop),
        Type::FLOAT8_ARRAY => portal.parameter::<Vec<Option<f64>>>(i, ty).map(drop),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => {
            portal.parameter::<Vec<Option<String>>>(i, ty).map(drop)
        }
        Type::INTERVAL_ARRAY => portal.parameter::<Vec<Option<Interval>>>(i, ty).map(drop),
        Type::NUMERIC_ARRAY => portal.parameter::<Vec<Option<Decimal>>>(i, ty).map(drop),
        _ => portal.parameter::<String>(i, ty).map(drop),
    };
}

fuzz_target!(|data: &[u8]| {
    let mut conn = Conn::ready(ProtocolVersion::PROTOCOL3_0);
    conn.feed(data);
    let mut types: Vec<Option<Type>> = Vec::new();
    for msg in &conn.messages {
        match msg {
            PgWireFrontendMessage::Parse(parse) => {
                types = parse.type_oids.iter().map(|o| Type::from_oid(*o)).collect();
            }
            PgWireFrontendMessage::Bind(bind) => {
                let statement = Arc::new(StoredStatement::new(
                    "fuzz".to_string(),
                    String::new(),
                    types.clone(),
                ));
                let Some(Ok(portal)) =
                    guarded("Portal::try_new", || Portal::try_new(bind, statement))
                else {
                    continue;
                };
                for i in 0..portal.parameter_len() {
                    match types.get(i).cloned().flatten() {
                        Some(ty) => {
                            guarded("parameter decoding", || read(&portal, i, &ty));
                        }
                        None => {
                            for ty in TYPES {
                                guarded("parameter decoding", || read(&portal, i, ty));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
});
