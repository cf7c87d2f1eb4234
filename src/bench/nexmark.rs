//! `weir bench nexmark`: the Nexmark queries of `examples/nexmark/`, each compiled as the
//! server compiles it. A view over bids alone is driven by the pipeline's own `Processor` over
//! the in-process bid generator, or over bids decoded from a JSON-lines file; the joins
//! (and q8's views on views) run on their own pipelines, as in the server, until `FLUSH`.
//! Events per second per core.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::bench::bids::{JsonReader, Payloads};
use crate::bench::drive::{Processor, compile_statement, sql};
use crate::bench::measure::{Measured, Span, mib, rate, thousands};
use crate::bench::supplied::{OpenReader, Supplied};
use crate::connector::{Poll, SourceReader};
use crate::engine::Engine;
use crate::error::{Result, WeirError};

/// The queries, as shipped in `examples/nexmark/`.
pub const QUERIES: &[(&str, &str)] = &[
    ("q0", include_str!("../../examples/nexmark/q0.sql")),
    ("q1", include_str!("../../examples/nexmark/q1.sql")),
    ("q2", include_str!("../../examples/nexmark/q2.sql")),
    ("q3", include_str!("../../examples/nexmark/q3.sql")),
    ("q4", include_str!("../../examples/nexmark/q4.sql")),
    ("q5", include_str!("../../examples/nexmark/q5.sql")),
    ("q6", include_str!("../../examples/nexmark/q6.sql")),
    ("q7", include_str!("../../examples/nexmark/q7.sql")),
    ("q8", include_str!("../../examples/nexmark/q8.sql")),
];

/// The queries that read more than bids, or more than one view: run on pipelines.
fn on_pipelines(name: &str) -> bool {
    matches!(name, "q3" | "q4" | "q6" | "q8")
}

