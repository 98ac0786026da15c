//! Background loops.

pub mod courier;
pub mod purge;
