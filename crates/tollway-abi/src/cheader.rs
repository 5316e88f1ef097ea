//! Cross-checks of every mirror against the C headers in `bpf/abi/`.

use std::path::PathBuf;

use crate::*;

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

/// Check one mirror: fields, offsets, comments, size, static asserts.
fn check(c_header: &str, c_name: &str, rust_layout: &[(&str, usize, usize)], rust_size: usize) {
    let header = abi_header(c_header);
    let fields = parse_c_struct(&header, c_name);
    let (layout, size) = c_layout(c_name, &fields).unwrap_or_else(|e| panic!("{e}"));
    let rust: Vec<(String, usize, usize)> = rust_layout
        .iter()
        .map(|&(n, o, s)| (n.to_owned(), o, s))
        .collect();
    assert_eq!(
        layout, rust,
        "struct {c_name} in {c_header}: (field, offset, size) of C vs Rust"
    );
    assert_eq!(size, rust_size, "size of struct {c_name}");
    let covered: usize = rust_layout.iter().map(|f| f.2).sum();
    assert_eq!(
        covered, rust_size,
        "struct {c_name}: the Rust mirror has padding"
    );
    let line = format!("TW_ABI_ASSERT_SIZE(struct {c_name}, {size});");
    assert!(header.contains(&line), "missing `{line}` in {c_header}");
    for (name, off, _) in rust_layout {
        let line = format!("TW_ABI_ASSERT_OFFSET(struct {c_name}, {name}, {off});");
        assert!(header.contains(&line), "missing `{line}` in {c_header}");
    }
}

macro_rules! check_all {
    ($($ty:ty),* $(,)?) => {
        $( check(<$ty>::C_HEADER, <$ty>::C_NAME, <$ty>::LAYOUT, std::mem::size_of::<$ty>()); )*
    };
}

#[test]
fn abi_layouts() {
    check_all!(
        TwStats,
        Lb4Key,
        Lb4Service,
        Lb4Backend,
        Lb4Revnat,
        Lb4AffinityKey,
        LbAffinity,
        Lb4ReverseSkKey,
        Lb4ReverseSk,
        Lb4SrcRangeKey,
        Config,
        Ct4Key,
        CtEntry,
        Nat4Entry,
        IpcacheKey,
        IpcacheEntry,
        Endpoint,
        PolicyKey,
        PolicyEntry,
        EventsConfig,
        Event,
        Frag4Key,
        Frag4Entry,
    );
}

#[test]
fn abi_constants() {
    for (header, consts) in [
        STATS_CONSTS,
        LB_CONSTS,
        CT_CONSTS,
        DROP_CONSTS,
        POLICY_CONSTS,
        EVENTS_CONSTS,
        FRAG_CONSTS,
    ] {
        let text = abi_header(header);
        for (name, value) in consts {
            assert_eq!(c_define(&text, name), *value, "#define {name} in {header}");
        }
    }
}

#[test]
fn every_abi_struct_is_mirrored() {
    // A struct added to a header without a mirror fails here.
    let mirrored = [
        TwStats::C_NAME,
        Lb4Key::C_NAME,
        Lb4Service::C_NAME,
        Lb4Backend::C_NAME,
        Lb4Revnat::C_NAME,
        Lb4AffinityKey::C_NAME,
        LbAffinity::C_NAME,
        Lb4ReverseSkKey::C_NAME,
        Lb4ReverseSk::C_NAME,
        Lb4SrcRangeKey::C_NAME,
        Config::C_NAME,
        Ct4Key::C_NAME,
        CtEntry::C_NAME,
        Nat4Entry::C_NAME,
        IpcacheKey::C_NAME,
        IpcacheEntry::C_NAME,
        Endpoint::C_NAME,
        PolicyKey::C_NAME,
        PolicyEntry::C_NAME,
        EventsConfig::C_NAME,
        Event::C_NAME,
        Frag4Key::C_NAME,
        Frag4Entry::C_NAME,
    ];
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bpf/abi");
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("struct ")
                && let Some(name) = rest.strip_suffix(" {")
            {
                assert!(
                    mirrored.contains(&name),
                    "struct {name} in {:?} has no Rust mirror",
                    entry.file_name()
                );
            }
        }
    }
}

#[test]
fn drop_reasons_match_c() {
    let def = abi_header("drop_reasons.def");
    let n = def
        .lines()
        .filter(|l| l.starts_with("TW_DROP_REASON("))
        .count();
    assert_eq!(n, DropReason::ALL.len());
    for r in DropReason::ALL {
        assert!(
            def.contains(&format!("TW_DROP_REASON({}, {},", r.name(), r.code())),
            "{r:?}"
        );
    }
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
    let (layout, size) = c_layout("ok", &parse_c_struct(explicit, "ok")).expect("explicit padding");
    assert_eq!(size, 8);
    assert_eq!(layout[1], ("pad_1".to_owned(), 1, 3));
}
