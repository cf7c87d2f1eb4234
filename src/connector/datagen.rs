//! The built-in `datagen` connector: the e-commerce events of the seed pipelines
//! (page views, cart additions, orders, payments, stock updates, and the transactions
//! of the sales report) as Arrow batches, with no broker needed.
//!
//! Output is a pure function of (profile, seed, event index): event `i` happens at
//! `start + i / rate` (minus a bounded, seeded delay when out-of-order events are
//! asked for), so any run can be recomputed exactly by a batch query.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Builder, Int32Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{ScalarValue, plan_datafusion_err, plan_err};
use datafusion::datasource::MemTable;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Result, WeirError};

/// The event streams datagen can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// A product page was viewed (`produit-consulte`).
    PageViews,
    /// An item was added to a cart (`article-ajoute`).
    CartAdditions,
    /// An order was validated (`commande-validee`).
    Orders,
    /// A payment was accepted (`paiement-accepte`).
    Payments,
    /// A product's stock changed (`stock-mis-a-jour`).
    StockUpdates,
    /// A sale with city, category, amount and payment method (the transactions report).
    Transactions,
}

impl Profile {
    /// Every profile with its name in `WITH (profile = '…')`.
    pub const ALL: [(&'static str, Profile); 6] = [
        ("page_views", Profile::PageViews),
        ("cart_additions", Profile::CartAdditions),
        ("orders", Profile::Orders),
        ("payments", Profile::Payments),
        ("stock_updates", Profile::StockUpdates),
        ("transactions", Profile::Transactions),
    ];

    /// The profile called `name`; the error lists the valid names.
    pub fn from_name(name: &str) -> Result<Profile> {
        Self::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, p)| *p)
            .ok_or_else(|| {
                let valid: Vec<&str> = Self::ALL.iter().map(|(n, _)| *n).collect();
                WeirError::InvalidParameter(format!(
                    "unknown datagen profile \"{name}\"; valid profiles: {}",
                    valid.join(", ")
                ))
            })
    }

    /// The columns of the profile's events; `ts` is the event time.
    pub fn schema(self) -> SchemaRef {
        let text = |n: &str| Field::new(n, DataType::Utf8, false);
        let int = |n: &str| Field::new(n, DataType::Int32, false);
        let double = |n: &str| Field::new(n, DataType::Float64, false);
        let ts = Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        );
        let fields = match self {
            Profile::PageViews => {
                vec![
                    text("event_id"),
                    text("user_id"),
                    text("product_id"),
                    text("category"),
                    double("price"),
                    ts,
                ]
            }
            Profile::CartAdditions => vec![
                text("event_id"),
                text("user_id"),
                text("product_id"),
                int("quantity"),
                double("price"),
                ts,
            ],
            Profile::Orders => vec![
                text("order_id"),
                text("user_id"),
                text("product_id"),
                text("category"),
                text("city"),
                int("quantity"),
                double("amount"),
                ts,
            ],
            Profile::Payments => vec![
                text("payment_id"),
                text("order_id"),
                text("user_id"),
                double("amount"),
                text("payment_method"),
                ts,
            ],
            Profile::StockUpdates => vec![text("product_id"), int("stock"), ts],
            Profile::Transactions => vec![
                text("transaction_id"),
                text("user_id"),
                text("city"),
                text("category"),
                double("amount"),
                int("quantity"),
                text("payment_method"),
                ts,
            ],
        };
        Arc::new(Schema::new(fields))
    }
}

/// The cities, categories and payment methods of the seed pipelines.
pub const CITIES: [&str; 6] = [
    "Casablanca",
    "Rabat",
    "Marrakech",
    "Fes",
    "Tangier",
    "Agadir",
];
pub const CATEGORIES: [&str; 6] = [
    "Electronics",
    "Fashion",
    "Home",
    "Sports",
    "Books",
    "Beauty",
];
pub const PAYMENT_METHODS: [&str; 4] = ["card", "paypal", "cash_on_delivery", "bank_transfer"];

