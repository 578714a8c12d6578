//! House rules that keep one codebase correct in both worlds, checked over the sources.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() && p.file_name().is_some_and(|n| n != "target") {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn workspace_sources() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    rust_files(&root.join("services"), &mut files);
    rust_files(&root.join("sim"), &mut files);
    assert!(
        files.len() > 20,
        "sources not found under {}",
        root.display()
    );
    files
}

/// `tokio::select!` without `biased;` draws its branch order from tokio's own RNG, which
/// madsim does not seed: the same seed would not replay the same run.
#[test]
fn every_select_is_biased_so_the_simulation_replays_exactly() {
    // Spelled in two parts so this file does not match itself.
    let needle = concat!("select", "! {");
    let mut offenders = Vec::new();
    for f in workspace_sources() {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if l.contains(needle) && !l.trim_start().starts_with("//") {
                let next = lines.get(i + 1).map(|s| s.trim()).unwrap_or_default();
                if next != "biased;" {
                    offenders.push(format!("{}:{}", f.display(), i + 1));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "select! without `biased;`:\n{}",
        offenders.join("\n")
    );
}

/// Service logic has no `cfg(madsim)`; the seams are ports (only the platform may switch).
#[test]
fn services_never_switch_on_madsim() {
    let mut offenders = Vec::new();
    for f in workspace_sources() {
        let s = f.to_string_lossy();
        if !s.contains("/services/") || s.contains("/services/platform/") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        if text.contains("cfg(madsim)") || text.contains("cfg(not(madsim))") {
            offenders.push(s.into_owned());
        }
    }
    assert!(
        offenders.is_empty(),
        "cfg(madsim) in service code:\n{}",
        offenders.join("\n")
    );
}
