//! Reading policy files: TOML and JSON text to the uncompiled model, every error located.
//!
//! Both formats are first turned into a `serde_json::Value` plus a map from key paths to byte
//! offsets, then one reader walks the value and collects every problem it finds (serde would
//! stop at the first one and, for JSON, cannot say where a value was).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::{Diagnostic, LoadError, Location};
use crate::model::{Assignment, Binding, PolicyDoc, Role, Rule};

/// Maps key paths to places in the source text.
struct Locator {
    source: Arc<str>,
    offsets: HashMap<String, usize>,
    line_starts: Vec<usize>,
}

impl Locator {
    fn new(source: &str, text: &str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            source: source.into(),
            offsets: HashMap::new(),
            line_starts,
        }
    }

    fn record(&mut self, path: &str, offset: usize) {
        self.offsets.entry(path.to_owned()).or_insert(offset);
    }

    fn position(&self, offset: usize) -> (u32, u32) {
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self
            .line_starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let line = u32::try_from(line).unwrap_or(u32::MAX);
        let column = u32::try_from(offset.saturating_sub(start) + 1).unwrap_or(u32::MAX);
        (line, column)
    }

    /// The location of `path`, or of its nearest recorded ancestor.
    fn at(&self, path: &str) -> Location {
        let mut probe = path;
        loop {
            if let Some(&offset) = self.offsets.get(probe) {
                let (line, column) = self.position(offset);
                return Location::new(self.source.clone(), line, column, path);
            }
            match probe.rfind(['.', '[']) {
                Some(cut) => probe = &probe[..cut],
                None => return Location::new(self.source.clone(), 0, 0, path),
            }
        }
    }
}

/// `parent.key`, quoting keys that are not plain identifiers.
pub(crate) fn key_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (true, false) => format!("{key:?}"),
        (false, true) => format!("{parent}.{key}"),
        (false, false) => format!("{parent}.{key:?}"),
    }
}

pub(crate) fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// Parses a TOML policy.
pub(crate) fn parse_toml(text: &str, source: &str) -> Result<PolicyDoc, LoadError> {
    let mut locator = Locator::new(source, text);
    let (table, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        let diagnostics = errors
            .iter()
            .map(|e| {
                let (line, column) = locator.position(e.span().map_or(0, |s| s.start));
                Diagnostic {
                    location: Location::new(locator.source.clone(), line, column, ""),
                    message: e.message().to_owned(),
                }
            })
            .collect();
        return Err(LoadError::Invalid(diagnostics));
    }
    let value = toml_table(table.get_ref(), "", &mut locator);
    read_document(&value, &locator)
}

fn toml_table(table: &DeTable<'_>, path: &str, locator: &mut Locator) -> Value {
    let mut map = Map::new();
    for (key, value) in table.iter() {
        let child = key_path(path, key.get_ref());
        locator.record(&child, key.span().start);
        map.insert(
            key.get_ref().to_string(),
            toml_value(value, &child, locator),
        );
    }
    Value::Object(map)
}

fn toml_value(value: &Spanned<DeValue<'_>>, path: &str, locator: &mut Locator) -> Value {
    match value.get_ref() {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .map_or_else(|_| Value::String(i.as_str().to_owned()), Value::from),
        DeValue::Float(f) => f.as_str().parse::<f64>().map_or(Value::Null, Value::from),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::String(d.to_string()),
        DeValue::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let child = index_path(path, i);
                    locator.record(&child, item.span().start);
                    toml_value(item, &child, locator)
                })
                .collect(),
        ),
        DeValue::Table(table) => toml_table(table, path, locator),
    }
}

/// Parses a JSON policy.
pub(crate) fn parse_json(text: &str, source: &str) -> Result<PolicyDoc, LoadError> {
    let mut locator = Locator::new(source, text);
    let value: Value = serde_json::from_str(text).map_err(|e| {
        LoadError::Invalid(vec![Diagnostic {
            location: Location::new(
                locator.source.clone(),
                u32::try_from(e.line()).unwrap_or(u32::MAX),
                u32::try_from(e.column()).unwrap_or(u32::MAX),
                "",
            ),
            message: e.to_string(),
        }])
    })?;
    JsonScanner {
        text,
        pos: 0,
        locator: &mut locator,
    }
    .value("");
    read_document(&value, &locator)
}

