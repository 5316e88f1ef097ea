//! The service load balancer's datapath: typed access to its pinned maps
//! ([`LbMaps`]) and the loader that puts its programs in place on a node
//! ([`NodeDatapath`]).

mod loader;
mod maps;

pub use loader::{LoadError, LoadOptions, NodeDatapath, ProgramState, SOCK_PROGRAMS, TC_PROGRAMS};
pub use maps::{LbMaps, MAP_NAMES, MapFill, MapsError};
