//! Reading a Kafka source: every partition of its topic with an explicitly assigned
//! rdkafka consumer, payloads decoded (`crate::decode`) into Arrow batches per partition;
//! while the brokers are unreachable or answer errors, it retries with back-off.

use super::*;

/// One message as `poll` hands it over.
struct Received {
    partition: i32,
    offset: i64,
    payload: Option<Vec<u8>>,
}

/// What one round of consumer polls gathered.
#[derive(Default)]
struct Gathered {
    messages: Vec<Received>,
    errors: Vec<KafkaError>,
    /// The consumer's own position per partition (past control records and gaps).
    positions: Vec<(i32, i64)>,
}

/// Waits up to `POLL_WAIT` for a first message, then takes what is already there.
fn gather(c: &BaseConsumer) -> Gathered {
    let mut out = Gathered::default();
    let deadline = Instant::now() + POLL_WAIT;
    loop {
        let wait = if out.messages.is_empty() {
            deadline.saturating_duration_since(Instant::now())
        } else {
            Duration::ZERO
        };
        match c.poll(wait) {
            Some(Ok(m)) => out.messages.push(Received {
                partition: m.partition(),
                offset: m.offset(),
                payload: m.payload().map(<[u8]>::to_vec),
            }),
            Some(Err(e)) => out.errors.push(e),
            None if !out.messages.is_empty() || Instant::now() >= deadline => break,
            None => {}
        }
        if out.messages.len() >= MAX_POLL_RECORDS {
            break;
        }
    }
    if let Ok(tpl) = c.position() {
        for e in tpl.elements() {
            if let Offset::Offset(n) = e.offset() {
                out.positions.push((e.partition(), n));
            }
        }
    }
    out
}

/// The topic's partitions that are not in `known`, assigned to `c` from their first
/// offset; an error when a partition has no leader (it cannot be read now).
fn assign_new(c: &BaseConsumer, spec: &KafkaSpec, known: &[i32]) -> Result<Positions> {
    let mut added = Positions::new();
    for p in spec.lookup(c, true)? {
        if !known.contains(&p) {
            added.insert(p, spec.watermarks(c, p)?.0);
        }
    }
    if !added.is_empty() {
        c.incremental_assign(&spec.assignment(&added)?)
            .map_err(|e| spec.broker_error("assigning new partitions of", e))?;
    }
    Ok(added)
}

/// Reads one topic from an explicit assignment of all its partitions.
///
/// Errors of the brokers (unreachable, timeouts, a partition without leader) do not stop
/// it: they begin an outage (`outage()`), during which a metadata request probes the topic
/// with back-off (100 ms doubling to 5 s) while librdkafka reconnects by itself; when the
/// probe succeeds, every partition is sought back to the reader's own positions, so that
/// nothing is skipped or read twice. Only a topic that no longer exists, a fatal consumer
/// error and an undecodable record with `format.on_error = 'fail'` end it.
///
/// With `scan.startup.mode = 'group-offsets'` the positions are committed to the group
/// after every poll that read records: a restarted reader resumes after what was read,
/// which is at-least-once only for what happened before the commit; until views keep
/// checkpoints, their state is not restored with it.
pub(super) struct KafkaReader {
    spec: Arc<KafkaSpec>,
    /// Whether the brokers answer, and when to probe them again.
    health: Health,
    /// A probe of the topic in flight (during an outage).
    probing: Option<JoinHandle<Result<()>>>,
    /// A lookup of new partitions in flight.
    refreshing: Option<JoinHandle<Result<Positions>>>,
    /// Always `Some` until drop, which closes the consumer off the async runtime.
    consumer: Option<Arc<BaseConsumer>>,
    decoder: Decoder,
    positions: Positions,
    decode_errors: u64,
    /// The last records skipped, newest last.
    samples: std::collections::VecDeque<DecodeSample>,
    refreshed: Instant,
    last_warning: Option<(String, Instant)>,
}

impl KafkaReader {
    /// A reader of `spec`'s topic through `consumer`, assigned at `positions`, decoding
    /// the `columns` given.
    pub(super) fn new(
        spec: &KafkaSpec,
        consumer: Arc<BaseConsumer>,
        positions: Positions,
        columns: &[usize],
        guard: Option<TimeGuard>,
    ) -> Result<Self> {
        Ok(KafkaReader {
            health: Health::new(format!(
                "Kafka topic '{}' on brokers '{}'",
                spec.topic,
                spec.brokers()
            )),
            probing: None,
            decoder: Decoder::new(spec.schema.clone(), spec.format)?
                .guard(guard)
                .only(columns),
            spec: Arc::new(spec.clone()),
            consumer: Some(consumer),
            refreshing: None,
            positions,
            decode_errors: 0,
            samples: Default::default(),
            refreshed: Instant::now(),
            last_warning: None,
        })
    }

    fn consumer(&self) -> &Arc<BaseConsumer> {
        self.consumer.as_ref().expect("consumer present until drop")
    }

