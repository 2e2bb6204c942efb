//! Embeds every file under `assets/` (written by the frontend) into the binary as
//! `ASSETS: &[(&str, &[u8])]`, sorted by path. A missing or empty directory gives an empty list
//! and the server shows a placeholder page.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, base, out);
        } else if let Ok(rel) = path.strip_prefix(base) {
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let rel = rel.join("/");
            // Hidden files (editor swap files, .gitkeep) are not served.
            if !rel.split('/').any(|p| p.starts_with('.')) {
                out.push((rel, path));
            }
        }
    }
}

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_owned());
    let assets = Path::new(&manifest).join("assets");
    println!("cargo::rerun-if-changed={}", assets.display());
    let mut files = Vec::new();
    walk(&assets, &assets, &mut files);
    files.sort();
    let mut code = String::from("pub static ASSETS: &[(&str, &[u8])] = &[\n");
    for (rel, path) in &files {
        // Directories are tracked by mtime only; list files too so edits and additions rebuild.
        println!("cargo::rerun-if-changed={}", path.display());
        let _ = writeln!(
            code,
            "    ({rel:?}, include_bytes!({:?})),",
            path.display().to_string()
        );
    }
    code.push_str("];\n");
    let out = std::env::var("OUT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("."));
    if let Err(e) = std::fs::write(out.join("assets.rs"), code) {
        println!("cargo::warning=cannot write assets.rs: {e}");
        std::process::exit(1);
    }
}
