//! Background loops.

pub mod purge;
