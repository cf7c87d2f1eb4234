//! `weir bench latency`: end-to-end latency from producing an event to Kafka until a
//! PostgreSQL query on the PostgreSQL wire server shows its effect in a windowed view,
//! at a steady rate; p50/p99/max after a warm-up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bench::bids::timestamp_text;
use crate::bench::drive::sql;
use crate::bench::kafka::fresh_topic;
use crate::bench::measure::{Span, cpu_time_of, ms, percentile, thousands};
use crate::connector::kafka;
use crate::engine::Engine;
use crate::error::{Result, WeirError};
use crate::server::metrics::Metrics;
use crate::server::pgwire::{Handlers, serve};

/// Settings of one latency run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub brokers: String,
    /// Events per second.
    pub rate: f64,
    /// How long the producer runs.
    pub seconds: u64,
    /// Events produced in the first `warmup` seconds are not counted.
    pub warmup: u64,
    /// The producer's `linger.ms`.
    pub linger_ms: u64,
    /// librdkafka properties of the source (`properties.KEY`).
    pub properties: Vec<(String, String)>,
    /// A broker process on this machine whose CPU time to report.
    pub broker_pid: Option<u32>,
}

const VIEW: &str = "SELECT window_start, window_end, max(seq) AS last_seq, count(*) AS n \
     FROM TUMBLE(src, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end";
const QUERY: &str = "SELECT max(last_seq) FROM v";
/// How long the client keeps polling for the last events once the producer is done.
const DRAIN: Duration = Duration::from_secs(20);

/// Produce times, by sequence number: nanoseconds since the run's start, plus one (0: not
/// produced yet).
type Sent = Arc<Vec<AtomicU64>>;

