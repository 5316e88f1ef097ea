//! Generates the drop-reason table from `bpf/abi/drop_reasons.def`, the one
//! place drop reasons are defined (C includes the same file).

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let def = manifest.join("../../bpf/abi/drop_reasons.def");
    println!("cargo:rerun-if-changed={}", def.display());
    let text = match std::fs::read_to_string(&def) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: tollway-abi: cannot read {}: {e}", def.display());
            std::process::exit(1);
        }
    };
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(rest) = line.trim().strip_prefix("TW_DROP_REASON(") else {
            continue;
        };
        let parsed = (|| {
            let rest = rest.strip_suffix(')')?;
            let (name, rest) = rest.split_once(',')?;
            let (num, rest) = rest.split_once(',')?;
            let (hubble, desc) = rest.split_once(',')?;
            let desc = desc.trim().strip_prefix('"')?.strip_suffix('"')?;
            Some((
                name.trim().to_string(),
                num.trim().parse::<u8>().ok()?,
                hubble.trim().to_string(),
                desc.to_string(),
            ))
        })();
        match parsed {
            Some(r) => rows.push(r),
            None => {
                eprintln!(
                    "error: tollway-abi: {}:{}: bad TW_DROP_REASON line: {line}",
                    def.display(),
                    i + 1
                );
                std::process::exit(1);
            }
        }
    }
    let camel = |s: &str| -> String {
        s.split('_')
            .map(|w| {
                let mut c = w.chars();
                match c.next() {
                    Some(f) => {
                        f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase()
                    }
                    None => String::new(),
                }
            })
            .collect()
    };
    let mut out = String::new();
    out.push_str("/// Why the datapath dropped a packet (Cilium's numbers), generated from\n/// `bpf/abi/drop_reasons.def`.\n#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]\n#[repr(u8)]\npub enum DropReason {\n");
    for (name, num, _, desc) in &rows {
        let _ = writeln!(
            out,
            "    /// {desc} (`TW_DROP_{name}`).\n    {} = {num},",
            camel(name)
        );
    }
    out.push_str("}\n\nimpl DropReason {\n    /// Every reason, in table order.\n    pub const ALL: &'static [DropReason] = &[\n");
    for (name, _, _, _) in &rows {
        let _ = writeln!(out, "        DropReason::{},", camel(name));
    }
    out.push_str("    ];\n\n    /// The reason with this number.\n    pub fn from_code(code: u8) -> Option<DropReason> {\n        match code {\n");
    for (name, num, _, _) in &rows {
        let _ = writeln!(
            out,
            "            {num} => Some(DropReason::{}),",
            camel(name)
        );
    }
    out.push_str("            _ => None,\n        }\n    }\n\n    /// `POLICY_DENIED`, as in Cilium's metrics labels.\n    pub fn name(self) -> &'static str {\n        match self {\n");
    for (name, _, _, _) in &rows {
        let _ = writeln!(
            out,
            "            DropReason::{} => \"{name}\",",
            camel(name)
        );
    }
    out.push_str("        }\n    }\n\n    /// The description Hubble prints (`drop_reason_desc`).\n    pub fn description(self) -> &'static str {\n        match self {\n");
    for (name, _, _, desc) in &rows {
        let _ = writeln!(out, "            DropReason::{} => {desc:?},", camel(name));
    }
    out.push_str("        }\n    }\n\n    /// The name in Hubble's flow API (`drop_reason_desc`, `hubble_drop_total`'s `reason`).\n    pub fn hubble_name(self) -> &'static str {\n        match self {\n");
    for (name, _, hubble, _) in &rows {
        let _ = writeln!(
            out,
            "            DropReason::{} => {hubble:?},",
            camel(name)
        );
    }
    out.push_str("        }\n    }\n\n    /// The number.\n    pub fn code(self) -> u8 {\n        self as u8\n    }\n}\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("drop_reasons.rs");
    if let Err(e) = std::fs::write(&dest, out) {
        eprintln!("error: tollway-abi: cannot write {}: {e}", dest.display());
        std::process::exit(1);
    }
}
