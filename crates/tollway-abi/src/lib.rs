//! `#[repr(C)]` mirrors of the structs and constants shared with the eBPF
//! programs.
//!
//! The C side lives in `bpf/abi/*.h` and is the only place layouts are
//! defined; this crate mirrors it by hand. Every mirror is checked three ways
//! so the two sides cannot drift:
//!
//! * compile-time `assert!`s on size and field offsets in this file,
//! * `_Static_assert`s in the C header (checked by clang when the programs
//!   are built),
//! * unit tests that parse the C header and compare its fields (names, order,
//!   `offset N` comments, natural C layout) and `#define`s with the Rust
//!   mirror (see `tests` below and `bpf/abi/common.h` for the rules).
//!
//! With the `aya` feature, the mirrors implement [`aya::Pod`] so they can be
//! used as map keys and values.

use std::mem::{offset_of, size_of};

/// Key of the single entry of a per-CPU `tw_stats` array map
/// (`TW_STATS_KEY_TOTAL` in `bpf/abi/stats.h`).
pub const TW_STATS_KEY_TOTAL: u32 = 0;

/// Packet and byte counters: one per-CPU value of a `tw_stats` map
/// (`struct tw_stats` in `bpf/abi/stats.h`).
///
/// Each CPU has its own copy; user space sums them (see [`TwStats::merged`]).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TwStats {
    /// Packets seen (offset 0).
    pub packets: u64,
    /// Sum of `skb->len`, i.e. bytes including the L2 header (offset 8).
    pub bytes: u64,
}

const _: () = {
    assert!(size_of::<TwStats>() == 16);
    assert!(offset_of!(TwStats, packets) == 0);
    assert!(offset_of!(TwStats, bytes) == 8);
};

impl TwStats {
    /// All counters zero.
    pub const ZERO: Self = Self {
        packets: 0,
        bytes: 0,
    };

    /// Returns the field-wise sum of `self` and `other`.
    ///
    /// Counters wrap like the kernel-side `u64` counters do.
    #[must_use]
    pub const fn merged(self, other: Self) -> Self {
        Self {
            packets: self.packets.wrapping_add(other.packets),
            bytes: self.bytes.wrapping_add(other.bytes),
        }
    }
}

// SAFETY: `TwStats` is `#[repr(C)]`, made only of `u64`s, has no padding
// (size and offsets are asserted above and checked against the C header in
// the tests), and every bit pattern is a valid value.
#[cfg(feature = "aya")]
unsafe impl aya::Pod for TwStats {}

#[cfg(test)]
mod tests {
    use super::*;

    use std::path::PathBuf;

    /// Expected layout of `TwStats`: (field, offset, size), in order.
    const TW_STATS_SIZE: usize = 16;
    const TW_STATS_FIELDS: &[(&str, usize, usize)] = &[("packets", 0, 8), ("bytes", 8, 8)];

    fn abi_header(name: &str) -> String {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../bpf/abi")
            .join(name);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read ABI header {}: {e}", path.display()))
    }

    /// A field of a C struct as declared in a `bpf/abi` header.
    #[derive(Debug, PartialEq, Eq)]
    struct CField {
        name: String,
        /// Size of one element.
        elem_size: usize,
        /// Array length (1 for scalars).
        count: usize,
        /// Offset from the mandatory `offset N` comment.
        commented_offset: usize,
    }

    fn c_type_size(ty: &str) -> Option<usize> {
        match ty {
            "__u8" | "__s8" => Some(1),
            "__u16" | "__s16" | "__be16" | "__le16" => Some(2),
            "__u32" | "__s32" | "__be32" | "__le32" => Some(4),
            "__u64" | "__s64" | "__be64" | "__le64" => Some(8),
            _ => None,
        }
    }

