//! From the BPF maps to the planner's model and back: the agent reads the
//! maps once at start (adopting whatever an earlier agent left, half-written
//! states included: the planner repairs them), then keeps a mirror that it
//! updates with every operation it executes.

use aya::maps::MapError;
use tollway_abi::{Lb4Backend, Lb4Key, Lb4Revnat, Lb4Service, be16, be32, ip_of, port_of};
use tollway_datapath::lb::{LbMaps, MapsError};
use tollway_lb::{
    Algorithm, Applied, AppliedBackend, AppliedService, BackendAddr, Frontend, Op, Proto, Scope,
    SourceRange,
};

/// The map key of a frontend's slot.
pub fn key_of(f: &Frontend, slot: u16) -> Lb4Key {
    Lb4Key {
        address: be32(f.address),
        dport: be16(f.port),
        backend_slot: slot,
        proto: f.proto.ipproto(),
        scope: f.scope.abi(),
        pad: [0; 2],
    }
}

/// The frontend of a map key.
pub fn frontend_of(k: &Lb4Key) -> Option<Frontend> {
    Some(Frontend {
        address: ip_of(k.address),
        port: port_of(k.dport),
        proto: Proto::from_ipproto(k.proto)?,
        scope: Scope::from_abi(k.scope).unwrap_or(Scope::External),
    })
}

fn access(op: &'static str, name: &'static str) -> impl Fn(MapError) -> MapsError {
    move |source| MapsError::Access { op, name, source }
}

/// Read what the maps hold into the planner's model.
pub fn read_applied(maps: &LbMaps) -> Result<Applied, MapsError> {
    let mut applied = Applied::default();
    for item in maps.services.iter() {
        let (k, v) = item.map_err(access("iterate", "tw_lb4_services"))?;
        let Some(f) = frontend_of(&k) else { continue };
        if k.backend_slot == 0 {
            applied.services.insert(
                f,
                AppliedService {
                    count: v.count,
                    rev_nat_index: v.rev_nat_index,
                    flags: v.flags,
                    algorithm: Algorithm::from_abi(v.algorithm).unwrap_or(Algorithm::Random),
                    affinity_timeout: v.affinity_timeout,
                },
            );
        } else {
            applied.slots.insert((f, k.backend_slot), v.backend_id);
        }
    }
    for item in maps.backends.iter() {
        let (id, b) = item.map_err(access("iterate", "tw_lb4_backends"))?;
        let Some(proto) = Proto::from_ipproto(b.proto) else {
            continue;
        };
        applied.backends.insert(
            id,
            AppliedBackend {
                addr: BackendAddr {
                    address: ip_of(b.address),
                    port: port_of(b.port),
                    proto,
                },
                flags: b.flags,
            },
        );
    }
    // The revnat map stores address and port only: protocol and scope come
    // from the master that points at the index.
    for item in maps.revnat.iter() {
        let (index, r) = item.map_err(access("iterate", "tw_lb4_revnat"))?;
        let Ok(index) = u16::try_from(index) else {
            continue;
        };
        let owner = applied
            .services
            .iter()
            .find(|(_, m)| m.rev_nat_index == index)
            .map(|(f, _)| *f);
        let frontend = owner.unwrap_or(Frontend {
            address: ip_of(r.address),
            port: port_of(r.port),
            proto: Proto::Tcp,
            scope: Scope::External,
        });
        applied.revnat.insert(index, frontend);
    }
    let indexes: Vec<u16> = maps
        .maglev
        .keys()
        .filter_map(Result::ok)
        .filter_map(|k| u16::try_from(k).ok())
        .collect();
    for index in indexes {
        if let Some(table) = maps.maglev_table(index)? {
            applied.maglev.insert(index, table);
        }
    }
    for (index, address, prefix_len) in maps.src_ranges()? {
        if let Some(range) = SourceRange::new(address, prefix_len) {
            applied.src_ranges.insert((index, range));
        }
    }
    Ok(applied)
}

/// Execute one planned operation on the maps.
pub fn execute(maps: &mut LbMaps, op: &Op) -> Result<(), MapsError> {
    let ignore_missing = |r: Result<(), MapError>, name: &'static str| match r {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(source) => Err(MapsError::Access {
            op: "delete",
            name,
            source,
        }),
    };
    match op {
        Op::UpsertBackend { id, backend } => maps
            .backends
            .insert(
                id,
                Lb4Backend {
                    address: be32(backend.addr.address),
                    port: be16(backend.addr.port),
                    proto: backend.addr.proto.ipproto(),
                    flags: backend.flags,
                },
                0,
            )
            .map_err(access("update", "tw_lb4_backends")),
        Op::DeleteBackend { id } => ignore_missing(maps.backends.remove(id), "tw_lb4_backends"),
        Op::UpsertRevNat { index, frontend } => maps
            .revnat
            .insert(
                u32::from(*index),
                Lb4Revnat {
                    address: be32(frontend.address),
                    port: be16(frontend.port),
                    pad: 0,
                },
                0,
            )
            .map_err(access("update", "tw_lb4_revnat")),
        Op::DeleteRevNat { index } => {
            ignore_missing(maps.revnat.remove(&u32::from(*index)), "tw_lb4_revnat")
        }
        Op::UpsertSlot {
            frontend,
            slot,
            backend_id,
        } => maps
            .services
            .insert(
                key_of(frontend, *slot),
                Lb4Service {
                    backend_id: *backend_id,
                    ..Default::default()
                },
                0,
            )
            .map_err(access("update", "tw_lb4_services")),
        Op::DeleteSlot { frontend, slot } => ignore_missing(
            maps.services.remove(&key_of(frontend, *slot)),
            "tw_lb4_services",
        ),
        Op::UpsertMaster {
            frontend,
            count,
            rev_nat_index,
            flags,
            algorithm,
            affinity_timeout,
        } => maps
            .services
            .insert(
                key_of(frontend, 0),
                Lb4Service {
                    backend_id: 0,
                    count: *count,
                    rev_nat_index: *rev_nat_index,
                    flags: *flags,
                    algorithm: algorithm.abi(),
                    pad: 0,
                    affinity_timeout: *affinity_timeout,
                },
                0,
            )
            .map_err(access("update", "tw_lb4_services")),
        Op::DeleteMaster { frontend } => ignore_missing(
            maps.services.remove(&key_of(frontend, 0)),
            "tw_lb4_services",
        ),
        Op::SetMaglev { index, table } => maps.set_maglev(*index, table),
        Op::DeleteMaglev { index } => maps.delete_maglev(*index),
        Op::UpsertSrcRange { index, range } => {
            maps.set_src_range(*index, range.network(), range.prefix_len())
        }
        Op::DeleteSrcRange { index, range } => {
            maps.delete_src_range(*index, range.network(), range.prefix_len())
        }
    }
}
