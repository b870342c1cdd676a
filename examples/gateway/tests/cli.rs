//! The `mcp-gateway` binary's `validate` command on the shipped example and on a broken file.

use std::process::Command;

#[test]
fn validate_accepts_the_annotated_example() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.example.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_mcp-gateway"))
        .args(["validate", "--config", example])
        .env_remove("MCP_GATEWAY_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("configuration OK"), "{stdout}");
    assert!(
        stdout.contains("upstream main: http://127.0.0.1:9000/mcp"),
        "{stdout}"
    );
    assert!(stdout.contains("support"), "{stdout}");
}

#[test]
fn validate_names_the_bad_key_and_env_overrides_apply() {
    let dir = std::env::temp_dir().join(format!("mcp-gateway-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.toml");
    std::fs::write(
        &file,
        "[auth.oidc]\nissuer = \"https://i.example\"\n[[upstreams]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/mcp\"\n",
    )
    .unwrap();
    let run = |vars: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-gateway"));
        command.arg("validate").arg("--config").arg(&file);
        for (k, v) in vars {
            command.env(k, v);
        }
        command.output().unwrap()
    };
    assert!(run(&[]).status.success());
    let bad = run(&[("MCP_GATEWAY_RATE_LIMIT__PER_USER", "plenty")]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("rate_limit.per_user"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
