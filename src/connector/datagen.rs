//! The built-in `datagen` connector: the e-commerce events of the seed pipelines
//! (page views, cart additions, orders, payments, stock updates, the transactions of the
//! sales report, ShopSphere's sales and product stock, and the marketing pipeline's web
//! logs, CRM orders and ad spend reports) as Arrow batches, with no broker needed.
//!
//! Output is a pure function of (profile, seed, event index): event `i` happens at
//! `start + i / rate` (minus a bounded, seeded delay when out-of-order events are
//! asked for), so any run can be recomputed exactly by a batch query.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Decimal128Builder, Int32Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
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
    /// A ShopSphere sale: product, name, category, quantity, unit price, total, UK city.
    ShopTransactions,
    /// A ShopSphere product record: name, category, price and the stock left.
    Products,
    /// A web log line of the cosmetics shop: session, page, event type, campaign.
    WebLogs,
    /// An order in the CRM, attributed to the campaign that brought the customer.
    CrmOrders,
    /// An ad platform's spend report for one campaign: impressions, clicks, spend.
    AdSpend,
}

impl Profile {
    /// Every profile with its name in `WITH (profile = '…')`.
    pub const ALL: [(&'static str, Profile); 11] = [
        ("page_views", Profile::PageViews),
        ("cart_additions", Profile::CartAdditions),
        ("orders", Profile::Orders),
        ("payments", Profile::Payments),
        ("stock_updates", Profile::StockUpdates),
        ("transactions", Profile::Transactions),
        ("shop_transactions", Profile::ShopTransactions),
        ("products", Profile::Products),
        ("web_logs", Profile::WebLogs),
        ("crm_orders", Profile::CrmOrders),
        ("ad_spend", Profile::AdSpend),
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
        let money = |n: &str| Field::new(n, MONEY, false);
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
                    money("price"),
                    ts,
                ]
            }
            Profile::CartAdditions => vec![
                text("event_id"),
                text("user_id"),
                text("product_id"),
                int("quantity"),
                money("price"),
                ts,
            ],
            Profile::Orders => vec![
                text("order_id"),
                text("user_id"),
                text("product_id"),
                text("category"),
                text("city"),
                int("quantity"),
                money("amount"),
                ts,
            ],
            Profile::Payments => vec![
                text("payment_id"),
                text("order_id"),
                text("user_id"),
                money("amount"),
                text("payment_method"),
                ts,
            ],
            Profile::StockUpdates => vec![text("product_id"), int("stock"), ts],
            Profile::Transactions => vec![
                text("transaction_id"),
                text("user_id"),
                text("city"),
                text("category"),
                money("amount"),
                int("quantity"),
                text("payment_method"),
                ts,
            ],
            Profile::ShopTransactions => vec![
                text("transaction_id"),
                text("user_id"),
                text("product_id"),
                text("product_name"),
                text("category"),
                int("quantity"),
                money("price"),
                money("total"),
                text("city"),
                ts,
            ],
            Profile::Products => vec![
                text("product_id"),
                text("product_name"),
                text("category"),
                money("price"),
                int("stock"),
                ts,
            ],
            Profile::WebLogs => vec![
                text("event_id"),
                text("session_id"),
                text("user_id"),
                text("event_type"),
                text("page"),
                text("campaign_id"),
                text("traffic_source"),
                text("device"),
                ts,
            ],
            Profile::CrmOrders => vec![
                text("order_id"),
                text("customer_id"),
                text("campaign_id"),
                text("category"),
                int("items"),
                money("amount"),
                ts,
            ],
            Profile::AdSpend => vec![
                text("report_id"),
                text("campaign_id"),
                text("platform"),
                int("impressions"),
                int("clicks"),
                money("spend"),
                ts,
            ],
        };
        Arc::new(Schema::new(fields))
    }
}

/// Money columns: exact to the cent, as in the ledgers the events come from.
pub const MONEY: DataType = DataType::Decimal128(12, 2);

