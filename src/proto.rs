//! The prost-generated types of `proto/tickrelay.proto` (package `tickrelay.v1`).
//!
//! Generated code is confined here so its lint exceptions stay here.
#![allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all
)]

include!(concat!(env!("OUT_DIR"), "/tickrelay.v1.rs"));
