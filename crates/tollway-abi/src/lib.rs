//! `#[repr(C)]` mirrors of the structs and constants shared with the eBPF
//! programs.
//!
//! The C side lives in `bpf/abi/*.h` and is the only place layouts are
//! defined; this crate mirrors it. Every mirror is checked three ways so the
//! two sides cannot drift:
//!
//! * each struct's `LAYOUT` is computed by the compiler (`offset_of!`),
//! * `_Static_assert`s in the C header are checked by clang when the programs
//!   are built,
//! * unit tests parse the C headers and compare fields (names, order,
//!   `offset N` comments, natural C layout, the static asserts) and every
//!   `#define` with the Rust mirror (see `cheader.rs` and
//!   `bpf/abi/common.h` for the rules).
//!
//! Drop reasons are generated from `bpf/abi/drop_reasons.def` by the build
//! script, so C, metrics and CLI share one table.
//!
//! With the `aya` feature, the mirrors implement `aya::Pod` so they can be
//! used as map keys and values (every layout is padding-free, which the
//! tests prove).

/// Define a mirror struct and its compiler-computed layout.
macro_rules! abi_struct {
    (
        $(#[$m:meta])*
        pub struct $name:ident = $cname:literal in $header:literal {
            $( $(#[$fm:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $name {
            $( $(#[$fm])* pub $field: $ty ),*
        }

        impl $name {
            /// `(field, offset, size)` in declaration order, as laid out by rustc.
            pub const LAYOUT: &'static [(&'static str, usize, usize)] = &[
                $( (stringify!($field), core::mem::offset_of!($name, $field), core::mem::size_of::<$ty>()) ),*
            ];
            /// The C struct's name.
            pub const C_NAME: &'static str = $cname;
            /// The header under `bpf/abi/` that defines it.
            pub const C_HEADER: &'static str = $header;
        }

        // SAFETY: `#[repr(C)]`, made only of integers and integer arrays,
        // with no padding (the `abi_layouts` tests check that the fields
        // cover the size exactly and match the C header); every bit pattern
        // is a valid value.
        #[cfg(feature = "aya")]
        unsafe impl aya::Pod for $name {}
    };
}

/// Define constants mirrored from a header, listed for the cross-check test.
macro_rules! abi_consts {
    ($list:ident in $header:literal { $( $(#[$m:meta])* $name:ident : $ty:ty = $value:expr ),* $(,)? }) => {
        $( $(#[$m])* pub const $name: $ty = $value; )*
        /// `(name, value)` of every constant above, with its header.
        pub const $list: (&str, &[(&str, u64)]) = ($header, &[ $( (stringify!($name), $value as u64) ),* ]);
    };
}

pub mod ct;
pub mod drop;
pub mod events;
pub mod frag;
pub mod lb;
pub mod policy;
mod stats;

pub use ct::*;
pub use drop::*;
pub use events::*;
pub use frag::*;
pub use lb::*;
pub use policy::*;
pub use stats::*;

#[cfg(test)]
mod cheader;
