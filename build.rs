//! Marks the tests that need an external program (or root, to mount a file system) as ignored, with the reason, when the program
//! is not installed here, so `cargo test` shows them as `ignored, <why>` instead of a silent
//! `ok`. Under `CI=true` nothing is marked: those tests run and fail without their program.

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(no_postgres)");
    println!("cargo::rustc-check-cfg=cfg(no_prometheus)");
    println!("cargo::rustc-check-cfg=cfg(no_python)");
    println!("cargo::rustc-check-cfg=cfg(no_chromium)");
    println!("cargo::rustc-check-cfg=cfg(no_playwright)");
    println!("cargo::rustc-check-cfg=cfg(no_mount)");
    println!("cargo::rerun-if-changed=tests/browser/node_modules/playwright-core");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=AGG_TEST_PG_BIN");
    println!("cargo::rerun-if-env-changed=PATH");
    // Installing a package changes these directories, which runs this script again.
    println!("cargo::rerun-if-changed=/usr/lib");
    println!("cargo::rerun-if-changed=/usr/bin");
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
    if !(on_path("chromium") && on_path("node") && playwright.exists()) {
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
        return Path::new(&dir).join("postgres").exists();
    }
    std::fs::read_dir("/usr/lib/postgresql")
        .map(|versions| {
            versions
                .filter_map(Result::ok)
                .any(|v| v.path().join("bin/postgres").exists())
        })
        .unwrap_or(false)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}
