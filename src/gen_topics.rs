//! `weir gen`: writes the in-process generators' events into Kafka topics as JSON, one
//! record per event — the topics of each example pipeline (ShopNow+, the transactions
//! report, ShopSphere, realtime sales, marketing ROI) or Nexmark's three — at a steady
//! rate per topic, with a progress line on stderr.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::ValueEnum;
use datafusion::arrow::array::RecordBatch;
use rdkafka::producer::FutureRecord;

use crate::connector::datagen::{DatagenOptions, Generator, Profile};
use crate::connector::generated::{BATCH, Generate};
use crate::connector::kafka::{create_topic, producer};
use crate::connector::nexmark::{NexmarkGenerator, Table};
use crate::error::{Result, WeirError};

/// Which topics `weir gen` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GenProfile {
    /// page_views, cart_additions, orders, payments, stock_updates
    Shop,
    /// transactions
    Transactions,
    /// shopsphere.transactions, shopsphere.products
    Shopsphere,
    /// product_sold
    Sales,
    /// web_logs, crm_orders, ad_spend
    Marketing,
    /// person, auction, bid
    Nexmark,
}

/// What `weir gen` was asked for.
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub brokers: String,
    pub profile: GenProfile,
    /// Events per second per topic; `None`: as fast as the brokers take them.
    pub rate: Option<f64>,
    pub seed: u64,
    /// Events per topic; `None`: until interrupted.
    pub count: Option<u64>,
    /// Partitions of the topics it creates (existing topics are left as they are).
    pub partitions: i32,
    /// Event time of the first event, in microseconds since the Unix epoch; `None`: now.
    pub start_micros: Option<i64>,
}

/// A `--start` timestamp (`2026-01-01 00:00:00`, RFC 3339 too) in microseconds.
pub fn parse_start(text: &str) -> std::result::Result<i64, String> {
    datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(text.trim())
        .map(|n| n / 1000)
        .map_err(|_| format!("expected a timestamp such as '2026-01-01 00:00:00', got '{text}'"))
}

/// Events per second, or `None` for 'unlimited'.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(pub Option<f64>);

/// `'unlimited'` or a positive number of events per second.
pub fn parse_rate(text: &str) -> std::result::Result<Rate, String> {
    if text.trim().eq_ignore_ascii_case("unlimited") {
        return Ok(Rate(None));
    }
    match text.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(Rate(Some(r))),
        _ => Err(format!(
            "expected a positive number of events per second or 'unlimited', got '{text}'"
        )),
    }
}

/// One topic and the generator of its events.
struct Stream {
    topic: &'static str,
    generator: Box<dyn Generate>,
    sent: u64,
}

/// The topics of `profile` with their generators; event times start now.
fn streams(options: &GenOptions) -> Result<Vec<Stream>> {
    let now = match options.start_micros {
        Some(us) => Duration::from_micros(u64::try_from(us).map_err(|_| {
            WeirError::InvalidParameter("weir gen --start must be after 1970".into())
        })?),
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| WeirError::Internal(e.to_string()))?,
    };
    let datagen = |topic: &'static str, profile: Profile| -> Result<Stream> {
        let mut o = DatagenOptions::new(profile);
        o.seed = options.seed;
        // Event times follow the rate; unpaced, 1000 events per second of event time, as
        // a datagen source with rate 'unlimited' spaces them.
        o.rate = options.rate.unwrap_or(1000.0);
        o.start_micros = now.as_micros() as i64;
        Ok(Stream {
            topic,
            generator: Box::new(Generator::new(o)?),
            sent: 0,
        })
    };
    let nexmark = |topic: &'static str, table: Table| Stream {
        topic,
        generator: Box::new(NexmarkGenerator::new(table, now.as_millis() as u64)),
        sent: 0,
    };
    Ok(match options.profile {
        GenProfile::Shop => vec![
            datagen("page_views", Profile::PageViews)?,
            datagen("cart_additions", Profile::CartAdditions)?,
            datagen("orders", Profile::Orders)?,
            datagen("payments", Profile::Payments)?,
            datagen("stock_updates", Profile::StockUpdates)?,
        ],
        GenProfile::Transactions => vec![datagen("transactions", Profile::Transactions)?],
        GenProfile::Shopsphere => vec![
            datagen("shopsphere.transactions", Profile::ShopTransactions)?,
            datagen("shopsphere.products", Profile::Products)?,
        ],
        GenProfile::Sales => vec![datagen("product_sold", Profile::Orders)?],
        GenProfile::Marketing => vec![
            datagen("web_logs", Profile::WebLogs)?,
            datagen("crm_orders", Profile::CrmOrders)?,
            datagen("ad_spend", Profile::AdSpend)?,
        ],
        GenProfile::Nexmark => vec![
            nexmark("person", Table::Person),
            nexmark("auction", Table::Auction),
            nexmark("bid", Table::Bid),
        ],
    })
}

