//! One module per command family.

pub mod bench;
pub mod datapath;
pub mod demo;
pub mod lab;
pub mod observe;
pub mod policy;
pub mod resources;
pub mod workload;
