//! Integration tests of the tower layer: 401 without a subject, 403 on denial (with an
//! `insufficient_scope` challenge when a scope is missing), pass-through when allowed.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions stop loudly on broken fixtures"
)]
#![cfg(feature = "tower")]

use std::convert::Infallible;

use http::{Request, Response, StatusCode, header};
use mcp_rbac::{BasicSubject, McpCall, Policy, PolicyHandle, RbacLayer};
use tower::{Layer, ServiceExt, service_fn};

const POLICY: &str = r#"
[roles.dev]
allow = [
  { action = "tools/call", resource = "git.*" },
  { action = "tools/call", resource = "docs.write", scopes = ["docs:write"] },
  { action = "tools/call", resource = "tenant_data", args = { tenant = "$tenant" } },
]
"#;

fn handle() -> PolicyHandle {
    PolicyHandle::new(Policy::from_toml_str(POLICY, "layer.toml").unwrap())
}

async fn send(
    layer: &RbacLayer<BasicSubject, String>,
    subject: Option<BasicSubject>,
    call: Option<McpCall>,
) -> Response<String> {
    let inner = service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new("upstream".to_owned()))
    });
    let mut request = Request::new(String::new());
    if let Some(s) = subject {
        request.extensions_mut().insert(s);
    }
    if let Some(c) = call {
        request.extensions_mut().insert(c);
    }
    layer.layer(inner).oneshot(request).await.unwrap()
}

fn dev() -> BasicSubject {
    BasicSubject::new("dev").tenant("acme").role("dev")
}

#[tokio::test]
async fn allows_and_passes_through() {
    let layer = RbacLayer::new(handle());
    let response = send(
        &layer,
        Some(dev()),
        Some(McpCall::new("tools/call", "git.log")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body(), "upstream");
}

#[tokio::test]
async fn without_subject_is_unauthorized() {
    let layer = RbacLayer::new(handle());
    let response = send(&layer, None, Some(McpCall::new("tools/call", "git.log"))).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
}

#[tokio::test]
async fn denied_is_forbidden_and_fails_closed_without_a_call() {
    let layer = RbacLayer::new(handle());
    let response = send(
        &layer,
        Some(dev()),
        Some(McpCall::new("tools/call", "fs/rm")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
    assert!(response.body().is_empty(), "no rule or role names leak");
    let response = send(&layer, Some(dev()), None).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn missing_scope_gets_an_insufficient_scope_challenge() {
    let layer = RbacLayer::new(handle());
    let response = send(
        &layer,
        Some(dev()),
        Some(McpCall::new("tools/call", "docs.write")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        "Bearer error=\"insufficient_scope\", scope=\"docs:write\""
    );
    let writer = dev().scope("docs:write");
    let response = send(
        &layer,
        Some(writer),
        Some(McpCall::new("tools/call", "docs.write")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn arguments_and_tenant_of_the_call_are_enforced() {
    let layer = RbacLayer::new(handle());
    let mut call = McpCall::new("tools/call", "tenant_data");
    call.arguments = serde_json::json!({ "tenant": "acme" }).as_object().cloned();
    let response = send(&layer, Some(dev()), Some(call.clone())).await;
    assert_eq!(response.status(), StatusCode::OK);
    call.arguments = serde_json::json!({ "tenant": "globex" })
        .as_object()
        .cloned();
    let response = send(&layer, Some(dev()), Some(call.clone())).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let mut foreign = McpCall::new("tools/call", "git.log");
    foreign.tenant = Some("globex".into());
    let response = send(&layer, Some(dev()), Some(foreign)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn extractor_builds_the_call_and_reload_takes_effect() {
    let policy = handle();
    let layer = RbacLayer::<BasicSubject, String>::new(policy.clone()).with_extractor(
        |req: &Request<String>| {
            let name = req.uri().path().strip_prefix("/tools/")?;
            Some(McpCall::new("tools/call", name))
        },
    );
    let inner = service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let service = layer.layer(inner);
    let request = |path: &str| {
        let mut r = Request::builder().uri(path).body(String::new()).unwrap();
        r.extensions_mut().insert(dev());
        r
    };
    let ok = service
        .clone()
        .oneshot(request("/tools/git.log"))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let no = service
        .clone()
        .oneshot(request("/elsewhere"))
        .await
        .unwrap();
    assert_eq!(no.status(), StatusCode::FORBIDDEN);

    policy.replace(Policy::deny_all());
    let after = service
        .clone()
        .oneshot(request("/tools/git.log"))
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        (*service.get_ref())
            .oneshot(request("/x"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}
