//! `cargo xtask images`: the Docker images without a registry.
//!
//! Builds the three binaries statically on the host (`--target x86_64-unknown-linux-gnu`,
//! `-C target-feature=+crt-static`, gcc), checks that they really are static, stages them
//! with the host's CA bundle in `target/docker/`, and builds each image from the
//! Dockerfile's `runtime-prebuilt` target, which shares its layout with the in-Docker build.
//! The compose end-to-end test (`xtask/tests/compose.rs`) builds its images through here.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The binaries that get an image, each named after its binary.
pub const BINARIES: [&str; 3] = ["heartbeat-agent", "heartbeat-dashboard", "heartbeat-mock"];
/// The Rust target of the static binaries (the host's; its std is installed with the toolchain).
pub const RUST_TARGET: &str = "x86_64-unknown-linux-gnu";
/// The host's CA bundle (Debian's ca-certificates), copied into every image.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The workspace root (where the Dockerfile is).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// `CARGO_TARGET_DIR`, or `target/` under the workspace `root`.
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// `cargo build --release` of the three binaries, static; returns their directory.
/// A build that is up to date costs a second, so callers always call this.
pub fn build_static_binaries(root: &Path) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--release", "--locked", "--target", RUST_TARGET])
        // Only the target's flags: build scripts and proc macros stay dynamic host code.
        .env(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
            "-C target-feature=+crt-static",
        );
    for bin in BINARIES {
        cmd.args(["-p", bin]);
    }
    let status = cmd.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build --release --target {RUST_TARGET} (static) failed: {status}");
    }
    let dir = target_dir(root).join(RUST_TARGET).join("release");
    for bin in BINARIES {
        let path = dir.join(bin);
        if !is_static_elf(&path)? {
            bail!(
                "{} is dynamically linked; it would not start in a scratch image",
                path.display()
            );
        }
    }
    Ok(dir)
}

/// True when the ELF file has no program interpreter (`PT_INTERP`), i.e. the kernel runs it
/// without a dynamic loader: what a `scratch` image needs.
pub fn is_static_elf(path: &Path) -> anyhow::Result<bool> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let not_elf = || anyhow::anyhow!("{} is not a 64-bit little-endian ELF file", path.display());
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return Err(not_elf());
    }
    let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |o: usize| {
        data.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let phoff = u64_at(0x20).ok_or_else(not_elf)?;
    let phentsize = u16_at(0x36).ok_or_else(not_elf)?;
    let phnum = u16_at(0x38).ok_or_else(not_elf)?;
    const PT_INTERP: u32 = 3;
    for i in 0..usize::from(phnum) {
        let at = usize::try_from(phoff)? + i * usize::from(phentsize);
        let p_type = data
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(not_elf)?;
        if p_type == PT_INTERP {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Copies the binaries and the CA bundle to `target/docker/`, the Dockerfile's prebuilt input.
pub fn stage(root: &Path, binaries: &Path) -> anyhow::Result<PathBuf> {
    let dir = root.join("target").join("docker");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for bin in BINARIES {
        std::fs::copy(binaries.join(bin), dir.join(bin))
            .with_context(|| format!("cannot stage {bin} in {}", dir.display()))?;
    }
    std::fs::copy(CA_BUNDLE, dir.join("ca-certificates.crt")).with_context(|| {
        format!("cannot copy the CA bundle {CA_BUNDLE} (apt-get install ca-certificates)")
    })?;
    Ok(dir)
}

/// `docker build --target runtime-prebuilt` of one binary's image, tagged `image`.
pub fn build_image(root: &Path, bin: &str, image: &str) -> anyhow::Result<()> {
    let out = Command::new("docker")
        .current_dir(root)
        .args(["build", "--quiet", "--target", "runtime-prebuilt"])
        .args(["--build-arg", &format!("BIN={bin}"), "--tag", image, "."])
        .output()
        .context("cannot run docker")?;
    if !out.status.success() {
        bail!(
            "docker build of {image} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The image name of a binary for a tag: `heartbeat-agent:latest`.
pub fn image_name(bin: &str, tag: &str) -> String {
    format!("{bin}:{tag}")
}

/// Everything: static binaries, staging, one image per binary. Returns the image names.
pub fn build_all(root: &Path, tag: &str) -> anyhow::Result<Vec<String>> {
    let binaries = build_static_binaries(root)?;
    stage(root, &binaries)?;
    let mut images = Vec::new();
    for bin in BINARIES {
        let image = image_name(bin, tag);
        build_image(root, bin, &image)?;
        images.push(image);
    }
    Ok(images)
}

/// The size of an image in bytes, as `docker image ls` reports it.
pub fn image_size(image: &str) -> anyhow::Result<u64> {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Size}}", image])
        .output()
        .context("cannot run docker")?;
    if !out.status.success() {
        bail!("docker image inspect {image} failed");
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .with_context(|| format!("docker image inspect {image}: size is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamically_linked_binary_is_not_static() {
        // The test binary itself is an ordinary (dynamic) build.
        let me = std::env::current_exe().expect("current exe");
        assert!(!is_static_elf(&me).expect("elf"));
    }

    #[test]
    fn a_non_elf_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("script");
        std::fs::write(&path, "#!/bin/sh\necho hi\n").expect("write");
        assert!(is_static_elf(&path).is_err());
    }
}
