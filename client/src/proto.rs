//! The relay's protobuf schema (`proto/tickrelay.proto`, package `tickrelay.v1`), compiled by
//! `build.rs`.
#![allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    dead_code
)]

include!(concat!(env!("OUT_DIR"), "/tickrelay.v1.rs"));
