//! `tollway install-cni`: what the DaemonSet's init container does on each
//! node: put the plugin binary into the runtime's CNI bin directory and the
//! network configuration (with the node's pod CIDR) into its config
//! directory, each by write-then-rename so that a runtime never reads half
//! a file.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// Errors of the installer, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configuration template is not a CNI configuration.
    #[error("{path}: not a CNI network configuration ({reason})")]
    Config {
        /// The template.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// What to install.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// The plugin binary to copy.
    pub plugin: PathBuf,
    /// The runtime's CNI bin directory (`/opt/cni/bin`).
    pub bin_dir: PathBuf,
    /// The configuration template (a `.conflist` or `.conf` without the
    /// pod CIDR).
    pub conf: PathBuf,
    /// The runtime's CNI config directory (`/etc/cni/net.d`).
    pub conf_dir: PathBuf,
    /// The node's pod CIDR, put into every `tollway-cni` plugin entry.
    pub pod_cidr: String,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The plugin's path.
    pub plugin: PathBuf,
    /// The configuration's path.
    pub conf: PathBuf,
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> InstallError + 'a {
    move |source| InstallError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `dest` through a temporary file in the same directory
/// and a rename, with `mode`.
fn write_atomic(dest: &Path, bytes: &[u8], mode: u32) -> Result<(), InstallError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let name = dest.file_name().map_or_else(
        || "tollway".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
    f.write_all(bytes).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("sync", &tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(io("chmod", &tmp))?;
    std::fs::rename(&tmp, dest).map_err(io("rename into", dest))?;
    Ok(())
}

/// The template with `podCIDR` set in every plugin of type `tollway-cni`
/// (a conflist's `plugins[]`, or a single `.conf`).
pub fn render_config(template: &str, path: &Path, pod_cidr: &str) -> Result<String, InstallError> {
    let bad = |reason: &str| InstallError::Config {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let mut v: serde_json::Value =
        serde_json::from_str(template).map_err(|e| bad(&e.to_string()))?;
    let mut set = 0;
    let mut fill = |p: &mut serde_json::Value| {
        if p.get("type").and_then(serde_json::Value::as_str) == Some("tollway-cni")
            && let Some(o) = p.as_object_mut()
        {
            o.insert("podCIDR".into(), pod_cidr.into());
            set += 1;
        }
    };
    match v
        .get_mut("plugins")
        .and_then(serde_json::Value::as_array_mut)
    {
        Some(plugins) => plugins.iter_mut().for_each(&mut fill),
        None => fill(&mut v),
    }
    if set == 0 {
        return Err(bad("no plugin of type tollway-cni"));
    }
    serde_json::to_string_pretty(&v).map_err(|e| bad(&e.to_string()))
}

/// Installs the plugin and the configuration.
pub fn install(opts: &InstallOptions) -> Result<Installed, InstallError> {
    let binary = std::fs::read(&opts.plugin).map_err(io("read", &opts.plugin))?;
    let plugin = opts.bin_dir.join("tollway-cni");
    write_atomic(&plugin, &binary, 0o755)?;
    let template = std::fs::read_to_string(&opts.conf).map_err(io("read", &opts.conf))?;
    let text = render_config(&template, &opts.conf, &opts.pod_cidr)?;
    let name = opts
        .conf
        .file_name()
        .map_or_else(|| "05-tollway.conflist".into(), |n| n.to_owned());
    let conf = opts.conf_dir.join(name);
    write_atomic(&conf, format!("{text}\n").as_bytes(), 0o644)?;
    Ok(Installed { plugin, conf })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_the_pod_cidr_and_installs_atomically() {
        let dir = std::env::temp_dir().join(format!("tw-install-cni-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let plugin = dir.join("plugin");
        std::fs::write(&plugin, b"#!/bin/sh\n").unwrap();
        let conf = dir.join("05-tollway.conflist");
        std::fs::write(
            &conf,
            r#"{"cniVersion":"1.1.0","name":"tollway","plugins":[{"type":"tollway-cni"},{"type":"portmap"}]}"#,
        )
        .unwrap();
        let out = install(&InstallOptions {
            plugin,
            bin_dir: dir.join("bin"),
            conf,
            conf_dir: dir.join("net.d"),
            pod_cidr: "10.244.3.0/24".into(),
        })
        .unwrap();
        let mode = std::fs::metadata(&out.plugin).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out.conf).unwrap()).unwrap();
        assert_eq!(v["plugins"][0]["podCIDR"], "10.244.3.0/24");
        assert!(v["plugins"][1].get("podCIDR").is_none());
        // The rendered config is one the plugin accepts.
        let parsed = crate::config::NetConf::parse(
            serde_json::to_string(&{
                let mut p = v["plugins"][0].clone();
                p["cniVersion"] = v["cniVersion"].clone();
                p["name"] = v["name"].clone();
                p
            })
            .unwrap()
            .as_bytes(),
        );
        assert!(parsed.is_ok(), "{parsed:?}");
        let bad = render_config(r#"{"type":"bridge"}"#, Path::new("x"), "10.0.0.0/24");
        assert!(matches!(bad, Err(InstallError::Config { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
