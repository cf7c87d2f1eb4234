//! Small producer and admin helpers: creating topics and partitions, and producing
//! records (`weir produce`, `weir gen`, the tests).

use super::*;

fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| invalid(format!("Kafka admin client for '{brokers}': {e}")))
}

fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(REQUEST_TIMEOUT))
        .operation_timeout(Some(REQUEST_TIMEOUT))
}

/// Creates `topic` with `partitions` partitions; an existing topic is left as it is.
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin = admin(brokers)?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics([&new], &admin_options())
        .await
        .map_err(|e| kafka_io(format!("creating topic '{topic}' on '{brokers}': {e}")))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(kafka_io(format!(
                    "creating topic '{name}' on '{brokers}': {code}"
                )));
            }
        }
    }
    Ok(())
}

/// Grows `topic` to `total` partitions (Kafka's CreatePartitions).
pub async fn add_partitions(brokers: &str, topic: &str, total: usize) -> Result<()> {
    let admin = admin(brokers)?;
    let results = admin
        .create_partitions([&NewPartitions::new(topic, total)], &admin_options())
        .await
        .map_err(|e| {
            kafka_io(format!(
                "adding partitions to '{topic}' on '{brokers}': {e}"
            ))
        })?;
    for r in results {
        if let Err((name, code)) = r {
            return Err(kafka_io(format!(
                "adding partitions to '{name}' on '{brokers}': {code}"
            )));
        }
    }
    Ok(())
}

/// A producer for `brokers` that gives up on a record after 30 s.
pub fn producer(brokers: &str) -> Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "5")
        .create()
        .map_err(|e| invalid(format!("Kafka producer for '{brokers}': {e}")))
}

/// Produces `records` (partition, payload) to `topic` and waits until every one is
/// delivered; a record without partition goes where the default partitioner puts it.
pub async fn produce(
    brokers: &str,
    topic: &str,
    records: Vec<(Option<i32>, Vec<u8>)>,
) -> Result<()> {
    let producer = producer(brokers)?;
    // A missing topic would only show as a delivery timeout: say so at once instead. A
    // topic just created may take a moment to show in every broker's metadata.
    let check = producer.clone();
    let name = topic.to_string();
    let exists = off_runtime(move || {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let metadata = check
                .client()
                .fetch_metadata(Some(&name), REQUEST_TIMEOUT)
                .map_err(|e| {
                    kafka_io(format!("could not fetch metadata of topic '{name}': {e}"))
                })?;
            let found = metadata
                .topics()
                .iter()
                .any(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty());
            if found || Instant::now() >= deadline {
                return Ok(found);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await?;
    if !exists {
        return Err(invalid(format!(
            "Kafka topic '{topic}' does not exist on brokers '{brokers}'"
        )));
    }
    let producer = &producer;
    let mut deliveries =
        futures::stream::iter(records.iter().map(|(partition, payload)| async move {
            let mut record = FutureRecord::<(), [u8]>::to(topic).payload(payload.as_slice());
            if let Some(p) = partition {
                record = record.partition(*p);
            }
            producer
                .send(record, Duration::from_secs(30))
                .await
                .map(drop)
                .map_err(|(e, _)| e)
        }))
        .buffer_unordered(4096);
    while let Some(delivered) = deliveries.next().await {
        delivered.map_err(|e| kafka_io(format!("producing to '{topic}' on '{brokers}': {e}")))?;
    }
    Ok(())
}

/// Records from text, one per line (`weir produce`): `@P payload` goes to partition P,
/// other lines to `partition`; empty lines are ignored.
pub fn records_from_lines(
    text: &str,
    partition: Option<i32>,
) -> Result<Vec<(Option<i32>, Vec<u8>)>> {
    let mut records = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let prefixed = line.strip_prefix('@').and_then(|rest| {
            let (p, payload) = rest.split_once(' ').unwrap_or((rest, ""));
            Some((p.parse::<i32>().ok()?, payload))
        });
        records.push(match prefixed {
            Some((p, payload)) if p >= 0 => (Some(p), payload.as_bytes().to_vec()),
            Some((p, _)) => return Err(invalid(format!("bad partition {p} in line '{line}'"))),
            None => (partition, line.as_bytes().to_vec()),
        });
    }
    Ok(records)
}
