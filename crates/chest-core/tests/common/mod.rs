//! Helpers shared by the chest's test binaries (each includes this module
//! with `mod common;` and uses what it needs).
#![allow(dead_code)]

pub mod gate;
