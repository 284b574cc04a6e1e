//! Command-line front ends beyond `run`: the scripted [`demo`], the live [`watch`]er
//! (sharing one incident [`table`] printer), the synthetic network and storm
//! [`generate`]or, the end-to-end load [`bench`], and its [`soak`] of the core alone.

pub mod bench;
pub mod demo;
pub mod generate;
pub mod soak;
pub mod table;
pub mod watch;
