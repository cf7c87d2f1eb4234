//! Connectors: where records come from. Each one turns its input into Arrow record
//! batches that carry an event-time column; decoding, windows and views come after.

pub mod datagen;
