//! What the Flight SQL front keeps between calls: the tickets DoGet redeems (stateless:
//! each carries what to run), the open prepared statements (a map of handles bounded in
//! all and per client, closed when unused for long) with their bound parameters, and
//! parameter batches turned into values.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;

use crate::engine::Prepared;
use crate::error::{Result, WeirError};
use crate::locks::Unpoisoned;

/// Prepared statements open at once, all clients together; past it creating one fails
/// until some are closed.
pub const MAX_PREPARED: usize = 4096;
/// Prepared statements one client (a user, or an address without users) may keep open.
pub const MAX_PREPARED_PER_CLIENT: usize = 256;

/// What a statement ticket (`TicketStatementQuery.statement_handle`) asks DoGet for. The
/// first byte is the kind, so other kinds can be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ticket {
    /// Run this SQL text and stream its rows.
    Query(String),
    /// Nothing to stream: the statement ran when its FlightInfo was asked for (DDL and
    /// other commands). DoGet answers with no columns and no rows.
    Done,
}

const QUERY: u8 = b'q';
const DONE: u8 = b'd';

impl Ticket {
    pub fn encode(&self) -> Bytes {
        match self {
            Ticket::Query(sql) => {
                let mut out = Vec::with_capacity(sql.len() + 1);
                out.push(QUERY);
                out.extend_from_slice(sql.as_bytes());
                out.into()
            }
            Ticket::Done => Bytes::from_static(&[DONE]),
        }
    }

    pub fn decode(handle: &[u8]) -> Result<Ticket> {
        let bad = || WeirError::InvalidParameter("not a ticket this server issued".into());
        match handle.split_first() {
            Some((&QUERY, sql)) => Ok(Ticket::Query(
                String::from_utf8(sql.to_vec()).map_err(|_| bad())?,
            )),
            Some((&DONE, [])) => Ok(Ticket::Done),
            _ => Err(bad()),
        }
    }
}

/// One open prepared statement.
#[derive(Debug)]
pub struct Open {
    pub prepared: Prepared,
    /// `$1`…`$n`'s planned types (`None`: untyped).
    pub parameter_types: Vec<Option<DataType>>,
    /// The values the client bound last (DoPut), for the next execution.
    pub parameters: Mutex<Option<Vec<ScalarValue>>>,
    /// Who made it (its bound counts against them).
    owner: String,
    /// When it was last used; unused for the idle lifetime, it is closed.
    last_used: Mutex<Instant>,
}

impl Open {
    /// The parameters to run with: those bound, or none when the statement takes none.
    pub fn bound(&self) -> Result<Option<Vec<ScalarValue>>> {
        let bound = self.parameters.locked().clone();
        match bound {
            Some(values) => Ok(Some(values)),
            None if self.parameter_types.is_empty() => Ok(None),
            None => Err(WeirError::InvalidParameter(format!(
                "the prepared statement takes {} parameter(s) and none are bound",
                self.parameter_types.len()
            ))),
        }
    }

    /// The parameter schema clients read: `$1`… with their planned types (Null where the
    /// plan leaves a parameter untyped: any value is taken).
    pub fn parameter_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.parameter_types
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    Field::new(
                        format!("${}", i + 1),
                        t.clone().unwrap_or(DataType::Null),
                        true,
                    )
                })
                .collect::<Vec<_>>(),
        ))
    }
}

/// The open prepared statements by handle.
pub struct PreparedStatements {
    open: Mutex<HashMap<Bytes, Arc<Open>>>,
    max: usize,
    per_client: usize,
    idle_lifetime: Duration,
}

impl PreparedStatements {
    pub fn new(max: usize) -> Self {
        PreparedStatements {
            open: Mutex::new(HashMap::new()),
            max,
            per_client: MAX_PREPARED_PER_CLIENT.min(max),
            idle_lifetime: Duration::from_secs(3600),
        }
    }

    /// Close statements unused for `lifetime`.
    pub fn with_idle_lifetime(mut self, lifetime: Duration) -> Self {
        self.idle_lifetime = lifetime;
        self
    }

    /// Bound each client to `n` statements.
    pub fn with_per_client(mut self, n: usize) -> Self {
        self.per_client = n;
        self
    }

    /// Keep `prepared`, made by `owner`, under a new random handle. Past the bound (the
    /// owner's or everyone's), 53400.
    pub fn insert(&self, prepared: Prepared, owner: &str) -> Result<(Bytes, Arc<Open>)> {
        let parameter_types = prepared.parameter_types()?;
        let open = Arc::new(Open {
            prepared,
            parameter_types,
            parameters: Mutex::new(None),
            owner: owner.to_string(),
            last_used: Mutex::new(Instant::now()),
        });
        let mut map = self.open.locked();
        let lifetime = self.idle_lifetime;
        map.retain(|_, o| o.last_used.locked().elapsed() < lifetime);
        if map.len() >= self.max {
            return Err(WeirError::LimitExceeded(format!(
                "too many open prepared statements ({}); close some (ClosePreparedStatement) first",
                self.max
            )));
        }
        let mine = map.values().filter(|o| o.owner == owner).count();
        if mine >= self.per_client {
            return Err(WeirError::LimitExceeded(format!(
                "too many open prepared statements for this client ({}); close some (ClosePreparedStatement) first",
                self.per_client
            )));
        }
        let handle = loop {
            let h = Bytes::from(
                rand::random::<[u8; 16]>()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>(),
            );
            if !map.contains_key(&h) {
                break h;
            }
        };
        map.insert(handle.clone(), Arc::clone(&open));
        Ok((handle, open))
    }