/// Records where each key and array element of already-validated JSON text starts.
struct JsonScanner<'a> {
    text: &'a str,
    pos: usize,
    locator: &'a mut Locator,
}

impl JsonScanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// Skips a string starting at the current `"` and returns its decoded content.
    fn string(&mut self) -> String {
        let start = self.pos;
        self.pos += 1;
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'\\' => self.pos += 1,
                b'"' => break,
                _ => {}
            }
        }
        self.text
            .get(start..self.pos)
            .and_then(|raw| serde_json::from_str(raw).ok())
            .unwrap_or_default()
    }

    fn value(&mut self, path: &str) {
        self.skip_ws();
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                loop {
                    self.skip_ws();
                    match self.peek() {
                        Some(b'"') => {
                            let key_start = self.pos;
                            let key = self.string();
                            let child = key_path(path, &key);
                            self.locator.record(&child, key_start);
                            self.skip_ws();
                            self.pos += 1; // the ':'
                            self.value(&child);
                        }
                        Some(b',') => self.pos += 1,
                        Some(_) => {
                            self.pos += 1; // the '}'
                            return;
                        }
                        None => return,
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut index = 0;
                loop {
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return;
                        }
                        Some(_) => {
                            let child = index_path(path, index);
                            self.locator.record(&child, self.pos);
                            self.value(&child);
                            index += 1;
                        }
                        None => return,
                    }
                }
            }
            Some(b'"') => {
                self.string();
            }
            Some(_) => {
                while self
                    .peek()
                    .is_some_and(|b| !matches!(b, b',' | b']' | b'}') && !b.is_ascii_whitespace())
                {
                    self.pos += 1;
                }
            }
            None => {}
        }
    }
}

/// Walks a parsed document, collecting every structural problem.
struct Reader<'a> {
    locator: &'a Locator,
    diagnostics: Vec<Diagnostic>,
}

fn read_document(value: &Value, locator: &Locator) -> Result<PolicyDoc, LoadError> {
    let mut reader = Reader {
        locator,
        diagnostics: Vec::new(),
    };
    let doc = reader.document(value);
    if reader.diagnostics.is_empty() {
        Ok(doc)
    } else {
        Err(LoadError::Invalid(reader.diagnostics))
    }
}