/// `k=v, …`, or `librdkafka's defaults`.
fn shown(properties: &[(String, String)]) -> String {
    if properties.is_empty() {
        return "librdkafka's defaults".into();
    }
    properties
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn run(settings: Settings) -> Result<()> {
    let Settings {
        brokers,
        rate,
        seconds,
        warmup,
        linger_ms,
        properties,
        broker_pid,
    } = settings;
    if !(rate.is_finite() && rate > 0.0) || seconds == 0 || warmup >= seconds {
        return Err(WeirError::InvalidParameter(
            "--rate must be positive and --warmup shorter than --seconds".into(),
        ));
    }
    let total = (rate * seconds as f64) as usize;
    // One partition: Kafka keeps its order, so max(seq) = s means every event up to s is in.
    let topic = fresh_topic("weir-bench-latency");
    println!(
        "latency: {rate} events/s for {seconds} s into topic '{topic}' (1 partition) on {brokers}; \
         producer linger.ms={linger_ms}, source properties: {}; warm-up {warmup} s",
        shown(&properties)
    );
    println!("  machine: {}", crate::bench::measure::machine());
    println!("  view v: {VIEW}");
    println!("  client: '{QUERY}' in a loop over the PostgreSQL wire protocol");
    kafka::create_topic(&brokers, &topic, 1).await?;

    let engine = Arc::new(Engine::new().await?);
    sql(
        &engine,
        &format!(
            "CREATE SOURCE src (seq BIGINT, ts TIMESTAMP, \
             WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) WITH (connector = 'kafka', \
             topic = '{topic}', 'properties.bootstrap.servers' = '{brokers}', \
             'scan.startup.mode' = 'earliest', format = 'json'{})",
            properties
                .iter()
                .map(|(k, v)| format!(", 'properties.{k}' = '{v}'"))
                .collect::<String>()
        ),
    )
    .await?;
    sql(&engine, &format!("CREATE MATERIALIZED VIEW v AS {VIEW}")).await?;

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let metrics = Metrics::new();
    let handlers = Arc::new(Handlers::new(
        Arc::clone(&engine),
        metrics.clone(),
        shutdown.clone(),
        Default::default(),
        Default::default(),
        Default::default(),
    ));
    let server = tokio::spawn(serve(
        listener,
        handlers,
        metrics,
        shutdown.clone(),
        tracker.clone(),
    ));
    println!("  PostgreSQL wire server on {addr}");

    let sent: Sent = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let acked: Sent = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let produced = Arc::new(AtomicBool::new(false));
    let broker_before = broker_pid.map(cpu_time_of);
    let start = Instant::now();
    let span = Span::start();
    let producer = {
        let (sent, acked, produced) =
            (Arc::clone(&sent), Arc::clone(&acked), Arc::clone(&produced));
        let (brokers, topic) = (brokers.clone(), topic.clone());
        std::thread::Builder::new()
            .name("bench-producer".into())
            .spawn(move || {
                let result = produce(&brokers, &topic, rate, linger_ms, &sent, &acked, start);
                produced.store(true, Ordering::Release);
                result
            })?
    };
    let received: Sent = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let plain = {
        let (received, produced) = (Arc::clone(&received), Arc::clone(&produced));
        let (brokers, topic, properties) = (brokers.clone(), topic.clone(), properties.clone());
        std::thread::Builder::new()
            .name("bench-consumer".into())
            .spawn(move || consume(&brokers, &topic, &properties, &received, &produced, start))?
    };
    let client = {
        let (sent, produced) = (Arc::clone(&sent), Arc::clone(&produced));
        std::thread::Builder::new()
            .name("bench-client".into())
            .spawn(move || -> Result<Observed> {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(observe(addr, &sent, &produced, start))
            })?
    };
    let produce_result = tokio::task::spawn_blocking(move || producer.join())
        .await
        .map_err(|e| WeirError::Internal(e.to_string()))?
        .map_err(|_| WeirError::Internal("the producer panicked".into()))?;
    let observed = tokio::task::spawn_blocking(move || client.join())
        .await
        .map_err(|e| WeirError::Internal(e.to_string()))?
        .map_err(|_| WeirError::Internal("the client panicked".into()))??;
    let consumed = tokio::task::spawn_blocking(move || plain.join())
        .await
        .map_err(|e| WeirError::Internal(e.to_string()))?
        .map_err(|_| WeirError::Internal("the plain consumer panicked".into()))?;
    let measured = span.stop();
    consumed?;
    let broker = broker_pid
        .zip(broker_before)
        .map(|(pid, before)| (pid, cpu_time_of(pid) - before));
    produce_result?;
    shutdown.cancel();
    let _ = server.await;
    let _ = sql(&engine, "DROP MATERIALIZED VIEW v").await;

    let warm = Duration::from_secs(warmup);
    let at = |slots: &Sent, seq: usize| match slots[seq].load(Ordering::Acquire) {
        0 => None,
        t => Some(Duration::from_nanos(t - 1)),
    };
    let mut latencies: Vec<Duration> = Vec::with_capacity(total);
    let mut acks: Vec<Duration> = Vec::with_capacity(total);
    let mut delivered: Vec<Duration> = Vec::with_capacity(total);
    let mut weir_part: Vec<Duration> = Vec::with_capacity(total);
    let mut unseen = 0usize;
    for (seq, seen) in observed.seen.iter().enumerate() {
        let sent_at = at(&sent, seq).unwrap_or_default();
        if sent_at < warm {
            continue;
        }
        match seen {
            Some(seen) => latencies.push(seen.saturating_sub(sent_at)),
            None => unseen += 1,
        }
        if let Some(acked_at) = at(&acked, seq) {
            acks.push(acked_at.saturating_sub(sent_at));
        }
        if let Some(received_at) = at(&received, seq) {
            delivered.push(received_at.saturating_sub(sent_at));
            if let Some(seen) = seen {
                weir_part.push(seen.saturating_sub(received_at));
            }
        }
    }
    // The worst latency among the events produced in each second, to tell spikes apart.
    let mut worst: Vec<Duration> = vec![Duration::ZERO; seconds as usize + 1];
    for (seq, seen) in observed.seen.iter().enumerate() {
        if let (Some(seen), Some(sent_at)) = (seen, at(&sent, seq)) {
            let w = &mut worst[(sent_at.as_secs() as usize).min(seconds as usize)];
            *w = (*w).max(seen.saturating_sub(sent_at));
        }
    }
    latencies.sort_unstable();
    acks.sort_unstable();
    delivered.sort_unstable();
    weir_part.sort_unstable();
    let mut queries = observed.query_times.clone();
    queries.sort_unstable();
    println!(
        "  produced {} events in {:.1} s; {} queries answered (round trip p50 {}, p99 {}); \
         process {}",
        thousands(total as u64),
        observed.produced_in.as_secs_f64(),
        thousands(queries.len() as u64),
        ms(percentile(&queries, 0.5)),
        ms(percentile(&queries, 0.99)),
        measured.describe()
    );
    if let Some((pid, cpu)) = broker {
        println!(
            "  broker (pid {pid}) meanwhile: cpu {:.2} s ({:.2} cores)",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() / measured.wall.as_secs_f64().max(1e-9)
        );
    }
    println!(
        "  latency over {} events after the warm-up ({} never seen): p50 {}, p90 {}, p99 {}, \
         p99.9 {}, max {}",
        thousands(latencies.len() as u64),
        thousands(unseen as u64),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.9)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 0.999)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!(
        "  of which producer to broker acknowledgement (delivery report, {} events): p50 {}, \
         p99 {}, max {}",
        thousands(acks.len() as u64),
        ms(percentile(&acks, 0.5)),
        ms(percentile(&acks, 0.99)),
        ms(acks.last().copied().unwrap_or_default())
    );
    println!(
        "  produce to a plain librdkafka consumer of the topic (same properties, {} events): \
         p50 {}, p99 {}, max {}",
        thousands(delivered.len() as u64),
        ms(percentile(&delivered, 0.5)),
        ms(percentile(&delivered, 0.99)),
        ms(delivered.last().copied().unwrap_or_default())
    );
    println!(
        "  Weir's part (visible to the query minus received by the plain consumer, floored \
         at 0): p50 {}, p99 {}, max {}",
        ms(percentile(&weir_part, 0.5)),
        ms(percentile(&weir_part, 0.99)),
        ms(weir_part.last().copied().unwrap_or_default())
    );
    println!(
        "  worst latency of the events produced in each second: {}",
        worst
            .iter()
            .take(seconds as usize)
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "RESULT latency rate={rate} seconds={seconds} warmup={warmup} linger_ms={linger_ms} \
         properties={} events={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} unseen={unseen} \
         plain_consumer_p99_ms={:.2} weir_part_p50_ms={:.2} weir_part_p99_ms={:.2}",
        shown(&properties).replace(' ', ""),
        latencies.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        percentile(&delivered, 0.99).as_secs_f64() * 1000.0,
        percentile(&weir_part, 0.5).as_secs_f64() * 1000.0,
        percentile(&weir_part, 0.99).as_secs_f64() * 1000.0,
    );
    if latencies.is_empty() {
        return Err(WeirError::Internal(
            "no event was seen after the warm-up".into(),
        ));
    }
    Ok(())
}

