//! The test kit that tests and benches share: the in-process service ([`app::TestApp`]), the
//! real binary as a child process ([`process::BinaryApp`]), a throwaway PostgreSQL server
//! ([`pg`]), fault injection as a store wrapper ([`fault_store`]), the `/events` page walker
//! ([`pages`]), shared loads and checks ([`workload`]) and the one way to wait for
//! something ([`eventually`]).
//!
//! Each test binary or bench includes this module and uses part of it.
#![allow(dead_code, unused_macros, unused_imports)]

pub(crate) mod app;
pub(crate) mod eventually;
pub(crate) mod fault_store;
pub(crate) mod pages;
pub(crate) mod pg;
pub(crate) mod process;
pub(crate) mod workload;
