//! The test-only fault hook: `weir_test_panic(condition)` panics on the thread that
//! evaluates it (a view's pipeline) when `condition` is true. It exists only on a server
//! started with `WEIR_TEST_FAULTS=N` (how many panics it causes in all; 0: none).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::exec_err;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::SessionContext;

/// Panics left to cause, read from `WEIR_TEST_FAULTS` once; `None` without it.
static LEFT: std::sync::OnceLock<Option<AtomicI64>> = std::sync::OnceLock::new();

fn left() -> Option<&'static AtomicI64> {
    LEFT.get_or_init(|| {
        std::env::var("WEIR_TEST_FAULTS")
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .map(|n| AtomicI64::new(n.max(0)))
    })
    .as_ref()
}

/// Register `weir_test_panic` on `ctx` when `WEIR_TEST_FAULTS` is set.
pub fn install(ctx: &SessionContext) {
    let Some(left) = left() else {
        return;
    };
    ctx.register_udf(create_udf(
        "weir_test_panic",
        vec![DataType::Boolean],
        DataType::Boolean,
        Volatility::Volatile,
        Arc::new(move |args: &[ColumnarValue]| {
            let array = match &args[0] {
                ColumnarValue::Array(a) => Arc::clone(a),
                ColumnarValue::Scalar(s) => s.to_array()?,
            };
            let Some(values) = array.as_any().downcast_ref::<BooleanArray>() else {
                return exec_err!("weir_test_panic takes a boolean");
            };
            let hit = values.iter().any(|v| v == Some(true));
            if hit && left.fetch_sub(1, Ordering::SeqCst) > 0 {
                panic!("weir_test_panic: a fault injected for a test");
            }
            Ok(ColumnarValue::Array(Arc::new(values.clone())))
        }),
    ));
}
