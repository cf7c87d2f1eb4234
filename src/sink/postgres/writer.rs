//! The PostgreSQL sink's writer: one connection with its prepared statements, rows
//! pending until a flush writes them in one transaction, retried with back-off.

use super::sql::{Sql, texts};
use super::tls::TLS;
use super::*;

/// One connection and its prepared statements.
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) write: Statement,
    pub(super) delete: Option<Statement>,
}

/// What a flush writes: per statement, one text array per column.
pub(super) struct Work {
    pub(super) deletes: Vec<Vec<Vec<Option<String>>>>,
    pub(super) writes: Vec<Vec<Vec<Option<String>>>>,
}

pub(super) struct PostgresWriter {
    pub(super) spec: PostgresSinkSpec,
    pub(super) sink: String,
    pub(super) delivery: Delivery,
    pub(super) schema: SchemaRef,
    /// Indexes of the primary key's columns.
    pub(super) key: Vec<usize>,
    pub(super) sql: Sql,
    pub(super) conn: Option<Conn>,
    /// Rows taken since the last flush, each with whether it was deleted.
    pub(super) pending: Vec<(RecordBatch, Vec<bool>)>,
    pub(super) pending_rows: usize,
}

impl PostgresWriter {
    pub(super) async fn connect(
        &self,
        create: bool,
    ) -> std::result::Result<Conn, tokio_postgres::Error> {
        let (client, connection) = self.spec.config.connect(TLS.clone()).await?;
        let sink = self.sink.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%sink, "PostgreSQL connection ended: {e}");
            }
        });
        if create {
            client.batch_execute(&self.sql.create).await?;
        }
        client.batch_execute(&self.sql.check).await?;
        let write = client.prepare(&self.sql.write).await?;
        let delete = match &self.sql.delete {
            Some(sql) => Some(client.prepare(sql).await?),
            None => None,
        };
        Ok(Conn {
            client,
            write,
            delete,
        })
    }

    /// The net effect of the pending rows, as text arrays in statements of `batch.size`.
    pub(super) fn work(&self) -> Result<Work> {
        let (writes, deletes) = if self.key.is_empty() {
            let batches: Vec<RecordBatch> = self.pending.iter().map(|(b, _)| b.clone()).collect();
            (Some(concat_batches(&self.schema, &batches)?), None)
        } else {
            let net = net_effect(&self.pending, &self.key)?;
            let deletes = net.deletes.map(|d| d.project(&self.key)).transpose()?;
            (net.upserts, deletes)
        };
        if let Some(rows) = &writes {
            for &k in &self.key {
                if rows.column(k).null_count() > 0 {
                    return Err(invalid(format!(
                        "postgres sink '{}': a row has NULL in primary key column '{}', which \
                         PostgreSQL does not allow; filter such rows out or choose other key columns",
                        self.sink,
                        self.schema.field(k).name()
                    )));
                }
            }
        }
        let chunks = |rows: Option<RecordBatch>| -> Result<Vec<Vec<Vec<Option<String>>>>> {
            let Some(rows) = rows else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            let mut offset = 0;
            while offset < rows.num_rows() {
                let len = self.spec.batch_size.min(rows.num_rows() - offset);
                let part = rows.slice(offset, len);
                out.push(part.columns().iter().map(texts).collect::<Result<_>>()?);
                offset += len;
            }
            Ok(out)
        };
        Ok(Work {
            deletes: chunks(deletes)?,
            writes: chunks(writes)?,
        })
    }

    /// One attempt at writing `work` in one transaction, connecting first if need be.
    pub(super) async fn attempt(
        &mut self,
        work: &Work,
    ) -> std::result::Result<(), tokio_postgres::Error> {
        if self.conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            self.conn = None;
            self.conn = Some(self.connect(false).await?);
        }
        let conn = self.conn.as_mut().expect("connected");
        let tx = conn.client.transaction().await?;
        if let Some(delete) = &conn.delete {
            for arrays in &work.deletes {
                tx.execute(delete, &params(arrays)).await?;
            }
        }
        for arrays in &work.writes {
            tx.execute(&conn.write, &params(arrays)).await?;
        }
        tx.commit().await
    }

    pub(super) fn gave_up(
        &self,
        what: &str,
        started: Instant,
        e: &tokio_postgres::Error,
    ) -> WeirError {
        WeirError::Stopped(format!(
            "postgres sink '{}' {what} table '{}' on {} (retried for {:.1} s, up to \
             'retry.max_elapsed'): {}",
            self.sink,
            self.spec.table,
            self.spec.target(),
            started.elapsed().as_secs_f64(),
            pg_message(e)
        ))
    }
}

#[async_trait]
impl SinkWriter for PostgresWriter {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let rows = batch.num_rows();
        self.pending.push(match self.delivery {
            Delivery::Changes => split_ops(&batch)?,
            Delivery::Append => (batch, vec![false; rows]),
        });
        self.pending_rows += rows;
        if self.pending_rows >= self.spec.batch_size.saturating_mul(AUTO_FLUSH_STATEMENTS)
            && let Err(e) = self.flush().await
        {
            // A failed write keeps nothing of its batch: the runner hands the same batch
            // again, and keeping it too would write its rows twice.
            self.pending.pop();
            self.pending_rows -= rows;
            return Err(e);
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let work = self.work()?;
        let started = Instant::now();
        let mut backoff = Backoff::default();
        loop {
            match self.attempt(&work).await {
                Ok(()) => break,
                Err(e) => {
                    // The transaction is gone with the connection; the next attempt starts
                    // from a new one.
                    self.conn = None;
                    let delay = backoff.delay();
                    if started.elapsed() + delay > self.spec.retry_max_elapsed {
                        return Err(self.gave_up("could not write to", started, &e));
                    }
                    tracing::warn!(sink = %self.sink, "writing to PostgreSQL table '{}' on {} failed, retrying: {}", self.spec.table, self.spec.target(), pg_message(&e));
                    tokio::time::sleep(delay).await;
                }
            }
        }
        self.pending.clear();
        self.pending_rows = 0;
        Ok(())
    }
}

/// One statement's parameters: its text arrays.
pub(super) fn params(arrays: &[Vec<Option<String>>]) -> Vec<&(dyn ToSql + Sync)> {
    arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

/// Errors worth retrying: no answer from the server, or one of the classes that pass
/// (connection, transaction rollback, resources, operator intervention, system errors).
pub(super) fn transient(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(code) => matches!(&code.code()[..2], "08" | "40" | "53" | "57" | "58"),
    }
}

/// The server's message when it sent one, else the client's.
pub(super) fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.to_string().replace('\n', " "),
        None => e.to_string(),
    }
}

pub(super) fn invalid(msg: impl Into<String>) -> WeirError {
    WeirError::InvalidParameter(msg.into())
}
