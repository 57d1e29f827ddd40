//! The app-facing surface stays the facade (ADR 0016): the C ABI, the JNI bridge and the CLI's
//! device commands act as the app does, so they may import only what the crate root
//! re-exports (`apoyo_sync::Engine`, its types, errors and codes) — never `apoyo_sync::wire`,
//! `apoyo_sync::testkit` or any other module path. And the bridges' own build must not turn
//! the `testkit` feature on.
//!
//! The check reads the sources: every `apoyo_sync::…` path (in `use` trees too, `{…}` groups
//! expanded) must start with a re-exported name (an upper-case type, trait or alias), and the
//! crate must not be renamed (`apoyo_sync as x`) or glob-imported, which would hide a path.

use std::path::{Path, PathBuf};

/// The sources that must use only the facade: both bridges, and the CLI modules whose
/// commands act as a phone (device init/set-aside/register/activate, process add/list,
/// capture, status, open, sync, receipts, retry; the provisioning key files they read).
const FACADE_ONLY_DIRS: &[&str] = &["bridge/ffi/src", "bridge/jni/src"];
const FACADE_ONLY_FILES: &[&str] = &[
    "cli/src/store_cmds.rs",
    "cli/src/sync_cmds.rs",
    "cli/src/keys.rs",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

fn facade_only_sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for d in FACADE_ONLY_DIRS {
        rust_files(&repo().join(d), &mut files);
    }
    files.extend(FACADE_ONLY_FILES.iter().map(|f| repo().join(f)));
    assert!(files.len() > 10, "the scan found too few files: {files:?}");
    files
}

/// Drops `// …` comments (a `//` at the start of a line or after a space: not the `//` of a
/// URL in a string), so prose that names a module is not an import.
fn strip_comments(src: &str) -> String {
    src.lines()
        .map(|line| {
            let cut = line
                .match_indices("//")
                .find(|(i, _)| *i == 0 || line[..*i].ends_with(char::is_whitespace))
                .map_or(line.len(), |(i, _)| i);
            &line[..cut]
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The text of a path after `apoyo_sync::`: a plain path, or a `{…}` group with its braces.
fn path_after(rest: &str) -> &str {
    if rest.starts_with('{') {
        let mut depth = 0;
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return &rest[..=i];
                    }
                }
                _ => {}
            }
        }
        rest
    } else {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        &rest[..end]
    }
}

/// The first segment of every path a `{…}` group (or a plain path) names.
fn first_segments(path: &str) -> Vec<String> {
    let Some(inner) = path.strip_prefix('{').and_then(|p| p.strip_suffix('}')) else {
        return vec![path.split("::").next().unwrap_or("").trim().to_string()];
    };
    let (mut items, mut depth, mut cur) = (Vec::new(), 0, String::new());
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    items.push(cur);
    items
        .iter()
        .map(|i| i.trim())
        .filter(|i| !i.is_empty())
        .flat_map(|i| first_segments(i.split(" as ").next().unwrap_or(i).trim()))
        .collect()
}

/// Every use of the core below the facade in `src`, described.
fn violations(src: &str) -> Vec<String> {
    let src = strip_comments(src);
    let mut found = Vec::new();
    // The other workspace crates expose the store below the facade (the field kit's device
    // opens a testkit `Store`; the endpoint's crate is the other side): an app has neither.
    for other in ["apoyo_fieldkit", "apoyo_endpoint"] {
        if src.contains(other) {
            found.push(format!("`{other}` is not the app's to use"));
        }
    }
    for bad in ["apoyo_sync as ", "apoyo_sync::*", "extern crate apoyo_sync"] {
        if src.contains(bad) {
            found.push(format!("`{bad}` hides which paths are used"));
        }
    }
    for (i, _) in src.match_indices("apoyo_sync::") {
        let path = path_after(&src[i + "apoyo_sync::".len()..]);
        for seg in first_segments(path) {
            // The crate root re-exports only the facade, and every facade item is a type,
            // trait or alias (upper case). A lower-case first segment is a module.
            if !seg.starts_with(|c: char| c.is_ascii_uppercase()) {
                found.push(format!("apoyo_sync::{path} reaches module `{seg}`"));
            }
        }
    }
    found
}

#[test]
fn bridges_and_device_commands_import_only_the_facade() {
    let mut all = Vec::new();
    for file in facade_only_sources() {
        let src = std::fs::read_to_string(&file).expect("read source");
        for v in violations(&src) {
            all.push(format!("{}: {v}", file.display()));
        }
    }
    assert!(
        all.is_empty(),
        "below the facade (ADR 0016; add what is missing to `Engine` instead):\n{}",
        all.join("\n")
    );
}

#[test]
fn the_check_rejects_every_way_below_the_facade() {
    for bad in [
        "use apoyo_sync::wire::Reason;",
        "use apoyo_sync::testkit::Store;",
        "use apoyo_sync::{Engine, testkit::sync::transport::Request};",
        "use apoyo_sync::{Engine, wire::{self, tus}};",
        "let k = apoyo_sync::crypto::fill_random(&mut b);",
        "use apoyo_sync::{Error, validate};",
        "use apoyo_sync as core;",
        "use apoyo_sync::*;",
        "x(); apoyo_sync::wire::encode(&m) // trailing comment",
        "use apoyo_fieldkit::fieldtest::device::open_store;",
        "let r = apoyo_endpoint::keyring::create_dir(d, now);",
    ] {
        assert!(!violations(bad).is_empty(), "not caught: {bad}");
    }
    for good in [
        "use apoyo_sync::{Engine, EngineOptions, Provisioning};",
        "use apoyo_sync::{Error, KeyGuard, SecretKey};",
        "fn f() -> apoyo_sync::Result<()> { Err(apoyo_sync::Error::Internal(\"x\".into())) }",
        "// see apoyo_sync::wire for the protocol",
        "let url = \"https://x\"; // apoyo_sync::testkit in prose",
    ] {
        assert_eq!(
            violations(good),
            Vec::<String>::new(),
            "wrongly refused: {good}"
        );
    }
}

/// Cargo unifies features across the packages of one build: were a bridge (or anything it
/// depends on) to enable `testkit` in its `[dependencies]`, the static and shared libraries
/// the apps link would carry the store's internals and the broken test variants.
#[test]
fn the_bridges_build_the_core_without_testkit() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(repo())
        .args([
            "tree",
            "--offline",
            "--locked",
            "--target",
            "all",
            "-p",
            "apoyo-ffi",
            "-p",
            "apoyo-jni",
            "-e",
            "normal,features",
            "-i",
            "apoyo-sync",
        ])
        .output()
        .expect("run cargo tree");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        tree.contains("apoyo-ffi"),
        "unexpected cargo tree output:\n{tree}"
    );
    assert!(
        !tree.contains("testkit"),
        "the bridges' build enables testkit:\n{tree}"
    );
    // Nor may a bridge offer it behind a feature of its own (`testing = ["apoyo-sync/testkit"]`),
    // which `cargo tree` without that feature would not show.
    for manifest in ["bridge/ffi/Cargo.toml", "bridge/jni/Cargo.toml"] {
        let text = std::fs::read_to_string(repo().join(manifest)).expect("read manifest");
        assert!(!text.contains("testkit"), "{manifest} mentions testkit");
    }
}
