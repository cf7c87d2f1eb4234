//! Nexmark source: the person, auction and bid streams of the Nexmark benchmark, from
//! the `nexmark` crate's generator, as Arrow batches (one table per source, chosen by
//! `'nexmark.table.type'`).

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use datafusion::arrow::array::{
    Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{ScalarValue, plan_datafusion_err, plan_err};
use datafusion::datasource::MemTable;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use nexmark::EventGenerator;
use nexmark::config::NexmarkConfig;
use nexmark::event::{Event, EventType};

use crate::connector::datagen::MAX_TABLE_EVENTS;
use crate::connector::generated::{Generate, GeneratedReader, Pace, Projection};
use crate::connector::{Positions, SourceReader, check_options, parsed};
use crate::error::{Result, WeirError};
use crate::sql::streaming::Options;

/// The Nexmark tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Person,
    Auction,
    Bid,
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

impl Table {
    pub fn from_name(name: &str) -> Result<Table> {
        match name.to_ascii_lowercase().as_str() {
            "person" => Ok(Table::Person),
            "auction" => Ok(Table::Auction),
            "bid" => Ok(Table::Bid),
            _ => Err(WeirError::InvalidParameter(format!(
                "unknown 'nexmark.table.type' '{name}'; valid: person, auction, bid"
            ))),
        }
    }

    pub fn schema(self) -> SchemaRef {
        let i = |n: &str| Field::new(n, DataType::Int64, false);
        let s = |n: &str| Field::new(n, DataType::Utf8, false);
        let t = |n: &str| Field::new(n, ts(), false);
        Arc::new(Schema::new(match self {
            Table::Person => vec![
                i("id"),
                s("name"),
                s("email_address"),
                s("credit_card"),
                s("city"),
                s("state"),
                t("date_time"),
                s("extra"),
            ],
            Table::Auction => vec![
                i("id"),
                s("item_name"),
                s("description"),
                i("initial_bid"),
                i("reserve"),
                t("date_time"),
                t("expires"),
                i("seller"),
                i("category"),
                s("extra"),
            ],
            Table::Bid => vec![
                i("auction"),
                i("bidder"),
                i("price"),
                s("channel"),
                s("url"),
                t("date_time"),
                s("extra"),
            ],
        }))
    }

    fn event_type(self) -> EventType {
        match self {
            Table::Person => EventType::Person,
            Table::Auction => EventType::Auction,
            Table::Bid => EventType::Bid,
        }
    }
}

/// Generates the events of one table.
pub struct NexmarkGenerator {
    table: Table,
    schema: SchemaRef,
    events: EventGenerator,
}

impl NexmarkGenerator {
    /// `base_time_ms`: event time of the first event.
    pub fn new(table: Table, base_time_ms: u64) -> Self {
        let config = NexmarkConfig {
            base_time: base_time_ms,
            ..NexmarkConfig::default()
        };
        NexmarkGenerator {
            table,
            schema: table.schema(),
            events: EventGenerator::new(config).with_type_filter(table.event_type()),
        }
    }

    /// The next `n` events of the table, as the crate builds them.
    pub fn next_events(&mut self, n: usize) -> Vec<Event> {
        (&mut self.events).take(n).collect()
    }
}

fn micros(ms: u64) -> i64 {
    ms as i64 * 1000
}

impl Generate for NexmarkGenerator {
    fn next_batch(&mut self, n: usize) -> Result<RecordBatch> {
        let events = self.next_events(n);
        let mut ints: Vec<Int64Builder> = (0..5).map(|_| Int64Builder::with_capacity(n)).collect();
        let mut strs: Vec<StringBuilder> = (0..6)
            .map(|_| StringBuilder::with_capacity(n, n * 16))
            .collect();
        let mut times: Vec<TimestampMicrosecondBuilder> = (0..2)
            .map(|_| TimestampMicrosecondBuilder::with_capacity(n))
            .collect();
        for e in events {
            match (self.table, e) {
                (Table::Person, Event::Person(p)) => {
                    ints[0].append_value(p.id as i64);
                    strs[0].append_value(&p.name);
                    strs[1].append_value(&p.email_address);
                    strs[2].append_value(&p.credit_card);
                    strs[3].append_value(&p.city);
                    strs[4].append_value(&p.state);
                    times[0].append_value(micros(p.date_time));
                    strs[5].append_value(&p.extra);
                }
                (Table::Auction, Event::Auction(a)) => {
                    ints[0].append_value(a.id as i64);
                    strs[0].append_value(&a.item_name);
                    strs[1].append_value(&a.description);
                    ints[1].append_value(a.initial_bid as i64);
                    ints[2].append_value(a.reserve as i64);
                    times[0].append_value(micros(a.date_time));
                    times[1].append_value(micros(a.expires));
                    ints[3].append_value(a.seller as i64);
                    ints[4].append_value(a.category as i64);
                    strs[2].append_value(&a.extra);
                }
                (Table::Bid, Event::Bid(b)) => {
                    ints[0].append_value(b.auction as i64);
                    ints[1].append_value(b.bidder as i64);
                    ints[2].append_value(b.price as i64);
                    strs[0].append_value(&b.channel);
                    strs[1].append_value(&b.url);
                    times[0].append_value(micros(b.date_time));
                    strs[2].append_value(&b.extra);
                }
                _ => return Err(WeirError::Internal("nexmark type filter".into())),
            }
        }
        let mut i = ints.into_iter().map(|mut b| Arc::new(b.finish()) as _);
        let mut s = strs.into_iter().map(|mut b| Arc::new(b.finish()) as _);
        let mut t = times.into_iter().map(|mut b| Arc::new(b.finish()) as _);
        let mut n = || i.next().expect("int column");
        let columns = match self.table {
            Table::Person => vec![
                n(),
                s.next().unwrap(),
                s.next().unwrap(),
                s.next().unwrap(),
                s.next().unwrap(),
                s.next().unwrap(),
                t.next().unwrap(),
                s.next().unwrap(),
            ],
            Table::Auction => {
                let (id, initial, reserve, seller, category) = (n(), n(), n(), n(), n());
                let (item, desc, extra) = (s.next().unwrap(), s.next().unwrap(), s.next().unwrap());
                let (date, expires) = (t.next().unwrap(), t.next().unwrap());
                vec![
                    id, item, desc, initial, reserve, date, expires, seller, category, extra,
                ]
            }
            Table::Bid => {
                let (auction, bidder, price) = (n(), n(), n());
                let (channel, url, extra) =
                    (s.next().unwrap(), s.next().unwrap(), s.next().unwrap());
                vec![
                    auction,
                    bidder,
                    price,
                    channel,
                    url,
                    t.next().unwrap(),
                    extra,
                ]
            }
        };
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// The options of the nexmark connector.
pub const NEXMARK_OPTIONS: &[&str] = &[
    "nexmark.table.type",
    "nexmark.event.num",
    "nexmark.event.rate",
    "nexmark.base.time",
];

/// `CREATE SOURCE … WITH (connector = 'nexmark', 'nexmark.table.type' = 'bid', …)`.
#[derive(Debug, Clone)]
pub struct NexmarkSpec {
    pub table: Table,
    base_time_ms: u64,
    pace: Pace,
    projection: Projection,
}

impl NexmarkSpec {
    /// Events until the source ends (`None`: endless).
    pub fn count(&self) -> Option<u64> {
        self.pace.count
    }

    pub fn from_options(
        declared: Option<SchemaRef>,
        options: &Options,
    ) -> Result<(NexmarkSpec, SchemaRef)> {
        const C: &str = "nexmark";
        check_options(C, options, NEXMARK_OPTIONS, &[])?;
        let table = Table::from_name(options.get("nexmark.table.type").unwrap_or("bid"))?;
        let pace = Pace::from_options(C, options, "nexmark.event.rate", "nexmark.event.num", None)?;
        let base_time_ms = match options.get("nexmark.base.time") {
            None => pace
                .wall_start
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            Some(t) => base_time_ms(t)?,
        };
        let _: Option<u64> = parsed(C, options, "nexmark.event.num", "a number of events")?;
        let projection = Projection::new(C, declared, table.schema())?;
        let schema = projection.schema.clone();
        Ok((
            NexmarkSpec {
                table,
                base_time_ms,
                pace,
                projection,
            },
            schema,
        ))
    }
}

#[async_trait::async_trait]
impl crate::connector::SourceConnector for NexmarkSpec {
    fn name(&self) -> &'static str {
        "nexmark"
    }

    /// A reader of the events from the resumed one on.
    async fn reader(
        &self,
        _columns: &[usize],
        resume: Option<&Positions>,
        _guard: Option<crate::decode::TimeGuard>,
    ) -> Result<Box<dyn SourceReader>> {
        GeneratedReader::new(
            Box::new(NexmarkGenerator::new(self.table, self.base_time_ms)),
            self.projection.clone(),
            self.pace.clone(),
        )
        .resumed(crate::connector::skip_of(resume))
    }

    async fn end_positions(&self, _partitions: Vec<i32>) -> Positions {
        self.count().map(|c| (0, c as i64)).into_iter().collect()
    }
}

/// The bounded form, `nexmark(table, count, base_time)`: the first `count` events of the
/// table that a source with `'nexmark.event.num' = count` and `'nexmark.base.time' =
/// base_time` produces, as a table — for recomputing a view with a batch query.
#[derive(Debug, Default)]
pub struct NexmarkTable;

impl TableFunctionImpl for NexmarkTable {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let usage = "usage: nexmark('person' | 'auction' | 'bid', count, base_time)";
        let exprs = args.exprs();
        let text = |i: usize| -> Option<&str> {
            match exprs.get(i)? {
                Expr::Literal(
                    ScalarValue::Utf8(Some(s))
                    | ScalarValue::Utf8View(Some(s))
                    | ScalarValue::LargeUtf8(Some(s)),
                    _,
                ) => Some(s.as_str()),
                _ => None,
            }
        };
        let (Some(table), Some(base)) = (text(0), text(2)) else {
            return plan_err!("nexmark needs a table name and a base time; {usage}");
        };
        let table = Table::from_name(table).map_err(|e| plan_datafusion_err!("{e}"))?;
        let count = match exprs.get(1) {
            Some(Expr::Literal(v, _)) => match v.cast_to(&DataType::Int64) {
                Ok(ScalarValue::Int64(Some(n))) if (0..=MAX_TABLE_EVENTS as i64).contains(&n) => {
                    n as usize
                }
                _ => {
                    return plan_err!(
                        "nexmark count must be an integer between 0 and {MAX_TABLE_EVENTS}; {usage}"
                    );
                }
            },
            _ => return plan_err!("nexmark count must be a constant; {usage}"),
        };
        let base_ms = base_time_ms(base).map_err(|e| plan_datafusion_err!("{e}"))?;
        let mut generator = NexmarkGenerator::new(table, base_ms);
        let mut batches = Vec::new();
        let mut left = count;
        while left > 0 {
            let n = left.min(8192);
            batches.push(
                generator
                    .next_batch(n)
                    .map_err(|e| plan_datafusion_err!("{e}"))?,
            );
            left -= n;
        }
        Ok(Arc::new(MemTable::try_new(table.schema(), vec![batches])?))
    }
}

/// Milliseconds since the epoch of a timestamp such as '2026-01-01 00:00:00'.
fn base_time_ms(text: &str) -> Result<u64> {
    datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(text)
        .ok()
        .and_then(|n| u64::try_from(n / 1_000_000).ok())
        .ok_or_else(|| {
            WeirError::InvalidParameter(format!(
                "option 'nexmark.base.time' must be a timestamp such as '2026-01-01 00:00:00', got '{text}'"
            ))
        })
}
