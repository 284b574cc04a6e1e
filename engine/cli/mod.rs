//! Command-line front ends beyond `run`: the scripted [`demo`] and the live [`watch`]er,
//! sharing one incident [`table`] printer.

pub mod demo;
pub mod table;
pub mod watch;
