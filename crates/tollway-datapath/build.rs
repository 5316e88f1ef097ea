//! Compiles every `bpf/progs/*.c` into an eBPF object in `OUT_DIR` with clang
//! and generates `OUT_DIR/objects.rs`, the table of embedded objects used by
//! `tollway_datapath::program_object`.
//!
//! Environment:
//! * `CLANG`: clang binary to use (default `clang`).
//! * `TOLLWAY_BPF_ARCH_INCLUDE`: directory with the kernel's `asm/` headers
//!   (default: `/usr/include/<multiarch triple>`, derived from the target).

use std::{
    env,
    ffi::OsString,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

const INSTALL_HINT: &str = "install the eBPF toolchain with: apt-get install -y clang libbpf-dev";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: tollway-datapath: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = env_path("CARGO_MANIFEST_DIR")?;
    let out_dir = env_path("OUT_DIR")?;
    let bpf_dir = manifest_dir.join("../../bpf");
    let bpf_dir = bpf_dir.canonicalize().map_err(|e| {
        format!(
            "cannot find the bpf/ directory at {}: {e}",
            bpf_dir.display()
        )
    })?;

    for sub in ["abi", "lib", "progs"] {
        println!("cargo:rerun-if-changed={}", bpf_dir.join(sub).display());
    }
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-env-changed=TOLLWAY_BPF_ARCH_INCLUDE");

    let clang = env::var_os("CLANG").unwrap_or_else(|| OsString::from("clang"));
    let arch_include = arch_include_dir();
    if !arch_include.join("asm/types.h").is_file() {
        println!(
            "cargo:warning=no asm/types.h under {}; the eBPF build will likely fail ({INSTALL_HINT})",
            arch_include.display()
        );
    }

    let progs = list_programs(&bpf_dir.join("progs"))?;
    if progs.is_empty() {
        return Err(format!(
            "no eBPF programs found in {}",
            bpf_dir.join("progs").display()
        ));
    }

    let mut table = String::from(
        "/// Embedded eBPF objects, `(name, ELF bytes)`, one per `bpf/progs/*.c`.\n\
         pub(crate) static OBJECTS: &[(&str, &[u8])] = &[\n",
    );
    for (name, source) in &progs {
        let object = out_dir.join(format!("{name}.o"));
        compile(&clang, &bpf_dir, &arch_include, source, &object)?;
        // `{:?}` of a str/path yields a valid Rust string literal.
        writeln!(
            table,
            "    ({name:?}, ::aya::include_bytes_aligned!({:?})),",
            object.display().to_string()
        )
        .map_err(|e| format!("cannot format objects table: {e}"))?;
    }
    table.push_str("];\n");
    let table_path = out_dir.join("objects.rs");
    fs::write(&table_path, table)
        .map_err(|e| format!("cannot write {}: {e}", table_path.display()))?;
    Ok(())
}

fn env_path(name: &str) -> Result<PathBuf, String> {
    env::var_os(name)
        .map(PathBuf::from)
        .ok_or_else(|| format!("cargo did not set {name}"))
}

/// `(stem, path)` of every `*.c` directly under `progs`, sorted by name.
fn list_programs(progs: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let entries =
        fs::read_dir(progs).map_err(|e| format!("cannot read {}: {e}", progs.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("cannot read {}: {e}", progs.display()))?
            .path();
        if path.extension().and_then(|e| e.to_str()) != Some("c") {
            continue;
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| format!("non UTF-8 program file name: {}", path.display()))?;
        if !stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!(
                "program file names must be [A-Za-z0-9_-]+.c, got {}",
                path.display()
            ));
        }
        out.push((stem.to_owned(), path));
    }
    out.sort();
    Ok(out)
}

/// Directory holding the target's `asm/` headers, e.g.
/// `/usr/include/x86_64-linux-gnu` (Debian multiarch layout).
fn arch_include_dir() -> PathBuf {
    if let Some(dir) = env::var_os("TOLLWAY_BPF_ARCH_INCLUDE") {
        return PathBuf::from(dir);
    }
    let from_target = env::var("CARGO_CFG_TARGET_ARCH").ok().and_then(|arch| {
        let triple = match arch.as_str() {
            "x86_64" => "x86_64-linux-gnu",
            "aarch64" => "aarch64-linux-gnu",
            "arm" => "arm-linux-gnueabihf",
            "riscv64" => "riscv64-linux-gnu",
            "powerpc64" => "powerpc64le-linux-gnu",
            "s390x" => "s390x-linux-gnu",
            "x86" => "i386-linux-gnu",
            _ => return None,
        };
        Some(PathBuf::from("/usr/include").join(triple))
    });
    if let Some(dir) = from_target.filter(|d| d.is_dir()) {
        return dir;
    }
    // Host compiler's idea of the multiarch triple.
    let from_gcc = Command::new("gcc")
        .arg("-print-multiarch")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .map(|triple| PathBuf::from("/usr/include").join(triple));
    if let Some(dir) = from_gcc.filter(|d| d.is_dir()) {
        return dir;
    }
    PathBuf::from("/usr/include/x86_64-linux-gnu")
}

fn compile(
    clang: &OsString,
    bpf_dir: &Path,
    arch_include: &Path,
    source: &Path,
    object: &Path,
) -> Result<(), String> {
    let mut cmd = Command::new(clang);
    cmd.args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-I{}", bpf_dir.display()))
        .arg(format!("-I{}", arch_include.display()))
        .arg("-c")
        .arg(source)
        .arg("-o")
        .arg(object);
    let output = cmd.output().map_err(|e| {
        format!(
            "cannot run {} ({e}) to build {}; {INSTALL_HINT} (or set CLANG=/path/to/clang)",
            clang.to_string_lossy(),
            source.display()
        )
    })?;
    if !output.status.success() {
        return Err(format!(
            "clang failed ({}) building {}:\n  {:?}\n{}{}\nif headers such as \
             bpf/bpf_helpers.h or asm/types.h are missing, {INSTALL_HINT}",
            output.status,
            source.display(),
            cmd,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        ));
    }
    Ok(())
}
