//! `policy check` (the gateway's answer to one call: allow or deny, with the reason) and
//! `policy explain` (the same, plus every rule and binding that covers the call).

use std::collections::BTreeSet;
use std::io::Write;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use mcp_auth_core::{AuthMethod, Principal};
use mcp_rbac::{Policy, Request, RuleKind};
use serde_json::{Map, Value, json};

use super::{ConfigArg, Grants, Io, Verdict};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub(super) enum PolicyCommand {
    /// Would the gateway let this caller make this call? Exit code 3 when denied.
    Check(Question),
    /// The decision and every rule and binding of the policy that covers the call.
    Explain(Question),
}

/// A caller and a call.
#[derive(Debug, Args)]
pub(super) struct Question {
    #[command(flatten)]
    config: ConfigArg,
    /// The caller's subject.
    #[arg(long, default_value = "cli")]
    subject: String,
    /// The caller's home tenant, roles and scopes.
    #[command(flatten)]
    grants: Grants,
    /// The action: an MCP method (`tools/call`, `resources/read`, ...) or an admin action
    /// (`admin:keys.create`).
    #[arg(long, default_value = "tools/call")]
    action: String,
    /// The tool name, resource URI or prompt name.
    #[arg(long, visible_alias = "tool", default_value = "")]
    resource: String,
    /// The tenant the call acts in, when not the caller's own (admin actions: `*` for
    /// gateway-wide ones).
    #[arg(long)]
    in_tenant: Option<String>,
    /// A tool argument `name=value` (repeatable; the value is JSON when it parses, else a
    /// string).
    #[arg(long = "arg", value_name = "NAME=VALUE", value_parser = parse_argument)]
    arguments: Vec<(String, Value)>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_argument(text: &str) -> Result<(String, Value), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected name=value"))?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((name.to_owned(), value))
}

impl PolicyCommand {
    pub(super) fn run(self, io: &mut Io<'_>) -> anyhow::Result<Verdict> {
        let (question, explain) = match self {
            Self::Check(q) => (q, false),
            Self::Explain(q) => (q, true),
        };
        let config = question.config.load()?;
        let policy = crate::build_policy(&config)?;
        let answer = question.answer(&config, &policy, explain)?;
        if question.json {
            writeln!(io.out, "{}", serde_json::to_string_pretty(&answer)?)?;
        } else {
            write_text(&answer, io.out)?;
        }
        Ok(if answer["allowed"] == true {
            Verdict::Yes
        } else {
            Verdict::No
        })
    }
}

impl Question {
    fn principal(&self, config: &Config) -> Principal {
        Principal::builder(self.subject.as_str(), AuthMethod::Local)
            .maybe_tenant(self.grants.tenant.clone())
            .roles(self.grants.roles.iter().map(String::as_str))
            .scopes(self.grants.scopes_or_required(config))
            .build()
    }

    /// The gateway's order: the required scope, then the policy (unless `rbac.allow_all`).
    fn answer(&self, config: &Config, policy: &Policy, explain: bool) -> anyhow::Result<Value> {
        anyhow::ensure!(
            mcp_rbac::is_known_action(&self.action),
            "--action `{}` is neither an MCP method the policy knows nor admin:<area>.<verb>",
            self.action
        );
        let principal = self.principal(config);
        let arguments: Map<String, Value> = self.arguments.iter().cloned().collect();
        let mut request =
            Request::new(&self.action, &self.resource).maybe_tenant(self.in_tenant.as_deref());
        if !arguments.is_empty() {
            request = request.arguments(&arguments);
        }
        let decision = policy.decide(&principal, &request);
        let missing_scope = config
            .auth
            .required_scope
            .as_deref()
            .filter(|s| !self.action.starts_with("admin:") && !principal.has_scope(s));
        let (allowed, reason) = match missing_scope {
            Some(scope) => (
                false,
                format!("denied: required scope `{scope}` is missing"),
            ),
            None if config.rbac.allow_all && !self.action.starts_with("admin:") => {
                (true, "allowed: rbac.allow_all".to_owned())
            }
            None => (decision.is_allowed(), decision.to_string()),
        };
        let mut answer = json!({
            "allowed": allowed,
            "reason": reason,
            "caller": {
                "subject": principal.subject(),
                "tenant": principal.tenant(),
                "roles": principal.roles(),
                "scopes": principal.scopes(),
            },
            "call": {
                "action": self.action,
                "resource": self.resource,
                "in_tenant": self.in_tenant.as_deref().or(principal.tenant()),
                "arguments": arguments,
            },
            "deciding_rule": decision.rule().map(ToString::to_string),
        });
        if explain {
            let held = held_roles(policy, &self.grants.roles);
            let rules: Vec<Value> = policy
                .rules()
                .iter()
                .filter(|r| r.covers(&self.action, &self.resource))
                .map(|r| {
                    json!({
                        "rule": r.to_string(),
                        "kind": match r.kind() {
                            RuleKind::Allow => "allow",
                            RuleKind::Deny => "deny",
                            _ => "binding",
                        },
                        "role": (r.kind() != RuleKind::Binding).then(|| r.role()),
                        "caller_holds_role": r.kind() == RuleKind::Binding || held.contains(r.role()),
                        "scopes": r.scopes().collect::<Vec<_>>(),
                        "cross_tenant": r.is_cross_tenant(),
                        "description": r.description(),
                    })
                })
                .collect();
            if let Some(object) = answer.as_object_mut() {
                object.insert("covering_rules".to_owned(), Value::Array(rules));
            }
        }
        Ok(answer)
    }
}