/// Persons, auctions and bids of the Nexmark event stream that holds `bids` bids (of
/// every 50 events, 1 is a person, 3 are auctions and 46 are bids).
fn stream_counts(bids: u64) -> [(&'static str, u64); 3] {
    let total = bids * 50 / 46;
    [
        ("person", total / 50),
        ("auction", total * 3 / 50),
        ("bid", bids),
    ]
}

const BASE_TIME: &str = "2026-01-01 00:00:00";

/// Where the bids come from.
enum Events {
    Generator,
    Json(Arc<Payloads>),
}

pub async fn run(
    queries: &[String],
    events: u64,
    runs: usize,
    json: Option<&std::path::Path>,
) -> Result<()> {
    let runs = runs.max(1);
    let wanted: Vec<(&str, &str)> = if queries.is_empty() {
        QUERIES.to_vec()
    } else {
        queries
            .iter()
            .map(|q| {
                QUERIES
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(q))
                    .copied()
                    .ok_or_else(|| {
                        WeirError::InvalidParameter(format!(
                            "unknown query '{q}'; valid: {}",
                            QUERIES
                                .iter()
                                .map(|(n, _)| *n)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })
            })
            .collect::<Result<_>>()?
    };
    let input = match json {
        None => Events::Generator,
        Some(path) => {
            let t = Instant::now();
            let payloads = read_lines(path)?;
            println!(
                "  read {} bids, {} of JSON, from {} in {:.1} s (not timed)",
                thousands(payloads.len() as u64),
                mib(payloads.bytes() as u64),
                path.display(),
                t.elapsed().as_secs_f64()
            );
            Events::Json(Arc::new(payloads))
        }
    };
    let events = match &input {
        Events::Generator => events,
        Events::Json(p) => p.len() as u64,
    };
    println!(
        "nexmark: {} bids from {}, median of {runs} runs per query",
        thousands(events),
        match json {
            None => "the in-process generator".to_string(),
            Some(p) => format!("JSON lines decoded in memory ({})", p.display()),
        }
    );
    println!("  machine: {}", crate::bench::measure::machine());
    if let Events::Generator = input {
        let m = generator_alone(events).await?;
        println!(
            "  the generator alone: {} events/s per core; {}",
            rate(m.per_core(events)),
            m.describe()
        );
    }
    // The persons and auctions next to the bids, read once for every join.
    let mut files = None;
    for (name, text) in wanted {
        if on_pipelines(name) {
            if let (Events::Json(bids), Some(path), None) = (&input, json, &files) {
                files = Some(other_files(path, Arc::clone(bids))?);
            }
            on_engine(name, text, events, runs, files.clone()).await?;
            continue;
        }
        let mut measured = Vec::new();
        let mut last = None;
        for _ in 0..runs {
            let engine = source(events).await?;
            let view = compile_statement(&engine, text).await?;
            let mut reader: Box<dyn SourceReader> = match &input {
                Events::Generator => {
                    view.plan
                        .stream
                        .source
                        .open(&view.plan.stream.columns, None)
                        .await?
                }
                Events::Json(payloads) => Box::new(JsonReader::new(
                    Arc::clone(payloads),
                    view.plan.stream.source.schema.clone(),
                    &view.plan.stream.columns,
                )?),
            };
            let mut driver = Processor::new(Arc::clone(&view), &reader.partitions());
            let span = Span::start();
            while driver.step(reader.as_mut()).await? {}
            measured.push(span.stop());
            let read = view.stats.rows_in.load(Ordering::Relaxed);
            if read != events || reader.decode_errors() > 0 {
                return Err(WeirError::Internal(format!(
                    "{name} read {read} of {events} bids ({} did not decode)",
                    reader.decode_errors()
                )));
            }
            last = Some((view, driver.stages));
        }
        let (view, stages) = last.expect("one run at least");
        let rows: usize = view.rows_now()?.iter().map(|b| b.num_rows()).sum();
        report(name, events, &mut measured, rows);
        println!("    stages of the last run (wall): {}", stages.describe());
    }
    Ok(())
}

/// One query's figures: the median run by CPU time, and each run's rate.
fn report(name: &str, events: u64, measured: &mut [Measured], rows: usize) {
    measured.sort_by_key(|m| m.cpu);
    let m = measured[measured.len() / 2];
    println!(
        "  {name}: {} events/s per core, {} events/s wall; {}; {} rows in the view; \
         runs: {}",
        rate(m.per_core(events)),
        rate(m.per_second(events)),
        m.describe(),
        thousands(rows as u64),
        measured
            .iter()
            .map(|r| rate(r.per_core(events)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "RESULT nexmark query={name} events={events} events_per_core={:.0} \
         events_per_sec_wall={:.0} cpu_s={:.3} rows={rows}",
        m.per_core(events),
        m.per_second(events),
        m.cpu.as_secs_f64()
    );
}

/// A query over several streams or views, as the server runs it: its statements on an
/// engine with the three sources, then `FLUSH`; the events are those of the sources the
/// views read, the CPU time the whole process's.
async fn on_engine(
    name: &str,
    text: &str,
    bids: u64,
    runs: usize,
    files: Option<[Arc<Payloads>; 3]>,
) -> Result<()> {
    let counts = match &files {
        None => stream_counts(bids),
        Some(f) => {
            let mut counts = stream_counts(0);
            for (c, p) in counts.iter_mut().zip(f) {
                c.1 = p.len() as u64;
            }
            counts
        }
    };
    let mut measured = Vec::new();
    let mut events = 0;
    let mut rows = 0;
    for _ in 0..runs {
        let engine = Engine::new().await?;
        for (table, n) in counts {
            sql(&engine, &source_sql(table, n)).await?;
        }
        for ((table, n), payloads) in counts.iter().zip(files.iter().flatten()) {
            let def = engine
                .catalog()
                .sources()
                .into_iter()
                .find(|s| s.name == *table)
                .expect("created above");
            let (schema, payloads) = (def.schema.clone(), Arc::clone(payloads));
            let open: Arc<OpenReader> = Arc::new(move |columns: &[usize]| {
                let reader = JsonReader::new(Arc::clone(&payloads), schema.clone(), columns)?;
                Ok(Box::new(reader) as Box<dyn SourceReader>)
            });
            engine
                .catalog()
                .supply(engine.context(), table, Supplied::connector(open, *n))?;
        }
        let span = Span::start();
        for statement in crate::sql::split_statements(text)? {
            sql(&engine, &statement.text).await?;
        }
        sql(&engine, "FLUSH").await?;
        measured.push(span.stop());
        let views = engine.catalog().views();
        let mut read: Vec<&str> = views
            .iter()
            .flat_map(|v| v.sources())
            .filter(|s| counts.iter().any(|(t, _)| *t == s.name))
            .map(|s| s.name.as_str())
            .collect();
        read.sort_unstable();
        read.dedup();
        events = counts
            .iter()
            .filter(|(t, _)| read.contains(t))
            .map(|(_, n)| n)
            .sum();
        let view = views
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| WeirError::Internal(format!("no view {name}")))?;
        rows = view.rows_now()?.iter().map(|b| b.num_rows()).sum();
        for (table, _) in counts {
            sql(&engine, &format!("DROP SOURCE {table} CASCADE")).await?;
        }
    }
    report(name, events, &mut measured, rows);
    println!(
        "    on the server's pipelines, from {}{}",
        if files.is_some() {
            "JSON lines decoded in memory: "
        } else {
            ""
        },
        counts
            .iter()
            .map(|(t, n)| format!("{} {t}s", thousands(*n)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// The persons and auctions next to a file of bids (`DIR/bid.json` → `DIR/person.json`,
/// `DIR/auction.json`), read before timing; with the bids, in `stream_counts` order.
fn other_files(bids: &std::path::Path, bid: Arc<Payloads>) -> Result<[Arc<Payloads>; 3]> {
    let dir = bids.parent().unwrap_or(std::path::Path::new("."));
    let read = |table: &str| read_lines(&dir.join(format!("{table}.json"))).map(Arc::new);
    Ok([read("person")?, read("auction")?, bid])
}

/// A JSON-lines file, one payload per line.
fn read_lines(path: &std::path::Path) -> Result<Payloads> {
    let text = std::fs::read(path)
        .map_err(|e| WeirError::InvalidParameter(format!("cannot read {}: {e}", path.display())))?;
    Ok(Payloads::from_ndjson(&text))
}

fn source_sql(table: &str, events: u64) -> String {
    format!(
        "CREATE SOURCE {table} (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) \
         WITH (connector = 'nexmark', 'nexmark.table.type' = '{table}', \
         'nexmark.event.num' = '{events}', 'nexmark.base.time' = '{BASE_TIME}')"
    )
}

/// An engine with the `bid` source of `examples/nexmark/`, `events` bids long.
async fn source(events: u64) -> Result<Engine> {
    let engine = Engine::new().await?;
    sql(&engine, &source_sql("bid", events)).await?;
    Ok(engine)
}

/// The bid generator polled to its end, without a view: the share of the source.
async fn generator_alone(events: u64) -> Result<Measured> {
    let engine = source(events).await?;
    let def = engine
        .catalog()
        .sources()
        .into_iter()
        .find(|s| s.name == "bid")
        .ok_or_else(|| WeirError::Internal("no bid source".into()))?;
    let all: Vec<usize> = (0..def.schema.fields().len()).collect();
    let mut reader = def.open(&all, None).await?;
    let span = Span::start();
    let mut rows = 0u64;
    while let Poll::Records(batches) = reader.poll().await? {
        rows += batches
            .iter()
            .map(|b| b.batch.num_rows() as u64)
            .sum::<u64>();
    }
    let m = span.stop();
    if rows != events {
        return Err(WeirError::Internal(format!(
            "the generator gave {rows} of {events} bids"
        )));
    }
    Ok(m)
}
