//! `weir bench nexmark-json`: Nexmark bids decoded from JSON in memory and aggregated per
//! auction in 10-second tumbling windows by a view's compiled path, with CPU time per
//! event, next to arrow-json decoding the same payloads alone.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Int64Type, SchemaRef};

use crate::bench::bids::{self, BID_COLUMNS, BID_VIEW, CHUNK, JsonReader, Payloads};
use crate::bench::drive::{Driver, compile_view, sql};
use crate::bench::measure::{Measured, Span, mib, rate, thousands};
use crate::connector::{Poll, SourceReader};
use crate::engine::Engine;
use crate::error::{Result, WeirError};

/// The rate this path aims at, in events per second per core.
const TARGET_PER_CORE: f64 = 1_000_000.0;

pub async fn run(events: u64) -> Result<()> {
    let n = usize::try_from(events)
        .map_err(|_| WeirError::InvalidParameter("--events is too large".into()))?;
    println!(
        "nexmark-json: {} bids, JSON payloads in memory, decoded {CHUNK} at a time, \
         TUMBLE 10 s per auction (count, max price)",
        thousands(events)
    );
    println!("  machine: {}", crate::bench::measure::machine());
    println!("  view: {BID_VIEW}");

    let t = Instant::now();
    let payloads = Arc::new(bids::generate(n));
    println!(
        "  generated {} bids, {} of JSON ({} bytes per bid) in {:.1} s (not timed)",
        thousands(payloads.len() as u64),
        mib(payloads.bytes() as u64),
        payloads.bytes() / payloads.len().max(1),
        t.elapsed().as_secs_f64()
    );

    let engine = Engine::new().await?;
    sql(
        &engine,
        &format!(
            "CREATE SOURCE bids ({BID_COLUMNS}) WITH (connector = 'nexmark', 'nexmark.table.type' = 'bid')"
        ),
    )
    .await?;
    let view = compile_view(&engine, "q", BID_VIEW).await?;
    let schema = view.plan.source.schema.clone();

    let arrow = arrow_json_alone(&payloads, &schema)?;
    println!(
        "  arrow-json decode alone (one NDJSON buffer, batches of {CHUNK}): {} events/s per core; {}",
        rate(arrow.per_core(events)),
        arrow.describe()
    );
    let decoder = decoder_alone(&payloads, &schema).await?;
    println!(
        "  weir decoder alone (JsonReader polls, payload by payload): {} events/s per core; {}",
        rate(decoder.per_core(events)),
        decoder.describe()
    );

    let mut reader = JsonReader::new(Arc::clone(&payloads), schema)?;
    let mut driver = Driver::new(Arc::clone(&view), &reader.partitions());
    let span = Span::start();
    while driver.step(&mut reader).await? {}
    let full = span.stop();
    bids::check_decoded(&reader)?;
    let per_core = full.per_core(events);
    println!(
        "  decode + window + aggregate: {} events/s per core ({} events/s wall); {}",
        rate(per_core),
        rate(full.per_second(events)),
        full.describe()
    );
    println!("  stages (wall): {}", driver.stages.describe());
    println!(
        "  ratio to arrow-json decode alone: {:.2} (weir decoder alone: {:.2})",
        per_core / arrow.per_core(events),
        decoder.per_core(events) / arrow.per_core(events)
    );

    let (counted, rows) = counted(&view.snapshot()?)?;
    let late = view
        .stats
        .late_rows
        .load(std::sync::atomic::Ordering::Relaxed);
    let windows = view
        .stats
        .windows_closed
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "  check: sum(bids) = {} over {} windows, {} (auction, window) rows, {} late rows dropped",
        thousands(counted),
        thousands(windows),
        thousands(rows),
        thousands(late)
    );
    if counted + late != events {
        return Err(WeirError::Internal(format!(
            "the view counted {counted} bids and dropped {late} late ones out of {events}"
        )));
    }
    println!(
        "RESULT nexmark-json events={events} events_per_core={:.0} events_per_sec_wall={:.0} \
         arrow_json_per_core={:.0} ratio={:.2} target_per_core={TARGET_PER_CORE:.0} {}",
        per_core,
        full.per_second(events),
        arrow.per_core(events),
        per_core / arrow.per_core(events),
        if per_core >= TARGET_PER_CORE {
            "(target met)"
        } else {
            "(below target)"
        }
    );
    Ok(())
}

/// arrow-json's decoder over the payloads as one NDJSON buffer, with the options the
/// Weir decoder uses; nothing else.
fn arrow_json_alone(payloads: &Payloads, schema: &SchemaRef) -> Result<Measured> {
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(CHUNK)
        .with_coerce_primitive(true)
        .build_decoder()?;
    let buf = payloads.ndjson();
    let span = Span::start();
    let mut pos = 0;
    let mut rows = 0;
    loop {
        pos += decoder.decode(&buf[pos..])?;
        match decoder.flush()? {
            Some(batch) => rows += batch.num_rows(),
            None if pos >= buf.len() => break,
            None => {}
        }
    }
    let measured = span.stop();
    if rows != payloads.len() {
        return Err(WeirError::Internal(format!(
            "arrow-json decoded {rows} of {} bids",
            payloads.len()
        )));
    }
    Ok(measured)
}

/// `JsonReader` polled to the end: the Weir decoder and the reader, without the view.
async fn decoder_alone(payloads: &Arc<Payloads>, schema: &SchemaRef) -> Result<Measured> {
    let mut reader = JsonReader::new(Arc::clone(payloads), schema.clone())?;
    let span = Span::start();
    let mut rows = 0;
    while let Poll::Records(batches) = reader.poll().await? {
        rows += batches.iter().map(|b| b.batch.num_rows()).sum::<usize>();
    }
    let measured = span.stop();
    bids::check_decoded(&reader)?;
    if rows != payloads.len() {
        return Err(WeirError::Internal(format!(
            "the decoder returned {rows} of {} bids",
            payloads.len()
        )));
    }
    Ok(measured)
}

/// Sum of the `bids` column and the row count of a view's batches.
pub fn counted(batches: &[datafusion::arrow::array::RecordBatch]) -> Result<(u64, u64)> {
    let mut sum = 0u64;
    let mut rows = 0u64;
    for b in batches {
        let i = b
            .schema()
            .index_of("bids")
            .map_err(|_| WeirError::Internal("the view has no bids column".into()))?;
        let col = b.column(i).as_primitive::<Int64Type>();
        sum += col.iter().flatten().map(|v| v as u64).sum::<u64>();
        rows += (b.num_rows() - col.null_count()) as u64;
    }
    Ok((sum, rows))
}