    pub fn get(&self, handle: &[u8]) -> Result<Arc<Open>> {
        let mut map = self.open.locked();
        let open = map.get(handle).cloned().ok_or_else(unknown_handle)?;
        let mut last = open.last_used.locked();
        if last.elapsed() >= self.idle_lifetime {
            drop(last);
            map.remove(handle);
            return Err(WeirError::InvalidParameter(
                "the prepared statement was closed after going unused for too long; prepare it again".into(),
            ));
        }
        *last = Instant::now();
        drop(last);
        Ok(open)
    }

    pub fn remove(&self, handle: &[u8]) -> Result<()> {
        self.open
            .locked()
            .remove(handle)
            .map(|_| ())
            .ok_or_else(unknown_handle)
    }
}

fn unknown_handle() -> WeirError {
    WeirError::InvalidParameter(
        "unknown prepared statement handle (closed, or never created on this server)".into(),
    )
}

/// The rows of a parameter batch as values for `$1`…, each cast to its planned type.
pub fn parameter_rows(
    batch: &RecordBatch,
    types: &[Option<DataType>],
) -> Result<Vec<Vec<ScalarValue>>> {
    if batch.num_columns() != types.len() {
        return Err(WeirError::InvalidParameter(format!(
            "the statement takes {} parameter(s), {} were bound",
            types.len(),
            batch.num_columns()
        )));
    }
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut values = Vec::with_capacity(types.len());
        for (i, (column, ty)) in batch.columns().iter().zip(types).enumerate() {
            let value = ScalarValue::try_from_array(column, row)?;
            let value = match ty {
                Some(ty) if value.data_type() != *ty => value.cast_to(ty).map_err(|e| {
                    WeirError::InvalidParameter(format!(
                        "parameter ${}: cannot use {} value {value} as {ty}: {}",
                        i + 1,
                        value.data_type(),
                        WeirError::from(e)
                    ))
                })?,
                _ => value,
            };
            values.push(value);
        }
        rows.push(values);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};

    use crate::engine::Engine;
    use crate::sql::classify;

    #[test]
    fn tickets_round_trip_and_garbage_is_refused() {
        for t in [Ticket::Query("SELECT 'é'".into()), Ticket::Done] {
            assert_eq!(Ticket::decode(&t.encode()).unwrap(), t);
        }
        assert!(Ticket::decode(b"").is_err());
        assert!(Ticket::decode(b"xyz").is_err());
        assert!(Ticket::decode(b"q\xff").is_err());
        assert!(Ticket::decode(b"dd").is_err());
    }

    #[tokio::test]
    async fn parameters_are_typed_counted_and_bounded() {
        let engine = Engine::new().await.unwrap();
        engine
            .context()
            .sql("CREATE TABLE t AS VALUES (CAST(1 AS INT), 'a')")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let prepare = |sql: &str| {
            let statement = classify(sql).unwrap();
            let engine = &engine;
            async move { engine.prepare(statement).await.unwrap() }
        };
        let statements = PreparedStatements::new(2);
        let (handle, open) = statements
            .insert(
                prepare("SELECT * FROM t WHERE column1 = $1 AND column2 = $2").await,
                "a",
            )
            .unwrap();
        assert_eq!(
            open.parameter_types,
            vec![Some(DataType::Int32), Some(DataType::Utf8)]
        );
        assert!(open.bound().is_err());
        let batch = |a: ArrayRef, b: ArrayRef| {
            RecordBatch::try_from_iter(vec![("0", a), ("1", b)]).unwrap()
        };
        let rows = parameter_rows(
            &batch(
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec!["a", "b"])),
            ),
            &open.parameter_types,
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][0], ScalarValue::Int32(Some(1)));
        let wrong = parameter_rows(
            &batch(
                Arc::new(StringArray::from(vec!["x"])),
                Arc::new(StringArray::from(vec!["a"])),
            ),
            &open.parameter_types,
        )
        .unwrap_err();
        assert!(wrong.to_string().contains("parameter $1"), "{wrong}");
        let one = RecordBatch::try_from_iter(vec![(
            "0",
            Arc::new(Int64Array::from(vec![1])) as ArrayRef,
        )])
        .unwrap();
        assert!(parameter_rows(&one, &open.parameter_types).is_err());

        statements.insert(prepare("SELECT 1").await, "b").unwrap();
        let full = statements
            .insert(prepare("SELECT 2").await, "c")
            .unwrap_err();
        assert!(
            full.to_string()
                .contains("too many open prepared statements")
        );
        assert_eq!(full.sqlstate(), "53400");
        statements.remove(&handle).unwrap();
        assert!(statements.get(&handle).is_err());
        assert!(statements.remove(&handle).is_err());
        statements.insert(prepare("SELECT 2").await, "a").unwrap();

        // Per client: one client's bound leaves others theirs; unused ones expire.
        let statements = PreparedStatements::new(10).with_per_client(2);
        for _ in 0..2 {
            statements.insert(prepare("SELECT 1").await, "a").unwrap();
        }
        let e = statements
            .insert(prepare("SELECT 1").await, "a")
            .unwrap_err();
        assert!(e.to_string().contains("for this client (2)"), "{e}");
        statements.insert(prepare("SELECT 1").await, "b").unwrap();
        // Unused past the lifetime, they are closed and free the bound.
        let statements = statements.with_idle_lifetime(Duration::ZERO);
        statements.insert(prepare("SELECT 1").await, "a").unwrap();
        let statements = PreparedStatements::new(10).with_idle_lifetime(Duration::ZERO);
        let (h, _) = statements.insert(prepare("SELECT 1").await, "a").unwrap();
        assert!(statements.get(&h).is_err());
    }
}