impl Reader<'_> {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            location: self.locator.at(path),
            message: message.into(),
        });
    }

    fn object<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
        what: &str,
    ) -> Option<&'v Map<String, Value>> {
        let object = value.as_object();
        if object.is_none() {
            self.error(path, format!("{what} must be a table"));
        }
        object
    }

    fn string(&mut self, value: &Value, path: &str) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.error(path, "expected a string");
                None
            }
        }
    }

    /// A string or an array of strings.
    fn strings(&mut self, value: &Value, path: &str) -> Vec<String> {
        match value {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| self.string(item, &index_path(path, i)))
                .collect(),
            _ => {
                self.error(path, "expected a string or an array of strings");
                Vec::new()
            }
        }
    }

    fn unknown_key(&mut self, path: &str, key: &str, known: &str) {
        self.error(
            &key_path(path, key),
            format!("unknown key `{key}` (expected one of: {known})"),
        );
    }

    fn document(&mut self, value: &Value) -> PolicyDoc {
        let mut doc = PolicyDoc {
            source: Some(self.locator.source.clone()),
            ..PolicyDoc::default()
        };
        let Some(top) = self.object(value, "", "the policy") else {
            return doc;
        };
        for (key, value) in top {
            let path = key_path("", key);
            match key.as_str() {
                "version" => {
                    if value.as_i64() != Some(1) {
                        self.error(&path, "unsupported policy version (expected 1)");
                    }
                }
                "description" | "$schema" | "metadata" => {}
                "roles" => {
                    if let Some(roles) = self.object(value, &path, "`roles`") {
                        for (name, role) in roles {
                            let role_path = key_path(&path, name);
                            if let Some(role) = self.role(name, role, &role_path) {
                                doc.roles.push(role);
                            }
                        }
                    }
                }
                "assignments" => {
                    for (i, item) in self.array(value, &path).iter().enumerate() {
                        let item_path = index_path(&path, i);
                        if let Some(a) = self.assignment(item, &item_path) {
                            doc.assignments.push(a);
                        }
                    }
                }
                "bindings" => {
                    for (i, item) in self.array(value, &path).iter().enumerate() {
                        let item_path = index_path(&path, i);
                        if let Some(rule) = self.rule(item, &item_path) {
                            doc.bindings.push(Binding { rule });
                        }
                    }
                }
                other => self.unknown_key(
                    "",
                    other,
                    "version, description, roles, assignments, bindings",
                ),
            }
        }
        doc
    }

    fn array<'v>(&mut self, value: &'v Value, path: &str) -> &'v [Value] {
        match value {
            Value::Array(items) => items,
            _ => {
                self.error(path, "expected an array");
                &[]
            }
        }
    }

    fn role(&mut self, name: &str, value: &Value, path: &str) -> Option<Role> {
        let fields = self.object(value, path, "a role")?;
        let mut role = Role::new(name);
        role.location = Some(self.locator.at(path));
        for (key, value) in fields {
            let field = key_path(path, key);
            match key.as_str() {
                "description" => role.description = self.string(value, &field),
                "inherits" | "extends" => {
                    let parents = self.strings(value, &field);
                    let many = value.is_array();
                    role.inherits = parents
                        .into_iter()
                        .enumerate()
                        .map(|(i, parent)| {
                            let at = if many {
                                index_path(&field, i)
                            } else {
                                field.clone()
                            };
                            (parent, Some(self.locator.at(&at)))
                        })
                        .collect();
                }
                "allow" | "permissions" | "deny" => {
                    let rules = self
                        .array(value, &field)
                        .iter()
                        .enumerate()
                        .filter_map(|(i, item)| self.rule(item, &index_path(&field, i)))
                        .collect::<Vec<_>>();
                    if key == "deny" {
                        role.deny.extend(rules);
                    } else {
                        role.allow.extend(rules);
                    }
                }
                other => self.unknown_key(
                    path,
                    other,
                    "description, inherits, allow, permissions, deny",
                ),
            }
        }
        Some(role)
    }

    /// A rule: a table, or the short string forms `"<tool pattern>"` (a `tools/call`
    /// permission, as in the permissions.json files of the Python servers) and
    /// `"<action> <resource>"`.
    fn rule(&mut self, value: &Value, path: &str) -> Option<Rule> {
        if let Value::String(short) = value {
            let mut parts = short.split_whitespace();
            let rule = match (parts.next(), parts.next(), parts.next()) {
                (Some(tool), None, _) => Rule::new("tools/call").resource(tool),
                (Some(action), Some(resource), None) => Rule::new(action).resource(resource),
                _ => {
                    self.error(
                        path,
                        "a rule string is `<tool pattern>` or `<action> <resource pattern>`",
                    );
                    return None;
                }
            };
            return Some(Rule {
                location: Some(self.locator.at(path)),
                ..rule
            });
        }
        let fields = self.object(value, path, "a rule")?;
        let mut rule = Rule {
            location: Some(self.locator.at(path)),
            ..Rule::default()
        };
        for (key, value) in fields {
            let field = key_path(path, key);
            match key.as_str() {
                "action" | "actions" => rule.actions.extend(self.strings(value, &field)),
                "resource" | "resources" => rule.resources.extend(self.strings(value, &field)),
                "scopes" | "scope" => rule.scopes.extend(self.strings(value, &field)),
                "description" => rule.description = self.string(value, &field),
                "cross_tenant" => match value {
                    Value::Bool(b) => rule.cross_tenant = *b,
                    _ => self.error(&field, "expected true or false"),
                },
                "args" => {
                    if let Some(args) = self.object(value, &field, "`args`") {
                        for (name, constraint) in args {
                            if let Some(c) = self.string(constraint, &key_path(&field, name)) {
                                rule.args.push((name.clone(), c));
                            }
                        }
                    }
                }
                other => self.unknown_key(
                    path,
                    other,
                    "action, resource, scopes, args, cross_tenant, description",
                ),
            }
        }
        if rule.actions.is_empty() {
            self.error(path, "a rule needs an `action`");
            return None;
        }
        Some(rule)
    }

    fn assignment(&mut self, value: &Value, path: &str) -> Option<Assignment> {
        let fields = self.object(value, path, "an assignment")?;
        let mut assignment = Assignment {
            location: Some(self.locator.at(path)),
            ..Assignment::default()
        };
        let mut has_subject = false;
        for (key, value) in fields {
            let field = key_path(path, key);
            match key.as_str() {
                "subject" => {
                    if let Some(s) = self.string(value, &field) {
                        assignment.subject = s;
                        has_subject = true;
                    }
                }
                "tenant" => assignment.tenant = self.string(value, &field),
                "roles" => {
                    let roles = self.strings(value, &field);
                    assignment.roles = roles
                        .into_iter()
                        .enumerate()
                        .map(|(i, r)| (r, Some(self.locator.at(&index_path(&field, i)))))
                        .collect();
                }
                other => self.unknown_key(path, other, "subject, tenant, roles"),
            }
        }
        if !has_subject {
            self.error(path, "an assignment needs a `subject`");
            return None;
        }
        Some(assignment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_locations_point_at_lines() {
        let text = "[roles.a]\nallow = [\n  { action = \"tools/call\", resource = \"x\" },\n]\n";
        let doc = parse_toml(text, "p.toml").unwrap();
        let rule = &doc.roles[0].allow[0];
        let loc = rule.location.as_ref().unwrap();
        assert_eq!((loc.line(), loc.path()), (3, "roles.a.allow[0]"));
        assert_eq!(doc.roles[0].location.as_ref().unwrap().line(), 1);
    }

    #[test]
    fn json_locations_point_at_lines() {
        let text = "{\n \"roles\": {\n  \"a\": {\n   \"permissions\": [\n    \"weather.*\",\n    \"resources/read file:///**\"\n   ]\n  }\n }\n}";
        let doc = parse_json(text, "p.json").unwrap();
        let rules = &doc.roles[0].allow;
        assert_eq!(rules[0].location.as_ref().unwrap().line(), 5);
        assert_eq!(rules[1].location.as_ref().unwrap().line(), 6);
        assert_eq!(rules[1].actions, ["resources/read"]);
        assert_eq!(rules[0].actions, ["tools/call"]);
    }

    #[test]
    fn reports_every_structural_error() {
        let text = "bogus = 1\n[roles.a]\ncolour = \"red\"\nallow = [ { resource = \"x\" } ]\n";
        let err = parse_toml(text, "p.toml").unwrap_err();
        let lines: Vec<_> = err
            .diagnostics()
            .iter()
            .map(|d| d.location.line())
            .collect();
        assert_eq!(err.diagnostics().len(), 3, "{err}");
        assert!(
            lines.contains(&1) && lines.contains(&3) && lines.contains(&4),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_are_located() {
        let err = parse_toml("[roles.a\nx = 1\n", "p.toml").unwrap_err();
        assert_eq!(err.diagnostics()[0].location.line(), 1);
        let err = parse_json("{\n \"roles\": ,\n}", "p.json").unwrap_err();
        assert_eq!(err.diagnostics()[0].location.line(), 2);
    }

    #[test]
    fn quoted_keys() {
        assert_eq!(key_path("roles", "ml-engineer"), "roles.ml-engineer");
        assert_eq!(key_path("roles", "a.b"), "roles.\"a.b\"");
    }
}
