//! The `mcp-gateway` binary: `validate`, `--help` everywhere, `token mint|inspect`,
//! `policy check|explain`, `keys create|list|rotate|revoke` (SQLite, PostgreSQL) and
//! `audit query|verify|export`, with their outputs and exit codes.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up must stop the test loudly"
)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcp_audit::{AuditEvent, AuditLogger, AuditStore, Category, Decision};
use mcp_auth_testkit::TestKey;
use serde_json::Value;

mod common;

use common::Scratch;

const PEPPER: &str = "a pepper of more than thirty-two bytes, for tests";

/// Writes `gateway.toml` in `dir`: one upstream, then `text`.
fn write_config(dir: &Scratch, text: &str) -> PathBuf {
    let file = dir.path("gateway.toml");
    std::fs::write(
        &file,
        format!("[[upstreams]]\nname = \"u\"\nurl = \"http://127.0.0.1:1/mcp\"\n{text}\n"),
    )
    .unwrap();
    file
}

/// The words of `line`: a command line without its program.
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Runs the binary with `args`, `stdin` fed to it.
fn run(args: &[&str], config: Option<&Path>, stdin: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-gateway"));
    command
        .args(args)
        .env_remove("MCP_GATEWAY_CONFIG")
        .env("MCP_API_KEY_PEPPER", PEPPER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit code and returns standard output.
fn expect(output: &Output, code: i32) -> String {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

#[test]
fn validate_accepts_the_annotated_example() {
    let example = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.example.toml"));
    let out = expect(&run(&["validate"], Some(example), ""), 0);
    assert!(out.contains("configuration OK"), "{out}");
    assert!(
        out.contains("upstream main: http://127.0.0.1:9000/mcp"),
        "{out}"
    );
    assert!(out.contains("support"), "{out}");
    assert!(out.contains("api keys: Sqlite store, prefix mcpk"), "{out}");
}

#[test]
fn validate_names_the_bad_key_and_env_overrides_apply() {
    let dir = Scratch::new("cli");
    let file = write_config(&dir, "[auth.oidc]\nissuer = \"https://i.example\"");
    let validate = |vars: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-gateway"));
        command.arg("validate").arg("--config").arg(&file);
        for (k, v) in vars {
            command.env(k, v);
        }
        command.output().unwrap()
    };
    expect(&validate(&[]), 0);
    let bad = validate(&[("MCP_GATEWAY_RATE_LIMIT__PER_USER", "plenty")]);
    expect(&bad, 1);
    assert!(
        stderr(&bad).contains("rate_limit.per_user"),
        "{}",
        stderr(&bad)
    );
    let short = validate(&[
        ("MCP_GATEWAY_AUTH__API_KEYS__STORE", "memory"),
        ("MCP_API_KEY_PEPPER", "short"),
    ]);
    expect(&short, 1);
    assert!(stderr(&short).contains("pepper"), "{}", stderr(&short));
}

#[test]
fn validate_explains_the_azure_section_and_names_what_disagrees() {
    let dir = Scratch::new("cli");
    let tenant = "8eaef023-2b34-4da1-9baa-8bc8c9d6a490";
    let app = "3f1c2d3e-0000-4000-8000-000000000001";
    let section = |proxy_app: &str| {
        format!(
            "[server]\npublic_url = \"https://mcp.example.com\"\n\
             [auth.azure]\ntenant = \"organizations\"\nallowed_tenants = [\"{tenant}\"]\nclient_id = \"{app}\"\n\
             [auth.azure.proxy]\nissuer = \"https://mcp.example.com\"\nresource = \"https://mcp.example.com/mcp\"\n\
             [auth.azure.proxy.entra]\ntenant = \"organizations\"\nallowed_tenants = [\"{tenant}\"]\nclient_id = \"{proxy_app}\"\n\
             [auth.azure.proxy.scopes]\nsupported = [\"mcp.tools\", \"mcp.resources\"]"
        )
    };
    // The secrets come from the environment, as the deployment guide says.
    let validate = |file: &Path| {
        Command::new(env!("CARGO_BIN_EXE_mcp-gateway"))
            .args(["validate", "--config"])
            .arg(file)
            .env_remove("MCP_GATEWAY_CONFIG")
            .env(
                "MCP_GATEWAY_AUTH__AZURE__PROXY__ENTRA__CLIENT_SECRET",
                "s3cret-value",
            )
            .env(
                "MCP_GATEWAY_AUTH__AZURE__PROXY__TOKEN_ENCRYPTION_KEYS",
                r#"["BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc"]"#,
            )
            .output()
            .unwrap()
    };
    let out = expect(&validate(&write_config(&dir, &section(app))), 0);
    for line in [
        &format!("issuer: Entra ID, tenant organizations (allowed: {tenant}), app {app}"),
        "oauth proxy: https://mcp.example.com (scopes mcp.tools mcp.resources)",
        "entra redirect uri: https://mcp.example.com/callback",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    assert!(!out.contains("s3cret"), "{out}");
    let other = "3f1c2d3e-0000-4000-8000-000000000002";
    let refused = validate(&write_config(&dir, &section(other)));
    expect(&refused, 1);
    let message = stderr(&refused);
    assert!(
        message.contains("auth.azure.proxy.entra.client_id") && message.contains("must equal"),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
}

#[test]
fn validate_names_each_upstream_by_where_it_is() {
    let dir = Scratch::new("cli");
    let file = write_config(
        &dir,
        "[[upstreams]]\nname = \"local\"\nkind = \"stdio\"\ncommand = \"mcp-gateway-demo-stdio\"\n\
         args = [\"--token=s3cret\"]\n[[upstreams]]\nname = \"demo\"\nkind = \"in-process\"\n\
         [auth.oidc]\nissuer = \"https://i.example\"",
    );
    let out = expect(&run(&["validate"], Some(&file), ""), 0);
    for line in [
        "upstream u: http://127.0.0.1:1/mcp",
        "upstream local: stdio: mcp-gateway-demo-stdio\n",
        "upstream demo: in-process demo tools",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    assert!(!out.contains("s3cret"), "{out}");
}

#[test]
fn validate_warns_about_the_switches_that_weaken_the_path() {
    let dir = Scratch::new("cli");
    let file = write_config(
        &dir,
        "[auth]\nmode = \"none\"\ninsecure_no_auth_i_know = true\ntoken_cache_capacity = 0\n\
         [auth.oidc]\nissuer = \"https://i.example\"\n[rbac]\nallow_all = true\n\
         [audit]\nenabled = false\n[metrics]\nenabled = false",
    );
    let output = run(&["validate"], Some(&file), "");
    expect(&output, 0);
    let warnings = stderr(&output);
    for switch in [
        "auth.mode",
        "rbac.allow_all",
        "audit.enabled",
        "metrics.enabled",
        "token_cache_capacity",
    ] {
        assert!(warnings.contains(switch), "{switch}: {warnings}");
    }
    let refused = write_config(
        &dir,
        "[auth]\nmode = \"none\"\n[auth.oidc]\nissuer = \"https://i.example\"",
    );
    let output = run(&["validate"], Some(&refused), "");
    expect(&output, 1);
    assert!(stderr(&output).contains("insecure_no_auth_i_know"));
}

#[test]
fn every_command_has_help() {
    let commands: &[&[&str]] = &[
        &[],
        &["serve"],
        &["demo"],
        &["validate"],
        &["token"],
        &["token", "mint"],
        &["token", "inspect"],
        &["policy"],
        &["policy", "check"],
        &["policy", "explain"],
        &["keys"],
        &["keys", "create"],
        &["keys", "list"],
        &["keys", "rotate"],
        &["keys", "revoke"],
        &["audit"],
        &["audit", "query"],
        &["audit", "verify"],
        &["audit", "export"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let out = expect(&run(&args, None, ""), 0);
        assert!(out.contains("Usage: mcp-gateway"), "{command:?}: {out}");
    }
    let top = stdout(&run(&["--help"], None, ""));
    assert!(top.contains("Exit codes"), "{top}");
    let unknown = run(&["keys", "frobnicate"], None, "");
    expect(&unknown, 2);
}

/// A configuration whose issuer is the local one, signing with `key`.
fn local_issuer_config(dir: &Scratch, key: &TestKey) -> PathBuf {
    std::fs::write(dir.path("issuer.pem"), key.private_pem()).unwrap();
    write_config(
        dir,
        &format!(
            "[server]\npublic_url = \"https://mcp.test\"\n[auth]\nrequired_scope = \"mcp:tools\"\n\
         [auth.local_issuer]\nissuer = \"https://mcp.test\"\nsigning_key_file = {}\nalgorithm = \"EdDSA\"",
            dir.toml("issuer.pem")
        ),
    )
}

#[test]
fn tokens_minted_with_the_local_issuer_inspect_as_valid() {
    let dir = Scratch::new("cli");
    let config = local_issuer_config(&dir, &TestKey::ed25519(1));
    let validated = expect(&run(&["validate"], Some(&config), ""), 0);
    assert!(validated.contains("(local, EdDSA"), "{validated}");
    let mint = words("token mint --subject alice --tenant acme --role user");
    let minted = run(&mint, Some(&config), "");
    let token = expect(&minted, 0).trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "{token}");

    let inspected = expect(&run(&["token", "inspect"], Some(&config), &token), 0);
    let report: Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(report["verification"]["valid"], true, "{report}");
    assert_eq!(report["verification"]["subject"], "alice");
    assert_eq!(report["verification"]["tenant"], "acme");
    assert_eq!(report["verification"]["has_required_scope"], true);
    assert_eq!(report["claims"]["aud"], "https://mcp.test/mcp");
    assert_eq!(report["header"]["alg"], "EdDSA");
    assert!(!inspected.contains(&token), "the token is never printed");

    // A changed payload, or another configuration's key: decoded, but not valid (exit 3).
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    claims["sub"] = Value::from("mallory");
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    let tampered = parts.join(".");
    let report = expect(&run(&["token", "inspect", &tampered], Some(&config), ""), 3);
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["verification"]["valid"], false, "{report}");
    assert_eq!(
        report["claims"]["sub"], "mallory",
        "decoded, though not trusted"
    );
    let other = Scratch::new("cli");
    let other_config = local_issuer_config(&other, &TestKey::ed25519(2));
    expect(&run(&["token", "inspect"], Some(&other_config), &token), 3);
    let garbage = run(&["token", "inspect", "not-a-jwt"], Some(&config), "");
    expect(&garbage, 1);
    assert!(stderr(&garbage).contains("not a JWT"));

    // Minting needs the local issuer.
    let oidc = write_config(&dir, "[auth.oidc]\nissuer = \"https://i.example\"");
    let refused = run(&["token", "mint", "--subject", "a"], Some(&oidc), "");
    expect(&refused, 1);
    assert!(
        stderr(&refused).contains("auth.local_issuer"),
        "{}",
        stderr(&refused)
    );
}

fn policy_config(dir: &Scratch) -> PathBuf {
    write_config(
        dir,
        "[auth]\nrequired_scope = \"mcp:tools\"\n[auth.oidc]\nissuer = \"https://i.example\"\n\
         [rbac]\ntenant_bound_arguments = [{ tool = \"tenant_data\", argument = \"tenant\" }]\n\
         policy = \"\"\"\n[roles.platform_admin]\nallow = [{ action = \"admin:*\", cross_tenant = true }]\n\"\"\"",
    )
}

#[test]
fn policy_check_answers_like_the_gateway_and_explain_names_the_rules() {
    let dir = Scratch::new("cli");
    let config = policy_config(&dir);
    let user = ["--subject", "alice", "--tenant", "acme", "--role", "user"];
    let check = |extra: &[&str], code: i32| {
        let mut args = vec!["policy", "check"];
        args.extend(user);
        args.extend(extra);
        expect(&run(&args, Some(&config), ""), code)
    };
    assert!(check(&["--tool", "echo"], 0).starts_with("ALLOW"));
    let denied = check(&["--tool", "admin.stats"], 3);
    assert!(
        denied.starts_with("DENY: denied via role `user`"),
        "{denied}"
    );
    let foreign = check(&["--tool", "tenant_data", "--arg", "tenant=globex"], 3);
    assert!(foreign.contains("argument `tenant`"), "{foreign}");
    check(&["--tool", "tenant_data", "--arg", "tenant=acme"], 0);
    let unscoped = check(&["--tool", "echo", "--scope", "other"], 3);
    assert!(
        unscoped.contains("required scope `mcp:tools`"),
        "{unscoped}"
    );
    check(&["--action", "admin:keys.create"], 3);
    let json: Value = serde_json::from_str(&check(&["--tool", "echo", "--json"], 0)).unwrap();
    assert_eq!(json["allowed"], true);
    assert_eq!(json["caller"]["roles"], serde_json::json!(["user"]));

    let explain = words("policy explain --role user --tenant acme --tool admin.stats");
    let explained = expect(&run(&explain, Some(&config), ""), 3);
    assert!(
        explained.contains("rules and bindings covering this call"),
        "{explained}"
    );
    assert!(
        explained.contains("system management is for operators and admins"),
        "{explained}"
    );
    assert!(explained.contains("role not held"), "{explained}");
    let explain = words(
        "policy explain --role platform_admin --action admin:audit.read --in-tenant * --json",
    );
    let admin = run(&explain, Some(&config), "");
    let admin: Value = serde_json::from_str(&expect(&admin, 0)).unwrap();
    let rules = admin["covering_rules"].as_array().unwrap();
    assert!(
        rules
            .iter()
            .any(|r| r["cross_tenant"] == true && r["caller_holds_role"] == true)
    );
    let bad = run(
        &["policy", "check", "--action", "tools/frobnicate"],
        Some(&config),
        "",
    );
    expect(&bad, 1);
}

/// `keys ...` against `config`, expecting `code`; the JSON of standard output.
fn keys(config: &Path, args: &[&str], code: i32) -> Output {
    let mut all = vec!["keys"];
    all.extend(args);
    let output = run(&all, Some(config), "");
    expect(&output, code);
    output
}

fn key_lifecycle(config: &Path) {
    let mut create = words("create --owner ci --tenant acme --role user --name");
    create.push("CI key");
    let created = keys(config, &create, 0);
    let text = stdout(&created);
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .unwrap()
        .to_owned();
    assert!(key.starts_with("mcpk_"), "{text}");
    assert!(stderr(&created).contains("shown only this once"));
    let key_id = key.split('_').nth(1).unwrap().to_owned();

    let listed = stdout(&keys(config, &["list", "--tenant", "acme", "--json"], 0));
    let record: Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert_eq!(record["key_id"], key_id.as_str());
    assert_eq!(record["name"], "CI key");
    assert!(!listed.contains(&key), "never a secret in a listing");
    let others = keys(config, &["list", "--tenant", "globex"], 0);
    assert_eq!(stdout(&others), "");
    assert!(stderr(&others).contains("0 key(s)"));

    let rotated = stdout(&keys(
        config,
        &["rotate", &key_id, "--grace-secs", "60", "--json"],
        0,
    ));
    let rotated: Value = serde_json::from_str(&rotated).unwrap();
    assert_eq!(rotated["record"]["rotated_from"], key_id.as_str());
    let successor = rotated["record"]["key_id"].as_str().unwrap().to_owned();
    let again = keys(config, &["rotate", &key_id], 1);
    assert!(
        stderr(&again).contains("already rotated"),
        "{}",
        stderr(&again)
    );

    let revoked = stdout(&keys(config, &["revoke", &successor], 0));
    assert!(revoked.contains("active=false"), "{revoked}");
    let missing = keys(config, &["revoke", "0000000000000000"], 1);
    assert!(
        stderr(&missing).contains("not found"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn keys_are_managed_in_a_sqlite_store() {
    let dir = Scratch::new("cli");
    let config = write_config(
        &dir,
        &format!(
            "[auth.api_keys]\nstore = \"sqlite\"\npath = {}",
            dir.toml("keys.db")
        ),
    );
    key_lifecycle(&config);
    let memory = write_config(&dir, "[auth.api_keys]\nstore = \"memory\"");
    let refused = keys(&memory, &["list"], 1);
    assert!(stderr(&refused).contains("memory"), "{}", stderr(&refused));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_managed_in_a_postgres_schema() {
    let Some(url) = common::service_url("MCP_TEST_POSTGRES_URL") else {
        return;
    };
    let dir = Scratch::new("cli");
    let schema = format!("mcp_gw_cli_{}_{}", std::process::id(), common::unique());
    let config = write_config(
        &dir,
        &format!("[auth.api_keys]\nstore = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\""),
    );
    let outcome = tokio::task::spawn_blocking(move || key_lifecycle(&config)).await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .execute(&pool)
    .await
    .unwrap();
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// Three chained events in a SQLite audit store at `db`.
async fn write_events(db: &Path, spool: &Path) {
    let store = AuditStore::connect_sqlite(db).await.unwrap();
    store.migrate().await.unwrap();
    let logger = AuditLogger::builder(spool.to_owned())
        .sink(store)
        .build()
        .unwrap();
    for (subject, tenant, category) in [
        ("alice", "acme", Category::ToolCall),
        ("bob", "globex", Category::ToolCall),
        ("root", "acme", Category::Admin),
    ] {
        logger
            .try_record(
                AuditEvent::new(category)
                    .subject(subject)
                    .tenant(tenant)
                    .tool("echo")
                    .decision(Decision::Allow, "test"),
            )
            .unwrap();
    }
    logger.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_query_export_and_verify_read_the_store() {
    let dir = Scratch::new("cli");
    write_events(&dir.path("audit.db"), &dir.path("spool")).await;
    let config = write_config(
        &dir,
        &format!(
            "[audit]\nsink = \"sqlite\"\npath = {}\nspool_dir = {}",
            dir.toml("audit.db"),
            dir.toml("spool")
        ),
    );
    let audit = |args: &[&str], code: i32| {
        let mut all = vec!["audit"];
        all.extend(args);
        let output = run(&all, Some(&config), "");
        expect(&output, code);
        output
    };
    let all = stdout(&audit(&["query"], 0));
    assert_eq!(all.lines().count(), 3, "{all}");
    let acme = stdout(&audit(
        &["query", "--tenant", "acme", "--category", "tool_call"],
        0,
    ));
    let event: Value = serde_json::from_str(acme.trim()).unwrap();
    assert_eq!(event["actor"]["subject"], "alice");
    let paged = audit(&["query", "--limit", "2", "--order", "oldest"], 0);
    assert_eq!(stdout(&paged).lines().count(), 2);
    assert!(
        stderr(&paged).contains("more: --after "),
        "{}",
        stderr(&paged)
    );
    let bad = audit(&["query", "--category", "nonsense"], 1);
    assert!(stderr(&bad).contains("unknown category"));

    let csv_file = dir.path("audit.csv");
    let mut export = words("export --format csv --output");
    export.push(csv_file.to_str().unwrap());
    let exported = audit(&export, 0);
    assert!(stderr(&exported).contains("3 event(s) exported"));
    let csv = std::fs::read_to_string(&csv_file).unwrap();
    assert!(csv.starts_with("id,time,category"), "{csv}");
    assert_eq!(csv.lines().count(), 4);
    let jsonl = stdout(&audit(&["export", "--subject", "bob"], 0));
    assert_eq!(jsonl.lines().count(), 1, "{jsonl}");

    let intact = stdout(&audit(&["verify"], 0));
    assert!(intact.contains("intact: 3 event(s) checked"), "{intact}");
    // An edited event breaks the chain at its position.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", dir.path("audit.db").display()))
        .await
        .unwrap();
    sqlx::query("UPDATE audit_events SET subject = 'mallory' WHERE chain_seq = 2")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let broken = stdout(&audit(&["verify"], 3));
    assert!(broken.contains("BROKEN"), "{broken}");
    assert!(broken.contains("seq 2: modified"), "{broken}");
    let none = write_config(&dir, "[audit]\nsink = \"tracing\"");
    let refused = run(&["audit", "query"], Some(&none), "");
    expect(&refused, 1);
    assert!(
        stderr(&refused).contains("no store"),
        "{}",
        stderr(&refused)
    );
}
