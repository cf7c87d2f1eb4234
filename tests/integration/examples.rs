//! The pipelines of `examples/` end to end: a tansu broker filled by `weir gen` with each
//! example's profile (fixed count, seed and start), `weir serve --sql-dir examples/<name>`
//! pointed at it through `${…}` variables, and the key views checked after `FLUSH` against
//! the same events recomputed in batch with `datagen(…)`, plus figures that must hold.
//!
//! `WEIR_EXAMPLES_SINKS=none` leaves the examples' `50_sinks.sql` files out (the servers
//! then run everything else); by default they are applied like the rest of the folder.
//! The PostgreSQL sinks write into the throw-away server the harness starts (else into
//! `WEIR_TEST_POSTGRES_URL`), and realtime-sales checks a table against its view.

use std::path::{Path, PathBuf};
use std::process::Command;

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::harness::{Broker, Server, connect, weir_bin};

/// Events per topic and the seed every example is generated with; event `i` happens at
/// 2026-01-01 00:00:00 + i ms, as `datagen(profile, N, SEED)` recomputes it.
const N: u64 = 20_000;
const START: &str = "2026-01-01 00:00:00";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `weir gen --profile <profile>` into `broker`: `N` events per topic, as fast as it can.
fn generate(broker: &Broker, profile: &str, seed: u64) {
    let out = Command::new(weir_bin())
        .args(["gen", "--brokers", &broker.addr(), "--profile", profile])
        .args(["--count", &N.to_string(), "--seed", &seed.to_string()])
        .args(["--rate", "unlimited", "--start", START, "--partitions", "3"])
        .output()
        .expect("run weir gen");
    assert!(
        out.status.success(),
        "weir gen --profile {profile} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running example: its broker, server, and the folders its variables point at.
struct Example {
    server: Server,
    client: Client,
    _broker: Broker,
    _dirs: Vec<tempfile::TempDir>,
}

/// Fill a broker with `profile`, then serve `examples/<name>` against it and `FLUSH`.
async fn start(name: &str, profile: &str, seed: u64, extra_env: &[(&str, &str)]) -> Example {
    let broker = Broker::start();
    generate(&broker, profile, seed);
    let example = root().join("examples").join(name);
    let archive = tempfile::tempdir().unwrap();
    let archive_url = format!("file://{}", archive.path().display());
    let data = example.join("data").display().to_string();
    let mut env = vec![
        ("KAFKA_BROKERS", broker.addr()),
        ("WEIR_ARCHIVE", archive_url),
        ("WEIR_EXAMPLE_DATA", data),
    ];
    env.extend(extra_env.iter().map(|(k, v)| (*k, v.to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut dirs = vec![archive];
    let sql_dir = match std::env::var("WEIR_EXAMPLES_SINKS").as_deref() {
        Ok("none") => {
            let copy = without_sinks(&example);
            let path = copy.path().display().to_string();
            dirs.push(copy);
            path
        }
        _ => example.display().to_string(),
    };
    let server = Server::start_with_env(&sql_dir, &env);
    let client = connect(&server).await;
    client.simple_query("FLUSH").await.expect("FLUSH");
    Example {
        server,
        client,
        _broker: broker,
        _dirs: dirs,
    }
}

/// The `.sql` files of `example` but its sinks, in a new folder.
fn without_sinks(example: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(example).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".sql") && !name.contains("sinks") {
            std::fs::copy(&path, copy.path().join(name)).unwrap();
        }
    }
    copy
}

/// Every row of `sql`, as PostgreSQL text.
async fn rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

/// The one value `sql` returns.
async fn value(client: &Client, sql: &str) -> String {
    let all = rows(client, sql).await;
    assert_eq!(all.len(), 1, "{sql}: {all:?}");
    all[0][0].clone().unwrap_or_default()
}

/// `view` (a query over the example's views) has the same rows as `oracle` (the batch
/// recomputation), in any order, and at least `min_rows` of them.
async fn same(client: &Client, view: &str, oracle: &str, min_rows: usize) {
    let mut got = rows(client, view).await;
    let mut want = rows(client, oracle).await;
    got.sort();
    want.sort();
    assert!(
        want.len() >= min_rows,
        "{oracle}: only {} rows, expected {min_rows} or more",
        want.len()
    );
    if got != want {
        let missing: Vec<_> = want.iter().filter(|r| !got.contains(r)).take(5).collect();
        let extra: Vec<_> = got.iter().filter(|r| !want.contains(r)).take(5).collect();
        panic!(
            "{view}\n  has {} rows, the batch recomputation {}\n  missing: {missing:?}\n  unexpected: {extra:?}",
            got.len(),
            want.len()
        );
    }
}

/// Every query of `examples/<name>/dashboard.json` runs against the example and returns
/// rows (Grafana's `$__timeFilter(col)` as a filter from the events' start).
async fn dashboard_queries_return_rows(client: &Client, name: &str) {
    let path = root().join("examples").join(name).join("dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(dashboard["refresh"], "5s", "{}", path.display());
    let time_filter = regex::Regex::new(r"\$__timeFilter\(([^)]+)\)").unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 4);
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(target["datasource"]["uid"], "weir");
            let sql = time_filter.replace_all(
                target["rawSql"].as_str().unwrap(),
                "$1 >= TIMESTAMP '2026-01-01 00:00:00'",
            );
            assert!(
                !rows(client, &sql).await.is_empty(),
                "panel {} of {}: {sql} returned no rows",
                panel["title"],
                path.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_report() {
    let ex = start("transactions-report", "transactions", 42, &[]).await;
    let c = &ex.client;
    let tx = format!("datagen('transactions', {N}, 42)");
    same(
        c,
        "SELECT * FROM report_summary",
        &format!(
            "SELECT count(*), count(DISTINCT user_id), sum(amount), \
             CAST(avg(amount) AS DECIMAL(12, 2)), sum(quantity) FROM {tx}"
        ),
        1,
    )
    .await;
    // The results section's figures, for this seed.
    assert_eq!(
        rows(
            c,
            "SELECT transactions, unique_users, items_sold FROM report_summary"
        )
        .await,
        [[
            Some(N.to_string()),
            Some("900".into()),
            Some("60232".into())
        ]]
    );
    same(
        c,
        "SELECT * FROM revenue_by_category",
        &format!(
            "SELECT category, round(sum(amount), 2), count(*), sum(quantity) FROM {tx} GROUP BY category"
        ),
        6,
    )
    .await;
    same(
        c,
        "SELECT * FROM revenue_by_city",
        &format!("SELECT city, round(sum(amount), 2), count(*) FROM {tx} GROUP BY city"),
        6,
    )
    .await;
    same(
        c,
        "SELECT * FROM payment_methods",
        &format!(
            "SELECT payment_method, count(*), round(sum(amount), 2) FROM {tx} GROUP BY payment_method"
        ),
        4,
    )
    .await;
    same(
        c,
        "SELECT * FROM revenue_by_category_1m",
        &format!(
            "SELECT date_bin(INTERVAL '1 minute', ts, TIMESTAMP '1970-01-01') AS ws, \
             date_bin(INTERVAL '1 minute', ts, TIMESTAMP '1970-01-01') + INTERVAL '1 minute', \
             category, round(sum(amount), 2), count(*) FROM {tx} GROUP BY ws, category"
        ),
        6,
    )
    .await;
    same(
        c,
        "SELECT * FROM top_transactions",
        &format!(
            "SELECT transaction_id, user_id, city, category, amount, quantity, payment_method, ts \
             FROM {tx} ORDER BY amount DESC, transaction_id LIMIT 10"
        ),
        10,
    )
    .await;
    // The top 3 categories are the three largest of revenue_by_category.
    assert_eq!(
        rows(c, "SELECT category FROM top_categories").await,
        rows(
            c,
            "SELECT category FROM revenue_by_category ORDER BY revenue DESC LIMIT 3"
        )
        .await
    );
    dashboard_queries_return_rows(c, "transactions-report").await;
    assert!(ex.server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopnow() {
    let ex = start("shopnow", "shop", 7, &[]).await;
    let c = &ex.client;
    let src = |profile: &str| format!("datagen('{profile}', {N}, 7)");
    let top_n = |profile: &str, size: &str, measure: &str, extra: &str| {
        format!(
            "SELECT ws, ws + INTERVAL '{size}', product_id, {extra} r FROM (
               SELECT date_bin(INTERVAL '{size}', ts, TIMESTAMP '1970-01-01') AS ws, product_id, {measure},
                      ROW_NUMBER() OVER (PARTITION BY date_bin(INTERVAL '{size}', ts, TIMESTAMP '1970-01-01')
                                         ORDER BY {} DESC, product_id) AS r
               FROM {} GROUP BY 1, 2) WHERE r <= 10",
            measure.split(" AS ").next().unwrap(),
            src(profile)
        )
    };
    same(
        c,
        "SELECT * FROM top_viewed_10m",
        &top_n("page_views", "10 minutes", "count(*) AS views", "views,"),
        10,
    )
    .await;
    same(
        c,
        "SELECT * FROM top_cart_10m",
        &top_n(
            "cart_additions",
            "10 minutes",
            "sum(quantity) AS units, count(*) AS additions",
            "units, additions,",
        ),
        10,
    )
    .await;
    same(
        c,
        "SELECT * FROM revenue_5m",
        &format!(
            "SELECT date_bin(INTERVAL '5 minutes', ts, TIMESTAMP '1970-01-01') AS ws, \
             date_bin(INTERVAL '5 minutes', ts, TIMESTAMP '1970-01-01') + INTERVAL '5 minutes', \
             round(sum(amount), 2), count(*), sum(quantity) FROM {} GROUP BY ws",
            src("orders")
        ),
        1,
    )
    .await;
    same(
        c,
        "SELECT * FROM payments_5m",
        &format!(
            "SELECT date_bin(INTERVAL '5 minutes', ts, TIMESTAMP '1970-01-01') AS ws, \
             date_bin(INTERVAL '5 minutes', ts, TIMESTAMP '1970-01-01') + INTERVAL '5 minutes', \
             payment_method, round(sum(amount), 2), count(*) FROM {} GROUP BY ws, payment_method",
            src("payments")
        ),
        4,
    )
    .await;
    same(
        c,
        "SELECT * FROM stock_alerts",
        &format!(
            "SELECT product_id, stock, stock = 0, ts FROM {} WHERE stock < 5",
            src("stock_updates")
        ),
        100,
    )
    .await;
    // 20,000 events 1 ms apart: 20 seconds, all in the first 10-minute window.
    assert_eq!(
        value(c, "SELECT sum(orders) FROM revenue_5m").await,
        N.to_string()
    );
    assert_eq!(
        value(c, "SELECT product_id FROM top_viewed_10m WHERE rank = 1").await,
        "P00001"
    );
    assert!(ex.server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopsphere() {
    let ex = start("shopsphere", "shopsphere", 3, &[]).await;
    let c = &ex.client;
    let sales = format!("datagen('shop_transactions', {N}, 3)");
    for (view, key) in [
        ("revenue_by_city", "city"),
        ("revenue_by_category", "category"),
    ] {
        same(
            c,
            &format!("SELECT * FROM {view}"),
            &format!(
                "SELECT {key}, round(sum(total), 2), count(*), sum(quantity) FROM {sales} GROUP BY {key}"
            ),
            6,
        )
        .await;
    }
    same(
        c,
        "SELECT * FROM best_sellers_today",
        &format!(
            "SELECT day, product_id, product_name, orders, units, r FROM (
               SELECT date_bin(INTERVAL '1 day', ts, TIMESTAMP '1970-01-01') AS day, product_id,
                      product_name, count(*) AS orders, sum(quantity) AS units,
                      ROW_NUMBER() OVER (PARTITION BY date_bin(INTERVAL '1 day', ts, TIMESTAMP '1970-01-01')
                                         ORDER BY count(*) DESC, sum(quantity) DESC, product_id) AS r
               FROM {sales} GROUP BY 1, 2, 3) WHERE r <= 5"
        ),
        5,
    )
    .await;
    same(
        c,
        "SELECT * FROM low_stock",
        &format!(
            "SELECT product_id, product_name, category, stock, ts FROM datagen('products', {N}, 3) \
             WHERE stock < 10"
        ),
        500,
    )
    .await;
    // The hottest product is the first one, the "Laptop 1".
    assert_eq!(
        rows(
            c,
            "SELECT product_id, product_name FROM best_sellers_today WHERE rank = 1"
        )
        .await,
        [[Some("P00001".into()), Some("Laptop 1".into())]]
    );
    // Reports: 24 months of history and this one; each year of the history adds up.
    assert_eq!(
        value(c, "SELECT count(DISTINCT month) FROM monthly_report").await,
        "25"
    );
    assert_eq!(
        value(
            c,
            "SELECT round(sum(revenue), 2) FROM monthly_report WHERE month >= TIMESTAMP '2026-01-01'"
        )
        .await,
        value(c, "SELECT round(sum(revenue), 2) FROM revenue_by_city").await
    );
    assert_eq!(
        value(
            c,
            "SELECT round(CAST((SELECT sum(revenue) FROM yearly_report WHERE year = 2025) AS DOUBLE)) = \
                    round((SELECT sum(revenue) FROM sales_history WHERE year = '2025'))"
        )
        .await,
        "t"
    );
    assert_eq!(
        value(c, "SELECT count(*) FROM city_vs_last_year WHERE ratio > 0").await,
        "6"
    );
    assert_eq!(value(c, "SELECT count(*) FROM seasonal_trends").await, "24");
    assert!(ex.server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_sales() {
    let (_server, pg) = postgres();
    let env: Vec<(&str, &str)> = pg.iter().map(|u| ("POSTGRES_URL", u.as_str())).collect();
    let ex = start("realtime-sales", "sales", 5, &env).await;
    let c = &ex.client;
    let sold = format!("datagen('orders', {N}, 5)");
    same(
        c,
        "SELECT * FROM sales_by_category_day",
        &format!(
            "SELECT date_bin(INTERVAL '1 day', ts, TIMESTAMP '1970-01-01') AS day, category, \
             round(sum(amount), 2), sum(quantity), count(*) FROM {sold} GROUP BY day, category"
        ),
        6,
    )
    .await;
    same(
        c,
        "SELECT * FROM sales_by_category",
        &format!(
            "SELECT category, round(sum(amount), 2), sum(quantity), count(*) FROM {sold} GROUP BY category"
        ),
        6,
    )
    .await;
    same(
        c,
        "SELECT * FROM sales_per_minute",
        &format!(
            "SELECT date_bin(INTERVAL '1 minute', ts, TIMESTAMP '1970-01-01') AS m, category, \
             round(sum(amount), 2), count(*) FROM {sold} GROUP BY m, category"
        ),
        6,
    )
    .await;
    // Day, month and category totals agree with each other.
    assert_eq!(
        value(c, "SELECT sum(sales) FROM sales_by_day").await,
        N.to_string()
    );
    assert_eq!(
        rows(
            c,
            "SELECT month, sum(sales) FROM sales_by_month GROUP BY month"
        )
        .await,
        [[Some("2026-01-01 00:00:00".into()), Some(N.to_string())]]
    );
    dashboard_queries_return_rows(c, "realtime-sales").await;
    if let Some(url) = pg {
        postgres_sink_matches(c, &url).await;
    }
    assert!(ex.server.stop().success());
}

/// A PostgreSQL server for an example's sinks (the harness's throw-away one, else
/// `WEIR_TEST_POSTGRES_URL`), and its URL.
fn postgres() -> (Option<crate::harness::Postgres>, Option<String>) {
    let server = crate::harness::Postgres::start();
    let url = match &server {
        Some(s) => Some(s.url()),
        None => std::env::var("WEIR_TEST_POSTGRES_URL").ok(),
    };
    (server, url)
}

/// The `sales_by_category_day` table the PostgreSQL sink upserts holds the view's rows.
async fn postgres_sink_matches(weir: &Client, url: &str) {
    let (pg, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(conn);
    let query = "SELECT day, category, CAST(round(CAST(revenue AS numeric), 2) AS text), \
                 CAST(units AS text), CAST(sales AS text) FROM sales_by_category_day ORDER BY 1, 2";
    let mut want = rows(weir, query).await;
    let mut got = rows(&pg, query).await;
    want.sort();
    got.sort();
    assert_eq!(got, want, "PostgreSQL table sales_by_category_day");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marketing_roi() {
    let (_server, pg) = postgres();
    let env: Vec<(&str, &str)> = pg.iter().map(|u| ("POSTGRES_URL", u.as_str())).collect();
    let ex = start("marketing-roi", "marketing", 9, &env).await;
    let c = &ex.client;
    let logs = format!("datagen('web_logs', {N}, 9)");
    let orders = format!("datagen('crm_orders', {N}, 9)");
    let spend = format!("datagen('ad_spend', {N}, 9)");
    same(
        c,
        "SELECT * FROM campaign_traffic",
        &format!(
            "SELECT campaign_id, count(DISTINCT session_id), count(*), \
             count(*) FILTER (WHERE event_type = 'product_view'), \
             count(*) FILTER (WHERE event_type = 'add_to_cart'), \
             count(*) FILTER (WHERE event_type = 'purchase') FROM {logs} GROUP BY campaign_id"
        ),
        9,
    )
    .await;
    same(
        c,
        "SELECT * FROM campaign_revenue",
        &format!(
            "SELECT campaign_id, count(*), round(sum(amount), 2), count(DISTINCT customer_id) \
             FROM {orders} GROUP BY campaign_id"
        ),
        9,
    )
    .await;
    same(
        c,
        "SELECT * FROM campaign_spend",
        &format!(
            "SELECT campaign_id, platform, sum(impressions), sum(clicks), round(sum(spend), 2) \
             FROM {spend} GROUP BY campaign_id, platform"
        ),
        8,
    )
    .await;
    same(
        c,
        "SELECT * FROM revenue_by_platform",
        &format!(
            "SELECT coalesce(c.platform, 'organic') AS p, count(*), round(sum(o.amount), 2) \
             FROM {orders} o LEFT JOIN campaigns c ON o.campaign_id = c.campaign_id GROUP BY p"
        ),
        7,
    )
    .await;
    // ROI is (revenue - spend) / spend for each of the eight campaigns; email pays back
    // most; Facebook, Instagram's CMP-08 and TikTok lose money.
    assert_eq!(
        value(
            c,
            "SELECT count(*) FROM campaign_roi r JOIN campaign_revenue v USING (campaign_id) \
             JOIN campaign_spend s USING (campaign_id) \
             WHERE r.roi = round((v.revenue - s.spend) / s.spend, 3)"
        )
        .await,
        "8"
    );
    assert_eq!(
        rows(c, "SELECT campaign_id FROM campaign_roi ORDER BY roi DESC").await,
        [
            "CMP-05", "CMP-01", "CMP-03", "CMP-07", "CMP-06", "CMP-02", "CMP-08", "CMP-04"
        ]
        .map(|id| vec![Some(id.to_string())])
    );
    assert_eq!(
        value(c, "SELECT orders FROM marketing_overview").await,
        N.to_string()
    );
    dashboard_queries_return_rows(c, "marketing-roi").await;
    assert!(ex.server.stop().success());
}
