//! `tollway-deploy template [CHART] [flags]`: render the chart the way
//! `helm template` does, with this crate's renderer.
//!
//! Flags: `--name NAME` (default `tollway`), `--namespace NS` (default
//! `kube-system`), `--set K=V`, `--set-string K=V`, `-f FILE`,
//! `--include-crds`, `--show-values`.

use std::process::ExitCode;

use tollway_deploy::{Chart, RenderOptions, chart_dir};

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut it = args.into_iter();
    match it.next().as_deref() {
        Some("template") => {}
        _ => {
            return Err(
                "usage: tollway-deploy template [CHART] [--name NAME] [--namespace NS] \
                 [--set K=V]... [--set-string K=V]... [-f FILE]... [--include-crds] [--show-values]"
                    .to_string(),
            );
        }
    }
    let mut opts = RenderOptions::new("tollway", "kube-system");
    let mut dir = None;
    let mut include_crds = false;
    let mut show_values = false;
    while let Some(a) = it.next() {
        let mut value = |flag: &str| it.next().ok_or_else(|| format!("{flag} needs a value"));
        match a.as_str() {
            "--name" => opts.release.name = value("--name")?,
            "--namespace" | "-n" => opts.release.namespace = value("--namespace")?,
            "--set" => opts.set.push(value("--set")?),
            "--set-string" => opts.set_string.push(value("--set-string")?),
            "-f" | "--values" => {
                let f = value("-f")?;
                let text = std::fs::read_to_string(&f).map_err(|e| format!("{f}: {e}"))?;
                opts.values_files.push((f, text));
            }
            "--include-crds" => include_crds = true,
            "--show-values" => show_values = true,
            s if s.starts_with('-') => return Err(format!("unknown flag {s}")),
            s => dir = Some(std::path::PathBuf::from(s)),
        }
    }
    let chart = Chart::load(&dir.unwrap_or_else(chart_dir)).map_err(|e| e.to_string())?;
    let rendered = chart.render(&opts).map_err(|e| e.to_string())?;
    if show_values {
        println!("{}", tollway_deploy::yaml::to_yaml(&rendered.values));
        return Ok(());
    }
    rendered.documents().map_err(|e| e.to_string())?;
    print!("{}", rendered.manifest(include_crds));
    Ok(())
}