    /// Starts looking up the topic's partitions on a thread of its own, so that a slow
    /// metadata request does not hold up reading; new ones are assigned from their first
    /// offset, and `poll` takes the result once it is there.
    fn start_refresh(&mut self) {
        self.refreshed = Instant::now();
        let (c, spec) = (self.consumer().clone(), self.spec.clone());
        let known: Vec<i32> = self.positions.keys().copied().collect();
        self.refreshing = Some(tokio::task::spawn_blocking(move || {
            assign_new(&c, &spec, &known)
        }));
    }

    /// Takes the result of a lookup started by `start_refresh`: waits for it with `wait`,
    /// else only if it is done.
    async fn finish_refresh(&mut self, wait: bool) -> Result<()> {
        if let Some(added) = take_done(&mut self.refreshing, wait).await {
            self.take_added(added?);
        }
        Ok(())
    }

    /// Looks up the topic's partitions now (or ends the lookup in flight); new ones are
    /// assigned from their first offset.
    async fn refresh(&mut self) -> Result<()> {
        if self.refreshing.is_none() {
            self.start_refresh();
        }
        self.finish_refresh(true).await
    }

    /// A transient error (brokers unreachable or answering errors) begins or continues an
    /// outage; any other is returned.
    fn trouble(&mut self, e: WeirError) -> Result<()> {
        if e.is_transient() {
            self.health.failed(e.to_string());
            Ok(())
        } else {
            Err(e)
        }
    }

    /// The outage's last error, while there is one.
    fn outage_error(&self) -> Option<WeirError> {
        self.health.outage().map(|o| kafka_io(o.error.clone()))
    }

    /// During an outage: takes the result of the probe in flight, and starts the next one
    /// when the back-off says so.
    async fn check_health(&mut self) -> Result<()> {
        match take_done(&mut self.probing, false).await {
            Some(Ok(())) => self.resume().await,
            Some(Err(e)) => self.trouble(e)?,
            None => {}
        }
        if self.probing.is_none() && self.health.due() {
            self.health.attempt();
            let (c, spec) = (self.consumer().clone(), self.spec.clone());
            self.probing = Some(tokio::task::spawn_blocking(move || spec.probe(&c)));
        }
        Ok(())
    }

    /// The brokers answer again: the outage ends, and every partition is read on from the
    /// reader's own positions (not from committed offsets, nor from what librdkafka had
    /// fetched ahead).
    async fn resume(&mut self) {
        if !self.health.recovered() {
            return;
        }
        let spec = self.spec.clone();
        let positions = self.positions.clone();
        let sought = blocking(self.consumer(), move |c| {
            let tpl = c
                .seek_partitions(spec.assignment(&positions)?, REQUEST_TIMEOUT)
                .map_err(|e| spec.broker_error("could not seek partitions of", e))?;
            for e in tpl.elements() {
                if let Err(err) = e.error() {
                    return Err(spec.broker_error(
                        &format!("could not seek partition {} of", e.partition()),
                        err,
                    ));
                }
            }
            Ok(())
        })
        .await;
        if let Err(e) = sought {
            // Records already read are still passed over (`poll`): nothing is read twice.
            self.warn(e.to_string());
        }
    }

    fn take_added(&mut self, added: Positions) {
        if !added.is_empty() {
            tracing::info!(topic = %self.spec.topic, partitions = ?added.keys().collect::<Vec<_>>(), "reading new Kafka partitions");
            for (p, start) in added {
                // Records of the partition may have been read since the lookup.
                self.positions.entry(p).or_insert(start);
            }
        }
    }

    fn warn(&mut self, msg: String) {
        let repeated = self
            .last_warning
            .as_ref()
            .is_some_and(|(m, at)| *m == msg && at.elapsed() < WARN_EVERY);
        if !repeated {
            tracing::warn!(topic = %self.spec.topic, "{msg}");
            self.last_warning = Some((msg, Instant::now()));
        }
    }

    /// Decodes one partition's payloads, in order; tombstones are passed over.
    fn decode_partition(
        &mut self,
        partition: i32,
        msgs: &[Received],
    ) -> Result<Option<PartitionBatch>> {
        let records: Vec<&Received> = msgs.iter().filter(|m| m.payload.is_some()).collect();
        let payloads: Vec<&[u8]> = records
            .iter()
            .filter_map(|m| m.payload.as_deref())
            .collect();
        let (batch, skipped) = self.decoder.decode_reporting(&payloads)?;
        if let Some(first) = skipped.first() {
            let offset = records[first.index].offset;
            if self.spec.on_error == OnError::Fail {
                return Err(invalid(format!(
                    "could not decode the record at offset {offset} of partition {partition} of Kafka topic '{}' as {}: {}",
                    self.spec.topic,
                    self.spec.format.name(),
                    first.reason
                )));
            }
            self.decode_errors += skipped.len() as u64;
            let at = now_micros();
            for skip in skipped.iter().rev().take(DECODE_SAMPLES).rev() {
                let record = records[skip.index];
                let payload = record.payload.as_deref().unwrap_or_default();
                if self.samples.len() == DECODE_SAMPLES {
                    self.samples.pop_front();
                }
                self.samples.push_back(DecodeSample {
                    partition,
                    offset: record.offset,
                    error: skip.reason.clone(),
                    payload: String::from_utf8_lossy(&payload[..payload.len().min(SAMPLE_BYTES)])
                        .into_owned(),
                    at,
                });
            }
            self.warn(format!(
                "skipped {} undecodable record(s) in partition {partition}, the first at offset {offset}: {}",
                skipped.len(),
                first.reason
            ));
        }
        Ok((batch.num_rows() > 0).then_some(PartitionBatch { partition, batch }))
    }

