//! Command-line front ends beyond `run`: the scripted [`demo`], the live [`watch`]er
//! (sharing one incident [`table`] printer), the synthetic network and storm
//! [`generate`]or, the end-to-end load [`bench`], its [`soak`] of the core alone, and the
//! live [`topology`] and [`maintenance`] windows of a running engine.

pub mod bench;
pub mod demo;
pub mod generate;
pub mod maintenance;
pub mod soak;
pub mod table;
pub mod topology;
pub mod watch;
