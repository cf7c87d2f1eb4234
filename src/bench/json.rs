//! `weir bench nexmark-json`: Nexmark bids decoded from JSON in memory and aggregated per
//! auction in 10-second tumbling windows by a view's compiled path, with CPU time per
//! event, next to arrow-json decoding the same payloads alone.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Int64Type, SchemaRef};

use crate::bench::bids::{self, BID_COLUMNS, BID_VIEW, CHUNK, JsonReader, Payloads};
use crate::bench::drive::{Processor, compile_view, sql};
use crate::bench::measure::{Measured, Span, mib, rate, thousands};
use crate::connector::{Poll, SourceReader};
use crate::engine::Engine;
use crate::error::{Result, WeirError};
use crate::view::state::View;

/// The rate this path aims at, in events per second per core.
const TARGET_PER_CORE: f64 = 1_000_000.0;

pub async fn run(events: u64, runs: usize) -> Result<()> {
    let n = usize::try_from(events)
        .map_err(|_| WeirError::InvalidParameter("--events is too large".into()))?;
    let runs = runs.max(1);
    println!(
        "nexmark-json: {} bids, JSON payloads in memory, decoded {CHUNK} at a time, \
         TUMBLE 10 s per auction (count, max price); median of {runs} runs each",
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
    let compiled = compile_view(&engine, "q", BID_VIEW).await?;
    let schema = compiled.plan.stream.source.schema.clone();
    // The source columns the view reads, which its reader decodes.
    let columns = compiled.plan.stream.columns.clone();
    println!(
        "  the view reads {} of the {} columns: {}",
        columns.len(),
        schema.fields().len(),
        columns
            .iter()
            .map(|&i| schema.field(i).name().as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );

    // The measurements take turns, so a slow stretch of a shared machine hits them alike.
    let (mut arrow, mut fed, mut decoder, mut full) = (vec![], vec![], vec![], vec![]);
    let mut last = None;
    for _ in 0..runs {
        arrow.push(arrow_json_alone(&payloads, &schema)?);
        fed.push(arrow_json_fed(&payloads, &schema)?);
        decoder.push(decoder_alone(&payloads, &schema, &columns).await?);
        let view = compile_view(&engine, "q", BID_VIEW).await?;
        let mut reader = JsonReader::new(
            Arc::clone(&payloads),
            schema.clone(),
            &view.plan.stream.columns,
        )?;
        let mut driver = Processor::new(Arc::clone(&view), &reader.partitions());
        let span = Span::start();
        while driver.step(&mut reader).await? {}
        full.push(span.stop());
        bids::check_decoded(&reader)?;
        check(&view, events)?;
        last = Some((view, driver.stages));
    }
    let (view, stages) = last.expect("one run at least");
    let line = |what: &str, runs: &[Measured]| {
        let m = median(runs);
        println!(
            "  {what}: {} events/s per core; {} [runs: {}]",
            rate(m.per_core(events)),
            m.describe(),
            runs.iter()
                .map(|r| rate(r.per_core(events)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        m
    };
    let arrow = line(
        &format!("arrow-json decode alone (one NDJSON buffer, batches of {CHUNK})"),
        &arrow,
    );
    let fed = line(
        "arrow-json fed payload by payload (one decoder kept throughout)",
        &fed,
    );
    let decoder = line(
        "weir decoder alone (JsonReader polls, crate::decode::Decoder, the view's columns)",
        &decoder,
    );
    let full = line("decode + window + aggregate (the view's path)", &full);
    let per_core = full.per_core(events);
    println!(
        "  the view's path, wall: {} events/s",
        rate(full.per_second(events))
    );
    println!("  stages of the last run (wall): {}", stages.describe());
    let base = arrow.per_core(events);
    println!(
        "  ratio to arrow-json decode alone: view's path {:.2}, weir decoder {:.2}, \
         arrow-json fed payload by payload {:.2}",
        per_core / base,
        decoder.per_core(events) / base,
        fed.per_core(events) / base
    );
    let (counted, rows) = counted(&view.rows_now()?)?;
    println!(
        "  check: sum(bids) = {} over {} windows, {} (auction, window) rows, {} late rows dropped",
        thousands(counted),
        thousands(view.stats.windows_closed.load(Ordering::Relaxed)),
        thousands(rows),
        thousands(view.stats.late_rows.load(Ordering::Relaxed))
    );
    println!(
        "RESULT nexmark-json events={events} runs={runs} events_per_core={:.0} \
         events_per_sec_wall={:.0} arrow_json_per_core={:.0} ratio={:.2} \
         target_per_core={TARGET_PER_CORE:.0} {}",
        per_core,
        full.per_second(events),
        base,
        per_core / base,
        if per_core >= TARGET_PER_CORE {
            "(target met)"
        } else {
            "(below target)"
        }
    );
    Ok(())
}

/// Every bid counted once by the view, or dropped as late.
fn check(view: &View, events: u64) -> Result<()> {
    let (counted, _) = counted(&view.rows_now()?)?;
    let late = view.stats.late_rows.load(Ordering::Relaxed);
    if counted + late != events {
        return Err(WeirError::Internal(format!(
            "the view counted {counted} bids and dropped {late} late ones out of {events}"
        )));
    }
    Ok(())
}

/// The run with the median CPU time.
fn median(runs: &[Measured]) -> Measured {
    let mut sorted = runs.to_vec();
    sorted.sort_by_key(|m| m.cpu);
    sorted[sorted.len() / 2]
}

/// An error unless `what` decoded every one of `total` bids.
fn all_decoded(what: &str, rows: usize, total: usize) -> Result<()> {
    if rows != total {
        return Err(WeirError::Internal(format!(
            "{what} decoded {rows} of {total} bids"
        )));
    }
    Ok(())
}

/// arrow-json's decoder with the options the Weir decoder uses.
fn arrow_json(schema: &SchemaRef, batch_size: usize) -> Result<arrow_json::reader::Decoder> {
    Ok(arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(batch_size)
        .with_coerce_primitive(true)
        .build_decoder()?)
}

/// arrow-json's decoder over the payloads as one NDJSON buffer; nothing else.
fn arrow_json_alone(payloads: &Payloads, schema: &SchemaRef) -> Result<Measured> {
    let mut decoder = arrow_json(schema, CHUNK)?;
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
    all_decoded("arrow-json", rows, payloads.len())?;
    Ok(measured)
}

/// arrow-json's decoder fed each payload and a newline in turn, flushed every `CHUNK`
/// payloads, the one decoder kept throughout.
fn arrow_json_fed(payloads: &Payloads, schema: &SchemaRef) -> Result<Measured> {
    let mut decoder = arrow_json(schema, CHUNK + 1)?;
    let span = Span::start();
    let mut rows = 0;
    for start in (0..payloads.len()).step_by(CHUNK) {
        for i in start..(start + CHUNK).min(payloads.len()) {
            decoder.decode(payloads.get(i))?;
            decoder.decode(b"\n")?;
        }
        rows += decoder.flush()?.map_or(0, |b| b.num_rows());
    }
    let measured = span.stop();
    all_decoded("arrow-json", rows, payloads.len())?;
    Ok(measured)
}

/// `JsonReader` polled to the end: the Weir decoder and the reader, without the view.
async fn decoder_alone(
    payloads: &Arc<Payloads>,
    schema: &SchemaRef,
    columns: &[usize],
) -> Result<Measured> {
    let mut reader = JsonReader::new(Arc::clone(payloads), schema.clone(), columns)?;
    let span = Span::start();
    let mut rows = 0;
    while let Poll::Records(batches) = reader.poll().await? {
        rows += batches.iter().map(|b| b.batch.num_rows()).sum::<usize>();
    }
    let measured = span.stop();
    bids::check_decoded(&reader)?;
    all_decoded("the decoder", rows, payloads.len())?;
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