/// An amount rounded to the cent, as a `MONEY` value (hundredths).
fn cents(amount: f64) -> i128 {
    (amount * 100.0).round() as i128
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

/// ShopSphere's UK cities with their share of sales (London sells most).
pub const UK_CITIES: [(&str, u32); 6] = [
    ("London", 35),
    ("Manchester", 18),
    ("Birmingham", 15),
    ("Leeds", 12),
    ("Glasgow", 10),
    ("Bristol", 10),
];

/// Product kinds per category (in `CATEGORIES` order), for product names.
const PRODUCT_KINDS: [[&str; 6]; 6] = [
    [
        "Laptop",
        "Smartphone",
        "Headphones",
        "Tablet",
        "Smartwatch",
        "Camera",
    ],
    [
        "Sneakers",
        "Jacket",
        "Jeans",
        "Dress",
        "Handbag",
        "Sunglasses",
    ],
    [
        "Coffee Maker",
        "Desk Lamp",
        "Blender",
        "Vacuum",
        "Cookware Set",
        "Duvet",
    ],
    [
        "Running Shoes",
        "Yoga Mat",
        "Dumbbells",
        "Bike Helmet",
        "Tennis Racket",
        "Football",
    ],
    [
        "Novel",
        "Cookbook",
        "Biography",
        "Travel Guide",
        "Comic",
        "Textbook",
    ],
    [
        "Perfume",
        "Face Cream",
        "Lipstick",
        "Shampoo",
        "Serum",
        "Nail Kit",
    ],
];

/// Product `n`'s id, category, name and unit price: the same in every profile, so views
/// over different streams agree (`P00001` is the "Laptop 1", an Electronics product,
/// `P00007` the "Smartphone 1", `P00037` the "Laptop 2").
pub fn product_info(n: u32) -> (String, &'static str, String, f64) {
    let i = n as usize - 1;
    let category = CATEGORIES[i % CATEGORIES.len()];
    let kind = PRODUCT_KINDS[i % 6][(i / 6) % 6];
    let price = 5.0 + ((n as u64 * 7919) % 49_500) as f64 / 100.0;
    (
        format!("P{n:05}"),
        category,
        format!("{kind} {}", i / 36 + 1),
        price,
    )
}

/// The marketing pipeline's ad campaigns: id and platform. Traffic and orders that no
/// campaign brought carry `organic`.
pub const CAMPAIGNS: [(&str, &str); 8] = [
    ("CMP-01", "google_ads"),
    ("CMP-02", "facebook"),
    ("CMP-03", "instagram"),
    ("CMP-04", "tiktok"),
    ("CMP-05", "email"),
    ("CMP-06", "influencer"),
    ("CMP-07", "google_ads"),
    ("CMP-08", "instagram"),
];
/// Share of web sessions each campaign brings (organic traffic weighs 54 against their 100: 35%).
const CAMPAIGN_TRAFFIC: [u32; 8] = [30, 20, 15, 10, 8, 7, 6, 4];
/// Share of CRM orders attributed to each campaign (organic orders weigh 67 against their 100: 40%): email
/// and Instagram convert well, TikTok poorly.
const CAMPAIGN_ORDERS: [u32; 8] = [20, 10, 18, 4, 25, 12, 6, 5];
/// Mean spend of one report of each campaign, in euros: with as many reports as orders,
/// email pays back many times over, TikTok and Facebook lose money.
const CAMPAIGN_SPEND: [f64; 8] = [27.0, 51.0, 29.0, 41.0, 4.8, 37.0, 16.0, 29.0];
/// Cost per thousand impressions by campaign.
const CAMPAIGN_CPM: [f64; 8] = [9.0, 7.0, 6.5, 5.0, 0.5, 12.0, 9.0, 6.5];
/// The cosmetics shop's categories (CRM orders).
pub const COSMETICS: [&str; 5] = ["skincare", "makeup", "haircare", "bodycare", "fragrance"];
/// Web log event types with their weights: most lines are page views, few purchases.
const WEB_EVENTS: [(&str, u32); 5] = [
    ("page_view", 60),
    ("product_view", 25),
    ("add_to_cart", 10),
    ("checkout", 3),
    ("purchase", 2),
];
const DEVICES: [(&str, u32); 3] = [("mobile", 62), ("desktop", 31), ("tablet", 7)];
/// Web log lines per session.
const SESSION_EVENTS: u64 = 6;

/// SplitMix64: a well-mixed hash for attributes fixed per session.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The index of `weights` that `u` (uniform in 0..sum) falls into.
fn weighted(weights: impl IntoIterator<Item = u32>, u: u32) -> usize {
    let mut left = u;
    for (i, w) in weights.into_iter().enumerate() {
        if left < w {
            return i;
        }
        left -= w;
    }
    0
}

/// A campaign index drawn from `shares`, or `None` (organic) with weight `organic`
/// against their sum; `u` is uniform below `organic + 100`.
fn pick_campaign(shares: &[u32; 8], organic: u32, u: u32) -> Option<usize> {
    let i = weighted(std::iter::once(organic).chain(shares.iter().copied()), u);
    i.checked_sub(1)
}

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
        // One builder per column of each kind, filled in the schema's order.
        let of = |t: DataType| {
            self.schema
                .fields()
                .iter()
                .filter(|f| *f.data_type() == t)
                .count()
        };
        let mut text: Vec<StringBuilder> = (0..of(DataType::Utf8))
            .map(|_| StringBuilder::with_capacity(n, n * 12))
            .collect();
        let mut ints: Vec<Int32Builder> = (0..of(DataType::Int32))
            .map(|_| Int32Builder::with_capacity(n))
            .collect();
        let mut amounts: Vec<Decimal128Builder> = (0..of(MONEY))
            .map(|_| Decimal128Builder::with_capacity(n))
            .collect();
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
                    amounts[0].append_value(cents(base_price));
                }
                Profile::CartAdditions => {
                    text[0].append_value(format!("ca-{}-{index}", self.options.seed));
                    text[1].append_value(user);
                    text[2].append_value(format!("P{product:05}"));
                    ints[0].append_value(self.rng.random_range(1..=5));
                    amounts[0].append_value(cents(base_price));
                }
                Profile::Orders => {
                    let quantity = self.rng.random_range(1..=5);
                    text[0].append_value(format!("ord-{}-{index}", self.options.seed));
                    text[1].append_value(user);
                    text[2].append_value(format!("P{product:05}"));
                    text[3].append_value(category);
                    let city = self.pick(&CITIES);
                    text[4].append_value(city);
                    ints[0].append_value(quantity);
                    amounts[0].append_value(cents(base_price) * quantity as i128);
                }
                Profile::Payments => {
                    text[0].append_value(format!("pay-{}-{index}", self.options.seed));
                    text[1].append_value(format!("ord-{}-{index}", self.options.seed));
                    text[2].append_value(user);
                    let amount = self.money(10.0, 500.0);
                    amounts[0].append_value(cents(amount));
                    let method = self.pick(&PAYMENT_METHODS);
                    text[3].append_value(method);
                }
                Profile::StockUpdates => {
                    text[0].append_value(format!("P{product:05}"));
                    ints[0].append_value(self.rng.random_range(0..200));
                }
                Profile::Transactions => {
                    text[0].append_value(format!("tx-{}-{index}", self.options.seed));
                    text[1].append_value(user);
                    let city = self.pick(&CITIES);
                    text[2].append_value(city);
                    let category = self.pick(&CATEGORIES);
                    text[3].append_value(category);
                    let amount = self.money(10.0, 500.0);
                    amounts[0].append_value(cents(amount));
                    ints[0].append_value(self.rng.random_range(1..=5));
                    let method = self.pick(&PAYMENT_METHODS);
                    text[4].append_value(method);
                }
                Profile::ShopTransactions => {
                    let (id, category, name, price) = product_info(product);
                    let quantity = self.rng.random_range(1..=4);
                    text[0].append_value(format!("st-{}-{index}", self.options.seed));
                    text[1].append_value(user);
                    text[2].append_value(id);
                    text[3].append_value(name);
                    text[4].append_value(category);
                    ints[0].append_value(quantity);
                    amounts[0].append_value(cents(price));
                    amounts[1].append_value(cents(price) * quantity as i128);
                    let u = self.rng.random_range(0..100);
                    text[5].append_value(UK_CITIES[weighted(UK_CITIES.map(|c| c.1), u)].0);
                }
                Profile::Products => {
                    let (id, category, name, price) = product_info(product);
                    text[0].append_value(id);
                    text[1].append_value(name);
                    text[2].append_value(category);
                    amounts[0].append_value(cents(price));
                    ints[0].append_value(self.rng.random_range(0..150));
                }
                Profile::WebLogs => {
                    // Session, user, campaign and device are fixed per session of six lines.
                    let session = index / SESSION_EVENTS;
                    let h = mix(self.options.seed ^ mix(session));
                    let campaign = pick_campaign(&CAMPAIGN_TRAFFIC, 54, (h % 154) as u32);
                    let device =
                        DEVICES[weighted(DEVICES.map(|d| d.1), ((h >> 16) % 100) as u32)].0;
                    let kind = WEB_EVENTS
                        [weighted(WEB_EVENTS.map(|e| e.1), self.rng.random_range(0..100))]
                    .0;
                    let page = match kind {
                        "page_view" => ["/", "/new", "/skincare", "/makeup", "/blog", "/about"]
                            [self.rng.random_range(0..6)]
                        .to_string(),
                        "product_view" => format!("/products/P{product:05}"),
                        "add_to_cart" => "/cart".to_string(),
                        "checkout" => "/checkout".to_string(),
                        _ => "/order/confirmed".to_string(),
                    };
                    text[0].append_value(format!("wl-{}-{index}", self.options.seed));
                    text[1].append_value(format!("sess-{}-{session}", self.options.seed));
                    text[2].append_value(format!("USER_{}", 100 + (h >> 24) % 900));
                    text[3].append_value(kind);
                    text[4].append_value(page);
                    text[5].append_value(campaign.map_or("organic", |c| CAMPAIGNS[c].0));
                    text[6].append_value(campaign.map_or("organic", |c| CAMPAIGNS[c].1));
                    text[7].append_value(device);
                }
                Profile::CrmOrders => {
                    let campaign =
                        pick_campaign(&CAMPAIGN_ORDERS, 67, self.rng.random_range(0..167));
                    let items = self.rng.random_range(1..=4);
                    text[0].append_value(format!("crm-{}-{index}", self.options.seed));
                    text[1].append_value(format!("CUST_{:05}", self.rng.random_range(1..=5000)));
                    text[2].append_value(campaign.map_or("organic", |c| CAMPAIGNS[c].0));
                    text[3].append_value(self.pick(&COSMETICS));
                    ints[0].append_value(items);
                    let amount = self.money(12.0, 45.0);
                    amounts[0].append_value(cents(amount) * items as i128);
                }
                Profile::AdSpend => {
                    // Reports come from the campaigns in turn.
                    let c = (index % CAMPAIGNS.len() as u64) as usize;
                    let spend = CAMPAIGN_SPEND[c] * self.rng.random_range(0.8..1.2);
                    let spend = (spend * 100.0).round() / 100.0;
                    let impressions = (spend / CAMPAIGN_CPM[c] * 1000.0).round() as i32;
                    let clicks = (impressions as f64 * self.rng.random_range(0.005..0.03)).round();
                    text[0].append_value(format!("ad-{}-{index}", self.options.seed));
                    text[1].append_value(CAMPAIGNS[c].0);
                    text[2].append_value(CAMPAIGNS[c].1);
                    ints[0].append_value(impressions);
                    ints[1].append_value(clicks as i32);
                    amounts[0].append_value(cents(spend));
                }
            }
        }
        let mut text = text
            .into_iter()
            .map(|mut b| Arc::new(b.finish()) as ArrayRef);
        let mut ints = ints
            .into_iter()
            .map(|mut b| Arc::new(b.finish()) as ArrayRef);
        let mut amounts = amounts
            .into_iter()
            .map(|mut b| Arc::new(b.finish().with_data_type(MONEY)) as ArrayRef);
        let mut time = Some(Arc::new(ts.finish()) as ArrayRef);
        let columns: Vec<ArrayRef> = self
            .schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 => text.next(),
                DataType::Int32 => ints.next(),
                DataType::Decimal128(12, 2) => amounts.next(),
                _ => time.take(),
            })
            .collect::<Option<_>>()
            .ok_or_else(|| WeirError::Internal("datagen built too few columns".into()))?;
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

    /// Rows of `column` (a text column) equal to `value` in `b`.
    fn count(b: &RecordBatch, column: &str, value: &str) -> usize {
        let c = b.column_by_name(column).unwrap().as_string::<i32>();
        c.iter().filter(|v| *v == Some(value)).count()
    }

    #[test]
    fn shopsphere_sales_and_stock_share_the_product_catalogue() {
        let sales = batch(Profile::ShopTransactions, 3, 20_000);
        let stock = batch(Profile::Products, 3, 5_000);
        assert_eq!(
            product_info(1),
            ("P00001".into(), "Electronics", "Laptop 1".into(), 84.19)
        );
        assert_eq!(product_info(7).2, "Smartphone 1");
        assert_eq!(product_info(37).2, "Laptop 2");
        // Name, category and price follow the product in both streams.
        for b in [&sales, &stock] {
            let ids = b.column_by_name("product_id").unwrap().as_string::<i32>();
            let names = b.column_by_name("product_name").unwrap().as_string::<i32>();
            let categories = b.column_by_name("category").unwrap().as_string::<i32>();
            let prices = b
                .column_by_name("price")
                .unwrap()
                .as_primitive::<datafusion::arrow::datatypes::Decimal128Type>();
            for i in 0..b.num_rows() {
                let n: u32 = ids.value(i)[1..].parse().unwrap();
                let (_, category, name, price) = product_info(n);
                assert_eq!(
                    (names.value(i), categories.value(i), prices.value(i)),
                    (name.as_str(), category, cents(price))
                );
            }
        }
        let totals = sales
            .column_by_name("total")
            .unwrap()
            .as_primitive::<datafusion::arrow::datatypes::Decimal128Type>();
        let prices = sales
            .column_by_name("price")
            .unwrap()
            .as_primitive::<datafusion::arrow::datatypes::Decimal128Type>();
        let quantities = sales
            .column_by_name("quantity")
            .unwrap()
            .as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        for i in 0..sales.num_rows() {
            assert_eq!(
                totals.value(i),
                prices.value(i) * quantities.value(i) as i128
            );
        }
        // London sells about twice what Manchester does, Bristol least.
        let (london, manchester, bristol) = (
            count(&sales, "city", "London"),
            count(&sales, "city", "Manchester"),
            count(&sales, "city", "Bristol"),
        );
        assert!(london > 6500 && london < 7500, "London {london}");
        assert!(
            manchester > 3200 && manchester < 4000,
            "Manchester {manchester}"
        );
        assert!(bristol < manchester, "Bristol {bristol}");
        // Some products run low: the ShopSphere alerts have something to show.
        let stocks = stock
            .column_by_name("stock")
            .unwrap()
            .as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        let low = stocks.values().iter().filter(|&&s| s < 10).count();
        assert!(low > 200 && low < 500, "{low} low-stock records");
    }

    #[test]
    fn marketing_streams_share_campaigns_with_their_skew() {
        let logs = batch(Profile::WebLogs, 5, 27_000);
        let orders = batch(Profile::CrmOrders, 5, 14_000);
        let spend = batch(Profile::AdSpend, 5, 800);
        // About 35% of sessions are organic, CMP-01 brings the most, CMP-08 the fewest.
        let organic = count(&logs, "campaign_id", "organic");
        assert!(organic > 8500 && organic < 10_500, "organic {organic}");
        assert!(count(&logs, "campaign_id", "CMP-01") > 3 * count(&logs, "campaign_id", "CMP-08"));
        // A session's six lines share user, campaign and device.
        let sessions = logs
            .column_by_name("session_id")
            .unwrap()
            .as_string::<i32>();
        for column in ["user_id", "campaign_id", "device"] {
            let c = logs.column_by_name(column).unwrap().as_string::<i32>();
            for i in 1..logs.num_rows() {
                if sessions.value(i) == sessions.value(i - 1) {
                    assert_eq!(c.value(i), c.value(i - 1), "{column} within a session");
                }
            }
        }
        assert_eq!(sessions.value(5), "sess-5-0");
        assert_eq!(sessions.value(6), "sess-5-1");
        // Purchases are rare, page views common.
        let purchases = count(&logs, "event_type", "purchase");
        assert!(purchases > 300 && purchases < 800, "{purchases} purchases");
        // Email brings a quarter of the attributed orders, TikTok few.
        let email = count(&orders, "campaign_id", "CMP-05");
        let tiktok = count(&orders, "campaign_id", "CMP-04");
        assert!(
            email > 1800 && email < 2400 && tiktok < 500,
            "email {email}, tiktok {tiktok}"
        );
        // Every campaign reports in turn, with its platform.
        for campaign in CAMPAIGNS {
            assert_eq!(count(&spend, "campaign_id", campaign.0), 100);
        }
        let platforms = spend.column_by_name("platform").unwrap().as_string::<i32>();
        assert_eq!(platforms.value(4), "email");
        let clicks = spend
            .column_by_name("clicks")
            .unwrap()
            .as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        let impressions = spend
            .column_by_name("impressions")
            .unwrap()
            .as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        assert!(
            (0..spend.num_rows())
                .all(|i| clicks.value(i) <= impressions.value(i) && impressions.value(i) > 0)
        );
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
}

#[async_trait::async_trait]
impl crate::connector::SourceConnector for DatagenSpec {
    fn name(&self) -> &'static str {
        "datagen"
    }

    /// A reader of the events from the resumed one on.
    async fn reader(
        &self,
        _columns: &[usize],
        resume: Option<&crate::connector::Positions>,
        _guard: Option<crate::decode::TimeGuard>,
    ) -> Result<Box<dyn crate::connector::SourceReader>> {
        crate::connector::generated::GeneratedReader::new(
            Box::new(Generator::new(self.options.clone())?),
            self.projection.clone(),
            self.pace.clone(),
        )
        .resumed(crate::connector::skip_of(resume))
    }

    async fn end_positions(&self, _partitions: Vec<i32>) -> crate::connector::Positions {
        self.count().map(|c| (0, c as i64)).into_iter().collect()
    }
}
