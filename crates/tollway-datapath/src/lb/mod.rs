//! The service load balancer's datapath: typed access to its pinned maps
//! ([`LbMaps`], and [`PolicyMaps`] for identities, endpoints and policy) and
//! the loader that puts its programs in place on a node ([`NodeDatapath`]).

mod events;
mod loader;
mod maps;
mod policy;

pub use events::{AGGREGATION_LEVELS, EventMaps, aggregation_level, aggregation_name};
pub use loader::{LoadError, LoadOptions, NodeDatapath, ProgramState, SOCK_PROGRAMS, TC_PROGRAMS};
pub use maps::{LbMaps, MAP_NAMES, MapFill, MapsError, SrcRangePrefix};
pub use policy::{PolicyMaps, PolicyPrefix, PolicyTable, PolicyTrie};
