//! Command-line front ends beyond `run`: the scripted [`demo`], the live [`watch`]er
//! (sharing one incident [`table`] printer), the synthetic network and storm
//! [`generate`]or, and the end-to-end load [`bench`].

pub mod bench;
pub mod demo;
pub mod generate;
pub mod table;
pub mod watch;
