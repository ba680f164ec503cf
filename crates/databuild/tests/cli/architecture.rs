//! The crate boundaries of ARCHITECTURE.md, enforced over `cargo metadata`.

use std::collections::{BTreeMap, BTreeSet};

/// Crates each of ours must not depend on directly.
const BANNED: &[(&str, &[&str])] = &[
    (
        "databuild-proto",
        &[
            "databuild-bel",
            "databuild-core",
            "rusqlite",
            "tokio",
            "tonic",
            "axum",
            "tokio-postgres",
        ],
    ),
    (
        "databuild-bel",
        &["databuild-core", "tonic", "axum", "hyper", "clap", "regex"],
    ),
    (
        "databuild-core",
        &[
            "rusqlite",
            "tokio-postgres",
            "postgres",
            "sqlx",
            "tonic",
            "axum",
            "hyper",
            "clap",
        ],
    ),
    (
        "databuild-service",
        &[
            "rusqlite",
            "tokio-postgres",
            "postgres",
            "sqlx",
            "clap",
            "databuild",
        ],
    ),
    (
        "databuild",
        &[
            "rusqlite",
            "tokio-postgres",
            "sqlx",
            "prost",
            "tonic",
            "axum",
        ],
    ),
];

#[test]
fn crates_do_not_depend_on_what_their_layer_must_not_know() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut deps: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for p in meta["packages"].as_array().unwrap() {
        let set = p["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["name"].as_str().unwrap().to_string(),
                    d["kind"].as_str().unwrap_or("normal").to_string(),
                )
            })
            .collect();
        deps.insert(p["name"].as_str().unwrap().to_string(), set);
    }
    for (krate, banned) in BANNED {
        let have = deps
            .get(*krate)
            .unwrap_or_else(|| panic!("crate {krate} missing from the workspace"));
        for (dep, kind) in have {
            if kind == "dev" {
                continue;
            }
            assert!(
                !banned.contains(&dep.as_str()),
                "`{krate}` must not depend on `{dep}` (ARCHITECTURE.md)"
            );
        }
    }
}