    fn commit(&mut self, partitions: &[i32]) {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            if let Some(&offset) = self.positions.get(p) {
                let _ = tpl.add_partition_offset(&self.spec.topic, *p, Offset::Offset(offset));
            }
        }
        if let Err(e) = self.consumer().commit(&tpl, CommitMode::Async) {
            self.warn(format!("could not commit offsets: {e}"));
        }
    }
}

#[async_trait]
impl SourceReader for KafkaReader {
    async fn poll(&mut self) -> Result<Poll> {
        self.check_health().await?;
        if let Err(e) = self.finish_refresh(false).await {
            self.trouble(e)?;
        }
        // During an outage `check_health` probes the topic on the back-off schedule instead.
        if self.refreshing.is_none()
            && self.refreshed.elapsed() >= REFRESH_EVERY
            && self.health.outage().is_none()
        {
            self.start_refresh();
        }
        let mut gathered = blocking(self.consumer(), |c| Ok(gather(c))).await?;
        for e in std::mem::take(&mut gathered.errors) {
            if let KafkaError::MessageConsumptionFatal(_) = e {
                let e = self.spec.broker_error("fatal error reading", e);
                return Err(WeirError::Stopped(e.to_string()));
            }
            self.trouble(self.spec.broker_error("reading", e))?;
        }
        // A record before the reader's position was read already (after a reconnection
        // the consumer may go back): it is passed over, so nothing is read twice.
        let positions = &self.positions;
        gathered.messages.retain(|m| {
            positions
                .get(&m.partition)
                .is_none_or(|&next| m.offset >= next)
        });
        // The consumer's position also moves past offsets that carry no message.
        for (p, n) in gathered.positions {
            if let Some(pos) = self.positions.get_mut(&p) {
                *pos = (*pos).max(n);
            }
        }
        if gathered.messages.is_empty() {
            return Ok(Poll::Idle);
        }
        let mut by_partition: BTreeMap<i32, Vec<Received>> = BTreeMap::new();
        for m in gathered.messages {
            by_partition.entry(m.partition).or_default().push(m);
        }
        let mut batches = Vec::with_capacity(by_partition.len());
        for (&partition, msgs) in &by_partition {
            if let Some(b) = self.decode_partition(partition, msgs)? {
                batches.push(b);
            }
            let next = msgs.last().map(|m| m.offset + 1).unwrap_or(0);
            let pos = self.positions.entry(partition).or_insert(next);
            *pos = (*pos).max(next);
        }
        if self.spec.startup == StartupMode::GroupOffsets {
            let touched: Vec<i32> = by_partition.keys().copied().collect();
            self.commit(&touched);
        }
        Ok(Poll::Records(batches))
    }

    /// During an outage, its last error at once (the caller retries); a failed look-up
    /// begins one.
    async fn end_positions(&mut self) -> Result<Positions> {
        if let Some(e) = self.outage_error() {
            return Err(e);
        }
        let ends: Result<Positions> = async {
            self.refresh().await?;
            let spec = self.spec.clone();
            let partitions = self.partitions();
            blocking(self.consumer(), move |c| {
                partitions
                    .into_iter()
                    .map(|p| Ok((p, spec.watermarks(c, p)?.1)))
                    .collect()
            })
            .await
        }
        .await;
        match ends {
            Ok(ends) => Ok(ends),
            Err(e) => {
                self.trouble(e)?;
                Err(self.outage_error().expect("an outage began"))
            }
        }
    }

    fn outage(&self) -> Option<Outage> {
        self.health.outage().cloned()
    }

    fn positions(&self) -> &Positions {
        &self.positions
    }

    fn partitions(&self) -> Vec<i32> {
        self.positions.keys().copied().collect()
    }

    fn decode_errors(&self) -> u64 {
        self.decode_errors
    }

    fn decode_samples(&self) -> Vec<DecodeSample> {
        self.samples.iter().cloned().collect()
    }
}

impl Drop for KafkaReader {
    fn drop(&mut self) {
        // Closing a consumer waits for its threads and for commits in flight, which never
        // end while the brokers are unreachable: close on a thread of its own, which neither
        // an async worker nor the runtime's shutdown waits for.
        if let Some(c) = self.consumer.take() {
            let _ = std::thread::Builder::new()
                .name("kafka-close".into())
                .spawn(move || drop(c));
        }
    }
}
