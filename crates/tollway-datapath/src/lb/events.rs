//! Flow events (`bpf/abi/events.h`): the ring buffer the datapath writes,
//! its config, and the count of events it had no room for.

use std::path::Path;

use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use tollway_abi::{EventsConfig, TW_AGG_MEDIUM};

use super::maps::{MapsError, open_typed};

/// The event maps of a node, opened from their pins.
pub struct EventMaps {
    /// `tw_events_cfg`: entry 0.
    pub config: Array<MapData, EventsConfig>,
    /// `tw_events_lost`: per-CPU count of events the ring had no room for.
    pub lost: PerCpuArray<MapData, u64>,
}

impl EventMaps {
    /// Opens the config and the lost counter from their pins in `dir`.
    pub fn open(dir: &Path) -> Result<EventMaps, MapsError> {
        Ok(EventMaps {
            config: open_typed(dir, "tw_events_cfg")?,
            lost: open_typed(dir, "tw_events_lost")?,
        })
    }

    /// Opens the ring buffer from its pin in `dir`. Only one reader should
    /// consume it (records are consumed as they are read).
    pub fn ring(dir: &Path) -> Result<RingBuf<MapData>, MapsError> {
        open_typed(dir, "tw_events")
    }

    /// The current config.
    pub fn config(&self) -> Result<EventsConfig, MapsError> {
        self.config.get(&0, 0).map_err(|source| MapsError::Access {
            op: "lookup",
            name: "tw_events_cfg",
            source,
        })
    }

    /// Writes the config (`enabled`, aggregation `level`: `TW_AGG_*`).
    pub fn set_config(&mut self, enabled: bool, level: u32) -> Result<(), MapsError> {
        let cfg = EventsConfig {
            enabled: u32::from(enabled),
            level,
            reserved: 0,
        };
        self.config
            .set(0, cfg, 0)
            .map_err(|source| MapsError::Access {
                op: "update",
                name: "tw_events_cfg",
                source,
            })
    }

    /// Events lost because the ring was full, summed over CPUs.
    pub fn lost(&self) -> Result<u64, MapsError> {
        let v = self.lost.get(&0, 0).map_err(|source| MapsError::Access {
            op: "lookup",
            name: "tw_events_lost",
            source,
        })?;
        Ok(v.iter().sum())
    }
}

/// Monitor aggregation levels by their Cilium names.
pub const AGGREGATION_LEVELS: [(&str, u32); 4] = [
    ("none", tollway_abi::TW_AGG_NONE),
    ("low", tollway_abi::TW_AGG_LOW),
    ("medium", TW_AGG_MEDIUM),
    ("maximum", tollway_abi::TW_AGG_MAXIMUM),
];

/// The level named `name` (Cilium's names; "max" is accepted for
/// "maximum").
pub fn aggregation_level(name: &str) -> Option<u32> {
    let name = if name == "max" { "maximum" } else { name };
    AGGREGATION_LEVELS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, l)| *l)
}

/// The name of level `level`.
pub fn aggregation_name(level: u32) -> &'static str {
    AGGREGATION_LEVELS
        .iter()
        .find(|(_, l)| *l == level)
        .map_or("unknown", |(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip_by_name() {
        for (name, level) in AGGREGATION_LEVELS {
            assert_eq!(aggregation_level(name), Some(level));
            assert_eq!(aggregation_name(level), name);
        }
        assert_eq!(aggregation_level("max"), Some(tollway_abi::TW_AGG_MAXIMUM));
        assert_eq!(aggregation_level("loud"), None);
    }
}
