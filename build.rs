//! Marks the tests that need an external program (or root, to mount a file system) as ignored,
//! with the reason, when the program is not installed here, so `cargo test` shows them as
//! `ignored, <why>` instead of a silent `ok`. Under `CI=true` nothing is marked: those tests
//! run and fail without their program.
//!
//! It watches no system folder (installing any package would rebuild the crate, and cargo
//! would scan tens of thousands of files on every build): only the files it found, so removing
//! or upgrading one of them runs it again. A program installed after the first build is seen
//! after `touch build.rs` (the ignore reason says so).

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(no_postgres)");
    println!("cargo::rustc-check-cfg=cfg(no_prometheus)");
    println!("cargo::rustc-check-cfg=cfg(no_python)");
    println!("cargo::rustc-check-cfg=cfg(no_chromium)");
    println!("cargo::rustc-check-cfg=cfg(no_playwright)");
    println!("cargo::rustc-check-cfg=cfg(no_mount)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=AGG_TEST_PG_BIN");
    println!("cargo::rerun-if-env-changed=PATH");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        return;
    }
    if !postgres_installed() {
        println!("cargo::rustc-cfg=no_postgres");
    }
    if !on_path("prometheus") {
        println!("cargo::rustc-cfg=no_prometheus");
    }
    if !on_path("chromium") {
        println!("cargo::rustc-cfg=no_chromium");
    }
    let playwright = Path::new("tests/browser/node_modules/playwright-core/package.json");
    if !(on_path("chromium") && on_path("node") && watch(playwright)) {
        println!("cargo::rustc-cfg=no_playwright");
    }
    if !on_path("python3") {
        println!("cargo::rustc-cfg=no_python");
    }
    if !is_root() {
        println!("cargo::rustc-cfg=no_mount");
    }
}

/// Mounting a tmpfs needs root.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
            Some(uid.split_whitespace().next()? == "0")
        })
        .unwrap_or(false)
}

fn postgres_installed() -> bool {
    if let Ok(dir) = std::env::var("AGG_TEST_PG_BIN") {
        return watch(&Path::new(&dir).join("postgres"));
    }
    std::fs::read_dir("/usr/lib/postgresql")
        .map(|versions| {
            versions
                .filter_map(Result::ok)
                .any(|v| watch(&v.path().join("bin/postgres")))
        })
        .unwrap_or(false)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| watch(&dir.join(program))))
        .unwrap_or(false)
}

/// Whether `file` exists; if it does, this script runs again when it changes or goes.
fn watch(file: &Path) -> bool {
    let found = file.is_file();
    if found {
        println!("cargo::rerun-if-changed={}", file.display());
    }
    found
}
