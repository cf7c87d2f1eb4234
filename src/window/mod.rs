//! Event time, windows and the state of operators: `assign` puts events into `TUMBLE` /
//! `HOP` windows, `watermark` tracks how far event time has progressed per partition,
//! `operator` is what every operator's state does, `aggregate` keeps the incremental
//! per-(window, key) aggregation state of a view, and `buffer` keeps each open window's
//! rows for window functions over them.

pub mod aggregate;
pub mod assign;
pub mod buffer;
pub mod log;
pub mod operator;
pub mod watermark;

pub use assign::{WINDOW_END, WINDOW_START, WindowSpec};