/// `roles` and every role they inherit, as far as the policy defines them.
fn held_roles<'p>(policy: &'p Policy, roles: &'p [String]) -> BTreeSet<&'p str> {
    let mut held = BTreeSet::new();
    let mut pending: Vec<&str> = roles.iter().map(String::as_str).collect();
    // Bounded by the number of roles: each is expanded once.
    while let Some(role) = pending.pop() {
        if held.insert(role)
            && let Some((_, parents)) = policy.role(role)
        {
            pending.extend(parents);
        }
    }
    held
}

fn write_text(answer: &Value, out: &mut dyn Write) -> anyhow::Result<()> {
    let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let list = |v: &Value| {
        v.as_array()
            .map(|a| a.iter().map(text).collect::<Vec<_>>().join(", "))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "-".to_owned())
    };
    let verdict = if answer["allowed"] == true {
        "ALLOW"
    } else {
        "DENY"
    };
    writeln!(out, "{verdict}: {}", text(&answer["reason"]))?;
    let caller = &answer["caller"];
    let call = &answer["call"];
    writeln!(
        out,
        "caller: {} (tenant {}, roles {}, scopes {})",
        text(&caller["subject"]),
        text(&caller["tenant"]),
        list(&caller["roles"]),
        list(&caller["scopes"])
    )?;
    writeln!(
        out,
        "call: {} `{}` in tenant {}",
        text(&call["action"]),
        text(&call["resource"]),
        text(&call["in_tenant"])
    )?;
    let Some(rules) = answer["covering_rules"].as_array() else {
        return Ok(());
    };
    if rules.is_empty() {
        writeln!(out, "no rule or binding covers this call")?;
    } else {
        writeln!(out, "rules and bindings covering this call:")?;
    }
    for rule in rules {
        let mut notes = Vec::new();
        if rule["caller_holds_role"] != true {
            notes.push("role not held".to_owned());
        }
        if rule["cross_tenant"] == true {
            notes.push("cross-tenant".to_owned());
        }
        let scopes = list(&rule["scopes"]);
        if scopes != "-" {
            notes.push(format!("needs scopes {scopes}"));
        }
        if let Some(description) = rule["description"].as_str() {
            notes.push(description.to_owned());
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(" [{}]", notes.join("; "))
        };
        writeln!(out, "  {}{notes}", text(&rule["rule"])).context("writing the answer")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_json_when_they_parse_and_strings_otherwise() {
        assert_eq!(
            parse_argument("tenant=acme"),
            Ok(("tenant".to_owned(), Value::from("acme")))
        );
        assert_eq!(parse_argument("n=3"), Ok(("n".to_owned(), Value::from(3))));
        assert_eq!(
            parse_argument("q={\"a\":1}=x"),
            Ok(("q".to_owned(), Value::from("{\"a\":1}=x")))
        );
        assert_eq!(
            parse_argument("empty="),
            Ok(("empty".to_owned(), Value::from("")))
        );
        assert!(parse_argument("no-equals").is_err());
    }

    #[test]
    fn held_roles_follow_inheritance_once() {
        let policy = crate::build_policy(
            &Config::from_toml_with_env(
                "[[upstreams]]\nname = \"u\"\nurl = \"http://127.0.0.1:1/mcp\"\n[rbac]\ndefault_roles = true\n",
                "t",
                [],
            )
            .unwrap(),
        )
        .unwrap();
        let roles = ["user".to_owned(), "ghost".to_owned()];
        let held = held_roles(&policy, &roles);
        assert!(
            ["user", "readonly", "guest", "ghost"]
                .iter()
                .all(|r| held.contains(r))
        );
        assert!(!held.contains("admin"));
    }
}
