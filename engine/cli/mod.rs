//! Command-line front ends beyond `run`: the scripted [`demo`], the live [`watch`]er
//! (sharing one incident [`table`] printer), and the synthetic network and storm
//! [`generate`]or.

pub mod demo;
pub mod generate;
pub mod table;
pub mod watch;
