//! Materialized views and the sources they read: a source's definition (`source`), a
//! view compiled from its query (`plan`), run by its own pipeline (`pipeline`) and read as
//! a table (`state`); the catalog (`crate::catalog`) creates, flushes and drops them.

pub mod changes;
pub mod join;
pub mod pipeline;
pub mod plan;
pub mod query;
pub mod source;
pub mod state;
pub mod stats;
pub mod table;
pub mod upstream;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::error::{Result, WeirError};
use crate::sql::streaming::CreateMaterializedView;
use crate::view::source::parse_duration;
use crate::view::state::View;
use crate::window::assign::nanos_per;

/// The materialized views by name, shared with the table functions (a view can be windowed).
pub type Views = Arc<RwLock<BTreeMap<String, Arc<View>>>>;

/// A view's `retention` option in its time column's unit; an error when it has nothing
/// to expire (running totals) or is not a duration.
pub fn retention(
    create: &CreateMaterializedView,
    compiled: &plan::ViewPlan,
) -> Result<Option<i64>> {
    let Some(text) = create.options.get("retention") else {
        return Ok(None);
    };
    let appends = matches!(
        compiled.operator,
        plan::Operator::Append | plan::Operator::Join(_)
    );
    if compiled.operator.window().is_none() && !appends {
        return Err(WeirError::InvalidParameter(format!(
            "option 'retention' applies to views without aggregation or with windows; \
             \"{}\" keeps running totals, which have nothing to expire",
            create.name
        )));
    }
    let d = parse_duration(text).ok_or_else(|| {
        WeirError::InvalidParameter(format!(
            "option 'retention' must be a duration such as '1h', '30 minutes' or '10s', got '{text}'"
        ))
    })?;
    Ok(Some(
        d.as_nanos() as i64 / nanos_per(pipeline::plan_time_unit(compiled)),
    ))
}

/// A definition on one line, for `SHOW`, the catalogs and the checkpoint manifest, with
/// its secrets hidden ([`crate::sql::redact`]).
pub(crate) fn one_line(text: &str) -> String {
    crate::sql::redact::statement(text)
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