/// What a generator produces; every field has the default a `CREATE SOURCE` gets.
#[derive(Debug, Clone, PartialEq)]
pub struct DatagenOptions {
    pub profile: Profile,
    /// Same seed, same events. Default 0.
    pub seed: u64,
    /// Events per second of event time. Default 1000.
    pub rate: f64,
    /// Event time of event 0, in microseconds since the Unix epoch. Default 2026-01-01.
    pub start_micros: i64,
    /// Products in the catalogue. Default 1000.
    pub products: u32,
    /// Zipf exponent of product popularity (0 = uniform). Default 1.1: a few hot products.
    pub skew: f64,
    /// Largest delay of an event behind its slot, in milliseconds. Default 0 (in order).
    pub max_out_of_order_ms: u64,
}

impl DatagenOptions {
    pub fn new(profile: Profile) -> Self {
        DatagenOptions {
            profile,
            seed: 0,
            rate: 1000.0,
            start_micros: 1_767_225_600_000_000, // 2026-01-01T00:00:00Z
            products: 1000,
            skew: 1.1,
            max_out_of_order_ms: 0,
        }
    }
}

/// Produces the events of one profile, batch after batch.
pub struct Generator {
    options: DatagenOptions,
    schema: SchemaRef,
    /// Cumulative popularity of products, for Zipf sampling by binary search.
    popularity: Vec<f64>,
    rng: ChaCha8Rng,
    next_index: u64,
}

impl Generator {
    pub fn new(options: DatagenOptions) -> Result<Self> {
        if !(options.rate.is_finite() && options.rate > 0.0) {
            return Err(WeirError::InvalidParameter(format!(
                "datagen rate must be positive, got {}",
                options.rate
            )));
        }
        if options.products == 0 {
            return Err(WeirError::InvalidParameter(
                "datagen products must be at least 1".into(),
            ));
        }
        let mut popularity = Vec::with_capacity(options.products as usize);
        let mut total = 0.0;
        for rank in 1..=options.products {
            total += 1.0 / (rank as f64).powf(options.skew);
            popularity.push(total);
        }
        for p in &mut popularity {
            *p /= total;
        }
        Ok(Generator {
            schema: options.profile.schema(),
            rng: ChaCha8Rng::seed_from_u64(options.seed),
            options,
            popularity,
            next_index: 0,
        })
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Events produced so far.
    pub fn position(&self) -> u64 {
        self.next_index
    }

    /// The event time slot of event `index`, before any out-of-order delay.
    pub fn slot_micros(&self, index: u64) -> i64 {
        self.options.start_micros + (index as f64 * 1_000_000.0 / self.options.rate) as i64
    }

    fn product(&mut self) -> u32 {
        let u: f64 = self.rng.random();
        self.popularity
            .partition_point(|&p| p < u)
            .min(self.popularity.len() - 1) as u32
            + 1
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.rng.random_range(0..from.len())]
    }

    fn money(&mut self, low: f64, high: f64) -> f64 {
        (self.rng.random_range(low..high) * 100.0).round() / 100.0
    }

