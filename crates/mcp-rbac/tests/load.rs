//! Integration tests of loading: TOML, JSON (permissions.json shape), files, reload and watch.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions stop loudly on broken fixtures"
)]

use std::sync::mpsc;
use std::time::Duration;

use mcp_rbac::{BasicSubject, LoadError, Policy, PolicyHandle, ReloadEvent, Request};

const PERMISSIONS_JSON: &str = r#"{
  "description": "permissions.json as the Python MCP servers ship it",
  "roles": {
    "ci-bot": {
      "description": "Limited permissions for CI/CD automation",
      "inherits": ["guest"],
      "permissions": ["ci.*", "build.*", "resources/read file:///builds/**"],
      "deny": ["build.delete"]
    },
    "guest": {
      "permissions": ["tools/list *"]
    }
  }
}"#;

#[test]
fn permissions_json_shape_loads() {
    let p = Policy::from_json_str(PERMISSIONS_JSON, "permissions.json").unwrap();
    let bot = BasicSubject::new("bot").role("ci-bot");
    assert!(
        p.decide(&bot, &Request::new("tools/call", "ci.run"))
            .is_allowed()
    );
    assert!(
        p.decide(&bot, &Request::new("tools/call", "build.run"))
            .is_allowed()
    );
    assert!(
        !p.decide(&bot, &Request::new("tools/call", "build.delete"))
            .is_allowed()
    );
    assert!(
        p.decide(
            &bot,
            &Request::new("resources/read", "file:///builds/1/log")
        )
        .is_allowed()
    );
    let d = p.decide(&bot, &Request::new("tools/call", "ci.run"));
    let loc = d.rule().unwrap().location();
    assert_eq!((loc.source(), loc.line()), ("permissions.json", 7));
}

#[test]
fn json_errors_are_located_and_all_reported() {
    let text = "{\n  \"roles\": {\n    \"a\": { \"inherits\": [\"ghost\"], \"allow\": [{\"action\": \"tools/nope\"}] },\n    \"b\": { \"colour\": 1 }\n  }\n}";
    let err = Policy::from_json_str(text, "p.json").unwrap_err();
    // Structural problems are reported first; semantic ones once the structure is sound.
    assert_eq!(err.diagnostics().len(), 1, "{err}");
    assert_eq!(err.diagnostics()[0].location.line(), 4);
    let text = "{\n  \"roles\": {\n    \"a\": { \"inherits\": [\"ghost\"], \"allow\": [{\"action\": \"tools/nope\"}] }\n  }\n}";
    let err = Policy::from_json_str(text, "p.json").unwrap_err();
    let d = err.diagnostics();
    assert_eq!(d.len(), 2, "{err}");
    assert!(d.iter().all(|d| d.location.line() == 3), "{err}");
    assert!(err.to_string().contains("unknown role `ghost`"), "{err}");
}

#[test]
fn files_load_by_extension() {
    let dir = std::env::temp_dir().join(format!("mcp-rbac-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml_path = dir.join("p.toml");
    std::fs::write(&toml_path, "[roles.r]\nallow = [\"x.*\"]\n").unwrap();
    let json_path = dir.join("p.json");
    std::fs::write(&json_path, PERMISSIONS_JSON).unwrap();
    let yaml_path = dir.join("p.yaml");
    std::fs::write(&yaml_path, "roles: {}").unwrap();
    assert!(Policy::from_file(&toml_path).is_ok());
    assert!(Policy::from_file(&json_path).is_ok());
    assert!(matches!(
        Policy::from_file(&yaml_path),
        Err(LoadError::UnknownFormat { .. })
    ));
    assert!(matches!(
        Policy::from_file(dir.join("missing.toml")),
        Err(LoadError::Io { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reload_keeps_the_last_good_policy() {
    let dir = std::env::temp_dir().join(format!("mcp-rbac-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.toml");
    std::fs::write(&path, "[roles.r]\nallow = [\"a.*\"]\n").unwrap();
    let handle = PolicyHandle::new(Policy::from_file(&path).unwrap());
    let s = BasicSubject::new("s").role("r");
    let may = |h: &PolicyHandle, tool: &str| {
        h.load()
            .decide(&s, &Request::new("tools/call", tool))
            .is_allowed()
    };
    assert!(may(&handle, "a.x"));

    std::fs::write(&path, "[roles.r]\nallow = [\"b.*\"]\n").unwrap();
    assert_eq!(handle.reload_from_file(&path).unwrap(), 1);
    assert!(may(&handle, "b.x") && !may(&handle, "a.x"));

    std::fs::write(&path, "[roles.r]\ninherits = [\"ghost\"]\n").unwrap();
    let err = handle.reload_from_file(&path).unwrap_err();
    assert_eq!(err.diagnostics()[0].location.line(), 2);
    assert_eq!(handle.generation(), 1);
    assert!(may(&handle, "b.x"), "the last good policy keeps serving");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn watcher_reloads_and_reports_rejections() {
    let dir = std::env::temp_dir().join(format!("mcp-rbac-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.toml");
    std::fs::write(&path, "[roles.r]\nallow = [\"a.*\"]\n").unwrap();
    let handle = PolicyHandle::new(Policy::from_file(&path).unwrap());
    let (tx, rx) = mpsc::channel();
    let watcher = handle
        .watch(
            &path,
            Duration::from_millis(5),
            move |event: &ReloadEvent| {
                let summary = match event {
                    ReloadEvent::Reloaded { generation } => format!("reloaded {generation}"),
                    ReloadEvent::Rejected { error } => {
                        format!("rejected {}", error.diagnostics().len())
                    }
                    _ => "other".to_owned(),
                };
                let _ = tx.send(summary);
            },
        )
        .unwrap();
    // A different size guarantees a new fingerprint even on coarse timestamps.
    std::fs::write(&path, "[roles.r]\nallow = [\"bb.*\"]\n").unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(60)).unwrap(),
        "reloaded 1"
    );
    let s = BasicSubject::new("s").role("r");
    assert!(
        handle
            .load()
            .decide(&s, &Request::new("tools/call", "bb.x"))
            .is_allowed()
    );

    std::fs::write(&path, "[roles.r]\nallow = [{ action = \"nope\" }]\n").unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(60)).unwrap(),
        "rejected 1"
    );
    assert!(
        handle
            .load()
            .decide(&s, &Request::new("tools/call", "bb.x"))
            .is_allowed()
    );
    drop(watcher);
    std::fs::remove_dir_all(&dir).unwrap();
}