/// Each row of `batch` as one JSON object.
fn json_lines(batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut writer = arrow_json::LineDelimitedWriter::new(&mut out);
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// Writes `count` events per topic into `dir/<topic>.json`, one JSON object per line (the
/// same events and lines as the Kafka records).
pub fn write_files(options: &GenOptions, dir: &std::path::Path) -> Result<()> {
    use std::io::Write;
    let count = options.count.ok_or_else(|| {
        WeirError::InvalidParameter("weir gen --out needs --count (events per file)".into())
    })?;
    std::fs::create_dir_all(dir)?;
    let mut summary = Vec::new();
    for mut s in streams(options)? {
        let path = dir.join(format!("{}.json", s.topic));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        while s.sent < count {
            let n = (count - s.sent).min(BATCH);
            let batch = s.generator.next_batch(n as usize)?;
            let mut writer = arrow_json::LineDelimitedWriter::new(&mut out);
            writer.write(&batch)?;
            writer.finish()?;
            s.sent += n;
        }
        out.flush()?;
        summary.push(format!("{} {}", path.display(), s.sent));
    }
    println!(
        "wrote {} events: {}",
        count * summary.len() as u64,
        summary.join(", ")
    );
    Ok(())
}

/// Runs until `count` events went to every topic (or forever without a count).
pub async fn run(options: GenOptions) -> Result<()> {
    let mut streams = streams(&options)?;
    for s in &streams {
        create_topic(&options.brokers, s.topic, options.partitions).await?;
    }
    let producer = producer(&options.brokers)?;
    let topics: Vec<&str> = streams.iter().map(|s| s.topic).collect();
    eprintln!(
        "gen: {} to {} on {} ({}, seed {}{})",
        topics.join(", "),
        if topics.len() == 1 { "topic" } else { "topics" },
        options.brokers,
        options
            .rate
            .map_or("as fast as possible".into(), |r| format!(
                "{r} events/s per topic"
            )),
        options.seed,
        options
            .count
            .map_or(String::new(), |c| format!(", {c} events per topic"))
    );
    let start = Instant::now();
    let (mut last_report, mut reported) = (Instant::now(), 0u64);
    loop {
        let elapsed = start.elapsed().as_secs_f64();
        let mut deliveries = Vec::new();
        for s in &mut streams {
            let mut due = match options.rate {
                Some(r) => (elapsed * r) as u64,
                None => s.sent + BATCH,
            };
            if let Some(c) = options.count {
                due = due.min(c);
            }
            let n = due.saturating_sub(s.sent).min(BATCH);
            if n == 0 {
                continue;
            }
            let batch = s.generator.next_batch(n as usize)?;
            for line in json_lines(&batch)? {
                let record = FutureRecord::<(), [u8]>::to(s.topic).payload(&line);
                deliveries.push(producer.send_result(record).map_err(|(e, _)| {
                    WeirError::Internal(format!("producing to '{}': {e}", s.topic))
                })?);
            }
            s.sent += n;
        }
        let idle = deliveries.is_empty();
        for d in deliveries {
            match d.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    return Err(WeirError::Io(std::io::Error::other(format!(
                        "delivering to '{}': {e}",
                        options.brokers
                    ))));
                }
                Err(_) => return Err(WeirError::Internal("the producer was dropped".into())),
            }
        }
        let total: u64 = streams.iter().map(|s| s.sent).sum();
        if last_report.elapsed() >= Duration::from_secs(1) {
            let rate = (total - reported) as f64 / last_report.elapsed().as_secs_f64();
            eprintln!("gen: {total} events sent, {rate:.0} events/s");
            (last_report, reported) = (Instant::now(), total);
        }
        let done = options
            .count
            .is_some_and(|c| streams.iter().all(|s| s.sent >= c));
        if done {
            break;
        }
        if idle {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    println!(
        "sent {} events: {}",
        streams.iter().map(|s| s.sent).sum::<u64>(),
        streams
            .iter()
            .map(|s| format!("{} {}", s.topic, s.sent))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(profile: GenProfile) -> GenOptions {
        GenOptions {
            brokers: String::new(),
            profile,
            rate: Some(100.0),
            seed: 9,
            count: Some(50),
            partitions: 1,
            start_micros: Some(parse_start("2026-03-01 12:00:00").unwrap()),
        }
    }

    #[test]
    fn every_profile_writes_its_topics_from_a_fixed_start() {
        let topics = |p| -> Vec<&str> {
            streams(&options(p))
                .unwrap()
                .iter()
                .map(|s| s.topic)
                .collect()
        };
        assert_eq!(
            topics(GenProfile::Shopsphere),
            ["shopsphere.transactions", "shopsphere.products"]
        );
        assert_eq!(topics(GenProfile::Sales), ["product_sold"]);
        assert_eq!(
            topics(GenProfile::Marketing),
            ["web_logs", "crm_orders", "ad_spend"]
        );
        let dir = tempfile::tempdir().unwrap();
        write_files(&options(GenProfile::Marketing), dir.path()).unwrap();
        let again = tempfile::tempdir().unwrap();
        write_files(&options(GenProfile::Marketing), again.path()).unwrap();
        for topic in ["web_logs", "crm_orders", "ad_spend"] {
            let text = std::fs::read_to_string(dir.path().join(format!("{topic}.json"))).unwrap();
            assert_eq!(text.lines().count(), 50);
            assert_eq!(
                text,
                std::fs::read_to_string(again.path().join(format!("{topic}.json"))).unwrap()
            );
            // 100 events per second from the start: the first at noon, the last 0.49 s later.
            assert!(
                text.lines()
                    .next()
                    .unwrap()
                    .contains("\"ts\":\"2026-03-01T12:00:00\""),
                "{text}"
            );
            assert!(
                text.lines()
                    .last()
                    .unwrap()
                    .contains("\"ts\":\"2026-03-01T12:00:00.490\""),
                "{text}"
            );
        }
        assert!(parse_start("yesterday").is_err());
    }
}