    /// The next `n` events.
    pub fn next_batch(&mut self, n: usize) -> Result<RecordBatch> {
        let profile = self.options.profile;
        let mut text: Vec<StringBuilder> = (0..5)
            .map(|_| StringBuilder::with_capacity(n, n * 12))
            .collect();
        let mut ints = Int32Builder::with_capacity(n);
        let mut doubles = Float64Builder::with_capacity(n);
        let mut ts = TimestampMicrosecondBuilder::with_capacity(n);
        let max_delay = (self.options.max_out_of_order_ms * 1000) as i64;
        for _ in 0..n {
            let index = self.next_index;
            self.next_index += 1;
            let delay = if max_delay > 0 {
                self.rng.random_range(0..=max_delay)
            } else {
                0
            };
            ts.append_value(self.slot_micros(index) - delay);
            let user = format!("USER_{}", self.rng.random_range(100..1000));
            let product = self.product();
            // Category follows the product, so per-product and per-category views agree.
            let category = CATEGORIES[(product as usize - 1) % CATEGORIES.len()];
            let base_price = 5.0 + ((product as u64 * 7919) % 49_500) as f64 / 100.0;
            match profile {
                Profile::PageViews => {
                    text[0].append_value(format!("pv-{}-{index}", self.options.seed));
                    text[1].append_value(user);
                    text[2].append_value(format!("P{product:05}"));
                    text[3].append_value(category);
                    doubles.append_value(base_price);
                }
                Profile::CartAdditions => {
                    text[0].append_value(format!("ca-{}-{index}", self.options.seed));
                    text[1].append_value(user);
                    text[2].append_value(format!("P{product:05}"));
                    ints.append_value(self.rng.random_range(1..=5));
                    doubles.append_value(base_price);
                }
                Profile::Orders => {
                    let quantity = self.rng.random_range(1..=5);
                    text[0].append_value(format!("ord-{}-{index}", self.options.seed));
                    text[1].append_value(user);
                    text[2].append_value(format!("P{product:05}"));
                    text[3].append_value(category);
                    let city = self.pick(&CITIES);
                    text[4].append_value(city);
                    ints.append_value(quantity);
                    doubles.append_value((base_price * quantity as f64 * 100.0).round() / 100.0);
                }
                Profile::Payments => {
                    text[0].append_value(format!("pay-{}-{index}", self.options.seed));
                    text[1].append_value(format!("ord-{}-{index}", self.options.seed));
                    text[2].append_value(user);
                    let amount = self.money(10.0, 500.0);
                    doubles.append_value(amount);
                    let method = self.pick(&PAYMENT_METHODS);
                    text[3].append_value(method);
                }
                Profile::StockUpdates => {
                    text[0].append_value(format!("P{product:05}"));
                    ints.append_value(self.rng.random_range(0..200));
                }
                Profile::Transactions => {
                    text[0].append_value(format!("tx-{}-{index}", self.options.seed));
                    text[1].append_value(user);
                    let city = self.pick(&CITIES);
                    text[2].append_value(city);
                    let category = self.pick(&CATEGORIES);
                    text[3].append_value(category);
                    let amount = self.money(10.0, 500.0);
                    doubles.append_value(amount);
                    ints.append_value(self.rng.random_range(1..=5));
                    let method = self.pick(&PAYMENT_METHODS);
                    text[4].append_value(method);
                }
            }
        }
        let mut t = text
            .into_iter()
            .map(|mut b| Arc::new(b.finish()) as ArrayRef);
        let mut s = || t.next().expect("five text columns");
        let int: ArrayRef = Arc::new(ints.finish());
        let double: ArrayRef = Arc::new(doubles.finish());
        let time: ArrayRef = Arc::new(ts.finish());
        let columns = match profile {
            Profile::PageViews => vec![s(), s(), s(), s(), double, time],
            Profile::CartAdditions => vec![s(), s(), s(), int, double, time],
            Profile::Orders => vec![s(), s(), s(), s(), s(), int, double, time],
            Profile::Payments => {
                let (id, order, user, method) = (s(), s(), s(), s());
                vec![id, order, user, double, method, time]
            }
            Profile::StockUpdates => vec![s(), int, time],
            Profile::Transactions => {
                let (id, user, city, category, method) = (s(), s(), s(), s(), s());
                vec![id, user, city, category, double, int, method, time]
            }
        };
        RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| WeirError::Internal(e.to_string()))
    }
}

/// The bounded form, `datagen(profile, count [, seed [, rate [, max_out_of_order_ms]]])`:
/// the first `count` events a source with the same options produces, as a table. It is
/// how tests and users recompute a streaming view with a batch query.
#[derive(Debug, Default)]
pub struct DatagenTable;

/// The most events one `datagen(…)` call materialises.
pub const MAX_TABLE_EVENTS: u64 = 50_000_000;