/// Records when the broker acknowledged each event (the delivery report).
struct Acks {
    start: Instant,
    acked: Sent,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        if result.is_ok()
            && let Some(slot) = self.acked.get(seq)
        {
            slot.store(
                self.start.elapsed().as_nanos() as u64 + 1,
                Ordering::Release,
            );
        }
    }
}

/// Produce `sent.len()` events `{"seq": n, "ts": now}` at `rate` per second, recording
/// each one's produce time just before handing it to the producer.
fn produce(
    brokers: &str,
    topic: &str,
    rate: f64,
    linger_ms: u64,
    sent: &Sent,
    acked: &Sent,
    start: Instant,
) -> Result<()> {
    let context = Acks {
        start,
        acked: Arc::clone(acked),
    };
    let producer: ThreadedProducer<Acks> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", linger_ms.to_string())
        .set("message.timeout.ms", "30000")
        .create_with_context(context)
        .map_err(|e| WeirError::Internal(format!("Kafka producer for '{brokers}': {e}")))?;
    let total = sent.len();
    let mut seq = 0usize;
    let mut payload = Vec::with_capacity(64);
    while seq < total {
        let due = ((start.elapsed().as_secs_f64() * rate) as usize).min(total);
        while seq < due {
            let wall_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            payload.clear();
            payload.extend_from_slice(format!(r#"{{"seq":{seq},"ts":""#).as_bytes());
            timestamp_text(&mut payload, wall_ms);
            payload.extend_from_slice(br#""}"#);
            sent[seq].store(start.elapsed().as_nanos() as u64 + 1, Ordering::Release);
            let record = BaseRecord::<(), [u8], usize>::with_opaque_to(topic, seq)
                .payload(payload.as_slice())
                .partition(0);
            match producer.send(record) {
                Ok(()) => seq += 1,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    return Err(WeirError::Internal(format!("producing to '{topic}': {e}")));
                }
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| WeirError::Internal(format!("flushing the producer: {e}")))?;
    Ok(())
}

/// A plain librdkafka consumer of the topic (the source's properties, from the first
/// offset): records when each event arrived, as the broker's own share of the latency.
fn consume(
    brokers: &str,
    topic: &str,
    properties: &[(String, String)],
    received: &Sent,
    produced: &AtomicBool,
    start: Instant,
) -> Result<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", "weir-bench-latency")
        .set("enable.auto.commit", "false");
    for (k, v) in properties {
        config.set(k, v);
    }
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| WeirError::Internal(format!("Kafka consumer for '{brokers}': {e}")))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|e| WeirError::Internal(e.to_string()))?;
    consumer
        .assign(&tpl)
        .map_err(|e| WeirError::Internal(format!("assigning '{topic}': {e}")))?;
    let total = received.len();
    let mut count = 0usize;
    let mut produced_in = None;
    while count < total {
        if produced_in.is_none() && produced.load(Ordering::Acquire) {
            produced_in = Some(Instant::now());
        }
        if produced_in.is_some_and(|p| p.elapsed() > DRAIN) {
            break;
        }
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let at = start.elapsed().as_nanos() as u64 + 1;
        let seq = m.payload().and_then(|p| {
            let digits = p.strip_prefix(br#"{"seq":"#)?;
            let end = digits.iter().position(|b| !b.is_ascii_digit())?;
            std::str::from_utf8(&digits[..end])
                .ok()?
                .parse::<usize>()
                .ok()
        });
        if let Some(slot) = seq.and_then(|s| received.get(s))
            && slot.load(Ordering::Relaxed) == 0
        {
            slot.store(at, Ordering::Release);
            count += 1;
        }
    }
    Ok(())
}

/// What the client saw.
struct Observed {
    /// Per sequence number, when a query first showed it (since the run's start).
    seen: Vec<Option<Duration>>,
    /// Round trip of every query.
    query_times: Vec<Duration>,
    /// When the producer was done, since the start.
    produced_in: Duration,
}

/// Query `max(last_seq)` in a loop until every event was seen, or `DRAIN` after the
/// producer finished.
async fn observe(
    addr: SocketAddr,
    sent: &Sent,
    produced: &AtomicBool,
    start: Instant,
) -> Result<Observed> {
    let config = format!(
        "host={} port={} user=weir dbname=weir",
        addr.ip(),
        addr.port()
    );
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
        .await
        .map_err(|e| WeirError::Internal(format!("connecting to {addr}: {e}")))?;
    tokio::spawn(connection);
    let total = sent.len();
    let mut seen: Vec<Option<Duration>> = vec![None; total];
    let mut query_times = Vec::new();
    let mut next = 0usize; // first sequence number not yet seen
    let mut produced_in = None;
    while next < total {
        if produced_in.is_none() && produced.load(Ordering::Acquire) {
            produced_in = Some(start.elapsed());
        }
        if produced_in.is_some_and(|p| start.elapsed() > p + DRAIN) {
            break;
        }
        let asked = Instant::now();
        let messages = client
            .simple_query(QUERY)
            .await
            .map_err(|e| WeirError::Internal(format!("{QUERY}: {e}")))?;
        let at = start.elapsed();
        query_times.push(asked.elapsed());
        let last = messages.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                r.get(0).and_then(|v| v.parse::<i64>().ok())
            }
            _ => None,
        });
        if let Some(last) = last.and_then(|l| usize::try_from(l).ok()) {
            let upto = (last + 1).min(total);
            for s in seen.iter_mut().take(upto).skip(next) {
                *s = Some(at);
            }
            next = next.max(upto);
        }
    }
    Ok(Observed {
        seen,
        query_times,
        produced_in: produced_in.unwrap_or_else(|| start.elapsed()),
    })
}