    /// Parses `struct <name> { ... };` out of a header, following the ABI
    /// rules in `bpf/abi/common.h` (one fixed-width field per line, each with
    /// an `offset N` comment).
    fn parse_c_struct(header: &str, name: &str) -> Vec<CField> {
        let opening = format!("struct {name} {{");
        let start = header
            .find(&opening)
            .unwrap_or_else(|| panic!("`{opening}` not found in header"));
        let body = &header[start + opening.len()..];
        let end = body
            .find("};")
            .unwrap_or_else(|| panic!("struct {name} is not closed"));
        let mut fields = Vec::new();
        for line in body[..end].lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with("/*") || line.starts_with('*') {
                continue;
            }
            let (decl, comment) = line
                .split_once(';')
                .unwrap_or_else(|| panic!("struct {name}: not a field declaration: {line}"));
            let mut words = decl.split_whitespace();
            let ty = words.next().expect("field type");
            let declarator = words.next().expect("field name");
            assert!(
                words.next().is_none(),
                "struct {name}: odd declaration: {line}"
            );
            let elem_size = c_type_size(ty)
                .unwrap_or_else(|| panic!("struct {name}: non fixed-width type `{ty}`: {line}"));
            let (field, count) = match declarator.split_once('[') {
                Some((field, rest)) => {
                    let n = rest.trim_end_matches(']');
                    (field, n.parse().expect("array length"))
                }
                None => (declarator, 1),
            };
            let commented_offset = comment
                .split("offset ")
                .nth(1)
                .and_then(|rest| {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    digits.parse().ok()
                })
                .unwrap_or_else(|| panic!("struct {name}.{field}: missing `offset N` comment"));
            fields.push(CField {
                name: field.to_owned(),
                elem_size,
                count,
                commented_offset,
            });
        }
        fields
    }

    /// (name, offset, size) of each field, in order.
    type Layout = Vec<(String, usize, usize)>;

    /// Lays out C fields with natural alignment, as clang does for BPF, and
    /// returns the fields' layout plus the struct size. Implicit padding,
    /// which the ABI rules forbid, and wrong `offset` comments are errors.
    fn c_layout(name: &str, fields: &[CField]) -> Result<(Layout, usize), String> {
        let mut offset = 0;
        let mut align = 1;
        let mut out = Vec::new();
        for f in fields {
            if offset % f.elem_size != 0 {
                return Err(format!(
                    "struct {name}.{}: implicit padding before the field (make it explicit)",
                    f.name
                ));
            }
            if f.commented_offset != offset {
                return Err(format!(
                    "struct {name}.{}: `offset {}` comment, but the C layout puts it at {offset}",
                    f.name, f.commented_offset
                ));
            }
            align = align.max(f.elem_size);
            out.push((f.name.clone(), offset, f.elem_size * f.count));
            offset += f.elem_size * f.count;
        }
        if offset % align != 0 {
            return Err(format!(
                "struct {name}: implicit tail padding (make it explicit)"
            ));
        }
        Ok((out, offset))
    }

    /// Returns the value of `#define NAME value` in a header.
    fn c_define(header: &str, name: &str) -> u64 {
        header
            .lines()
            .find_map(|line| {
                let mut words = line.split_whitespace();
                (words.next() == Some("#define") && words.next() == Some(name))
                    .then(|| words.next())
                    .flatten()
            })
            .map(|value| match value.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).expect("hex define"),
                None => value.parse().expect("decimal define"),
            })
            .unwrap_or_else(|| panic!("#define {name} not found"))
    }

    #[test]
    fn tw_stats_rust_layout() {
        assert_eq!(size_of::<TwStats>(), TW_STATS_SIZE);
        assert_eq!(std::mem::align_of::<TwStats>(), 8);
        let rust = [
            ("packets", offset_of!(TwStats, packets), size_of::<u64>()),
            ("bytes", offset_of!(TwStats, bytes), size_of::<u64>()),
        ];
        assert_eq!(rust.len(), TW_STATS_FIELDS.len());
        for ((name, off, size), (ename, eoff, esize)) in rust.iter().zip(TW_STATS_FIELDS) {
            assert_eq!((name, off, size), (ename, eoff, esize));
        }
    }

    #[test]
    fn tw_stats_matches_c_header() {
        let header = abi_header("stats.h");
        let fields = parse_c_struct(&header, "tw_stats");
        let (layout, size) = c_layout("tw_stats", &fields).expect("struct tw_stats layout");
        assert_eq!(size, TW_STATS_SIZE, "C size of struct tw_stats");
        let expected: Vec<(String, usize, usize)> = TW_STATS_FIELDS
            .iter()
            .map(|&(n, o, s)| (n.to_owned(), o, s))
            .collect();
        assert_eq!(
            layout, expected,
            "struct tw_stats fields (name, offset, size)"
        );
        assert!(header.contains("TW_ABI_ASSERT_SIZE(struct tw_stats, 16);"));
        for (name, off, _) in TW_STATS_FIELDS {
            let line = format!("TW_ABI_ASSERT_OFFSET(struct tw_stats, {name}, {off});");
            assert!(header.contains(&line), "missing `{line}`");
        }
    }

    #[test]
    fn stats_constants_match_c_header() {
        let header = abi_header("stats.h");
        assert_eq!(
            c_define(&header, "TW_STATS_KEY_TOTAL"),
            u64::from(TW_STATS_KEY_TOTAL)
        );
    }

    #[test]
    fn merged_adds_fieldwise_and_wraps() {
        let a = TwStats {
            packets: 1,
            bytes: u64::MAX,
        };
        let b = TwStats {
            packets: 2,
            bytes: 2,
        };
        assert_eq!(
            a.merged(b),
            TwStats {
                packets: 3,
                bytes: 1
            }
        );
        assert_eq!(TwStats::ZERO.merged(b), b);
    }

    #[test]
    fn header_checker_rejects_implicit_padding_and_wrong_comments() {
        let holey = "struct bad {\n\t__u8 a; /* offset 0 */\n\t__u32 b; /* offset 4 */\n};";
        let err = c_layout("bad", &parse_c_struct(holey, "bad")).expect_err("hole");
        assert!(err.contains("implicit padding"), "{err}");

        let tail = "struct bad {\n\t__u32 a; /* offset 0 */\n\t__u8 b[2]; /* offset 4 */\n};";
        let err = c_layout("bad", &parse_c_struct(tail, "bad")).expect_err("tail");
        assert!(err.contains("tail padding"), "{err}");

        let lying = "struct bad {\n\t__u32 a; /* offset 0 */\n\t__u32 b; /* offset 8 */\n};";
        let err = c_layout("bad", &parse_c_struct(lying, "bad")).expect_err("comment");
        assert!(err.contains("comment"), "{err}");

        let explicit = "struct ok {\n\t__u8 a; /* offset 0 */\n\t__u8 pad_1[3]; /* offset 1 */\n\t__u32 b; /* offset 4 */\n};";
        let (layout, size) =
            c_layout("ok", &parse_c_struct(explicit, "ok")).expect("explicit padding");
        assert_eq!(size, 8);
        assert_eq!(layout[1], ("pad_1".to_owned(), 1, 3));
    }
}