impl TableFunctionImpl for DatagenTable {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let usage = "usage: datagen(profile, count [, seed [, rate [, max_out_of_order_ms]]])";
        let exprs = args.exprs();
        let literal = |i: usize| -> Option<&ScalarValue> {
            match exprs.get(i)? {
                Expr::Literal(v, _) => Some(v),
                _ => None,
            }
        };
        let int = |i: usize| -> DfResult<Option<i64>> {
            match literal(i) {
                None if exprs.get(i).is_none() => Ok(None),
                Some(v) => match v.cast_to(&DataType::Int64) {
                    Ok(ScalarValue::Int64(Some(n))) => Ok(Some(n)),
                    _ => plan_err!("datagen argument {} must be an integer; {usage}", i + 1),
                },
                None => plan_err!("datagen argument {} must be a constant; {usage}", i + 1),
            }
        };
        let profile = match literal(0) {
            Some(
                ScalarValue::Utf8(Some(p))
                | ScalarValue::Utf8View(Some(p))
                | ScalarValue::LargeUtf8(Some(p)),
            ) => p,
            _ => return plan_err!("datagen needs a profile name first; {usage}"),
        };
        let mut options = DatagenOptions::new(
            Profile::from_name(profile).map_err(|e| plan_datafusion_err!("{e}"))?,
        );
        let Some(count) = int(1)? else {
            return plan_err!("datagen needs an event count; {usage}");
        };
        if !(0..=MAX_TABLE_EVENTS as i64).contains(&count) {
            return plan_err!(
                "datagen count must be between 0 and {MAX_TABLE_EVENTS}, got {count}"
            );
        }
        if let Some(seed) = int(2)? {
            options.seed = seed as u64;
        }
        if let Some(rate) = int(3)? {
            options.rate = rate as f64;
        }
        if let Some(ms) = int(4)? {
            options.max_out_of_order_ms = u64::try_from(ms)
                .map_err(|_| plan_datafusion_err!("max_out_of_order_ms must not be negative"))?;
        }
        let mut generator = Generator::new(options).map_err(|e| plan_datafusion_err!("{e}"))?;
        let mut batches = Vec::new();
        let mut left = count as u64;
        while left > 0 {
            let n = left.min(8192);
            batches.push(
                generator
                    .next_batch(n as usize)
                    .map_err(|e| plan_datafusion_err!("{e}"))?,
            );
            left -= n;
        }
        Ok(Arc::new(MemTable::try_new(
            generator.schema(),
            vec![batches],
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::TimestampMicrosecondType;

    fn batch(profile: Profile, seed: u64, n: usize) -> RecordBatch {
        let mut o = DatagenOptions::new(profile);
        o.seed = seed;
        Generator::new(o).unwrap().next_batch(n).unwrap()
    }

    #[test]
    fn same_seed_same_events_whatever_the_batch_size() {
        for (_, profile) in Profile::ALL {
            let whole = batch(profile, 7, 1000);
            let mut g = Generator::new(DatagenOptions {
                seed: 7,
                ..DatagenOptions::new(profile)
            })
            .unwrap();
            let parts: Vec<RecordBatch> = [1, 99, 400, 500]
                .iter()
                .map(|&n| g.next_batch(n).unwrap())
                .collect();
            let joined =
                datafusion::arrow::compute::concat_batches(&whole.schema(), &parts).unwrap();
            assert_eq!(whole, joined, "{profile:?}");
            assert_ne!(
                whole,
                batch(profile, 8, 1000),
                "{profile:?}: another seed, other events"
            );
            assert_eq!(whole.schema(), profile.schema());
        }
    }

    #[test]
    fn a_few_products_are_hot() {
        let b = batch(Profile::PageViews, 1, 20_000);
        let products = b.column(2).as_string::<i32>();
        let hot = (0..products.len())
            .filter(|&i| products.value(i) == "P00001")
            .count();
        let cold = (0..products.len())
            .filter(|&i| products.value(i) == "P00500")
            .count();
        // Zipf(1.1) over 1000 products: rank 1 gets about 13% of views, rank 500 about 0.02%.
        assert!(hot > 1500, "hot product seen {hot} times");
        assert!(cold < 50, "cold product seen {cold} times");
    }

    #[test]
    fn event_times_follow_the_rate_and_stay_within_the_disorder_bound() {
        let mut o = DatagenOptions::new(Profile::Orders);
        o.rate = 100.0;
        o.max_out_of_order_ms = 250;
        let mut g = Generator::new(o.clone()).unwrap();
        let b = g.next_batch(5000).unwrap();
        let ts = b.column(7).as_primitive::<TimestampMicrosecondType>();
        let mut out_of_order = 0;
        for i in 0..ts.len() {
            let slot = o.start_micros + i as i64 * 10_000;
            assert!(ts.value(i) <= slot && ts.value(i) >= slot - 250_000);
            if i > 0 && ts.value(i) < ts.value(i - 1) {
                out_of_order += 1;
            }
        }
        assert!(out_of_order > 1000, "expected disorder, saw {out_of_order}");
        assert_eq!(ts.null_count(), 0);
    }

    #[test]
    fn bad_options_name_the_problem() {
        let err = Profile::from_name("clicks").unwrap_err().to_string();
        assert!(
            err.contains("page_views") && err.contains("transactions"),
            "{err}"
        );
        let err = Generator::new(DatagenOptions {
            rate: 0.0,
            ..DatagenOptions::new(Profile::Orders)
        })
        .err()
        .unwrap();
        assert!(err.to_string().contains("rate"));
    }
}

impl crate::connector::generated::Generate for Generator {
    fn next_batch(&mut self, n: usize) -> Result<RecordBatch> {
        Generator::next_batch(self, n)
    }
}

/// `CREATE SOURCE … WITH (connector = 'datagen', profile = '…', …)`, validated.
#[derive(Debug, Clone)]
pub struct DatagenSpec {
    pub options: DatagenOptions,
    pace: crate::connector::generated::Pace,
    projection: crate::connector::generated::Projection,
}

/// The options of the datagen connector.
pub const DATAGEN_OPTIONS: &[&str] = &[
    "profile",
    "seed",
    "rate",
    "count",
    "start",
    "max.out.of.order.ms",
    "products",
    "skew",
];

impl DatagenSpec {
    /// Events until the source ends (`None`: endless).
    pub fn count(&self) -> Option<u64> {
        self.pace.count
    }

    /// Validate `options`; the source's columns are the profile's, or the declared subset.
    pub fn from_options(
        declared: Option<SchemaRef>,
        options: &crate::sql::streaming::Options,
    ) -> Result<(DatagenSpec, SchemaRef)> {
        use crate::connector::{check_options, parsed, required};
        const C: &str = "datagen";
        check_options(C, options, DATAGEN_OPTIONS, &[])?;
        let mut o = DatagenOptions::new(Profile::from_name(required(C, options, "profile")?)?);
        let pace = crate::connector::generated::Pace::from_options(
            C,
            options,
            "rate",
            "count",
            Some(1000.0),
        )?;
        // Event times follow the wall clock at the chosen rate; as fast as possible they
        // advance 1 ms per event.
        o.rate = pace.rate.unwrap_or(1000.0);
        o.seed = parsed(C, options, "seed", "an unsigned integer")?.unwrap_or(0);
        o.max_out_of_order_ms = parsed(
            C,
            options,
            "max.out.of.order.ms",
            "a number of milliseconds",
        )?
        .unwrap_or(0);
        o.products = parsed(C, options, "products", "a positive integer")?.unwrap_or(o.products);
        o.skew = parsed(C, options, "skew", "a number")?.unwrap_or(o.skew);
        o.start_micros = match options.get("start") {
            None => pace
                .wall_start
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as i64)
                .unwrap_or(0),
            Some(t) => datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(t)
                .map(|n| n / 1000)
                .map_err(|_| {
                    WeirError::InvalidParameter(format!(
                        "option 'start' of connector 'datagen' must be a timestamp such as '2026-01-01 00:00:00', got '{t}'"
                    ))
                })?,
        };
        // Fail now on values the generator refuses.
        Generator::new(o.clone())?;
        let projection =
            crate::connector::generated::Projection::new(C, declared, o.profile.schema())?;
        let schema = projection.schema.clone();
        Ok((
            DatagenSpec {
                options: o,
                pace,
                projection,
            },
            schema,
        ))
    }

    /// A reader of the events from number `skip` on.
    pub fn open(
        &self,
        _schema: SchemaRef,
        skip: i64,
    ) -> Result<Box<dyn crate::connector::SourceReader>> {
        crate::connector::generated::GeneratedReader::new(
            Box::new(Generator::new(self.options.clone())?),
            self.projection.clone(),
            self.pace.clone(),
        )
        .resumed(skip)
    }
}
