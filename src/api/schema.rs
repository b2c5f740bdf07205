//! Schema transforms applied with `#[schemars(transform = ...)]` to keep the generated CRD schemas
//! tidy for the API server.

use schemars::Schema;
use serde_json::Value;

/// Makes every direct property of an object schema non-nullable.
///
/// schemars marks `Option<T>` fields nullable; in a spec that would let a manifest store an explicit
/// `null`, which CEL's `has()` counts as present. Without `nullable` the API server drops `null`s
/// instead, so "unset" has one spelling.
pub(crate) fn non_nullable(schema: &mut Schema) {
    let Some(Value::Object(props)) = schema.get_mut("properties") else {
        return;
    };
    for prop in props.values_mut() {
        let Value::Object(prop) = prop else { continue };
        prop.remove("nullable");
        if let Some(Value::Array(types)) = prop.get_mut("type") {
            types.retain(|t| t != "null");
            if types.len() == 1 {
                let only = types.remove(0);
                prop.insert("type".into(), only);
            }
        }
        let Some(Value::Array(any_of)) = prop.get("anyOf") else {
            continue;
        };
        let non_null: Vec<&Value> = any_of.iter().filter(|s| !is_null_schema(s)).collect();
        if let [Value::Object(inner)] = non_null.as_slice() {
            let inner = inner.clone();
            prop.remove("anyOf");
            for (k, v) in inner {
                prop.entry(k).or_insert(v);
            }
        }
    }
}

fn is_null_schema(s: &Value) -> bool {
    s.get("type") == Some(&Value::from("null"))
        || s.get("enum") == Some(&Value::Array(vec![Value::Null]))
}

/// Removes every `default` from a schema and its subschemas.
///
/// Observation and status structs use `#[serde(default)]` only to read partial data robustly; the
/// API server must not invent status values from it.
pub(crate) fn strip_defaults(schema: &mut Schema) {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.remove("default");
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut value = schema.clone().to_value();
    walk(&mut value);
    if let Ok(s) = Schema::try_from(value) {
        *schema = s;
    }
}

/// Joins the hard-wrapped lines of a description into paragraphs.
///
/// Descriptions come from Rust doc comments, wrapped at about 100 columns; `kubectl explain`
/// wraps text itself, so kept line breaks show as ragged lines. Blank lines (paragraph breaks),
/// list items (`- `, `* `, `+ `, `1. `, `1) `) and fenced code blocks (kept verbatim) stay as they
/// are; every other line break becomes a space.
pub(crate) fn unwrap_paragraphs(text: &str) -> String {
    let mut out = String::new();
    let mut in_fence = false;
    // A break the next line must start with (after a blank line or a closing fence).
    let mut pending = "";
    for raw in text.trim().lines() {
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        let fence = trimmed.starts_with("```");
        if !in_fence && trimmed.is_empty() {
            pending = "\n\n";
            continue;
        }
        let separator = if out.is_empty() {
            ""
        } else if !pending.is_empty() {
            pending
        } else if in_fence || fence || is_list_item(trimmed) {
            "\n"
        } else {
            " "
        };
        out.push_str(separator);
        out.push_str(if in_fence || fence { line } else { trimmed });
        if fence {
            in_fence = !in_fence;
        }
        pending = if fence && !in_fence { "\n" } else { "" };
    }
    out
}

/// Whether a (left-trimmed) line starts a Markdown list item.
pub(crate) fn is_list_item(line: &str) -> bool {
    if ["- ", "* ", "+ "].iter().any(|m| line.starts_with(m)) {
        return true;
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    digits > 0 && (line[digits..].starts_with(". ") || line[digits..].starts_with(") "))
}

/// Applies [`unwrap_paragraphs`] to every `description` of a JSON schema, at any depth. Values
/// (`default`, `enum`, `example`) are data, not schemas, and are left alone.
pub(crate) fn unwrap_descriptions(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match (key.as_str(), value) {
                    ("description", Value::String(text)) => *text = unwrap_paragraphs(text),
                    ("default" | "enum" | "example", _) => {}
                    (_, value) => unwrap_descriptions(value),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// The status the API server gives an object nobody has written a status for:
/// `{observedGeneration: 0}`.
///
/// A freshly applied object has no status (the status subresource drops any on create), and
/// kstatus (Flux's `wait: true`) reads an object with neither `status.observedGeneration` nor
/// conditions as Current, so a GitOps pipeline could move on before the operator has seen it.
/// Generation starts at 1, so an observed generation of 0 is "not reconciled yet" to kstatus
/// (InProgress) and to the Argo CD health check (Progressing). The API server applies a schema
/// `default` when it reads an object from etcd, on both ends of the supported Kubernetes range, so
/// this needs no webhook. The operator overwrites it with its first status write.
pub(crate) const PENDING_STATUS: &str = r#"{"observedGeneration":0}"#;

/// Sets [`PENDING_STATUS`] as the `default` of the root `status` property of a CRD version's
/// `openAPIV3Schema`, when that property exists and declares `observedGeneration`. Returns whether
/// it did; a kind whose status has no `observedGeneration` is left alone.
pub(crate) fn default_pending_status(open_api_v3_schema: &mut Value) -> bool {
    let Some(status) = open_api_v3_schema.pointer_mut("/properties/status") else {
        return false;
    };
    if status.pointer("/properties/observedGeneration").is_none() {
        return false;
    }
    let Ok(default) = serde_json::from_str::<Value>(PENDING_STATUS) else {
        return false;
    };
    if let Value::Object(map) = status {
        map.insert("default".into(), default);
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_pending_status_sets_observed_generation_zero() {
        let cases = [
            (
                json!({"properties": {"status": {"type": "object",
                    "properties": {"observedGeneration": {"type": "integer"}}}}}),
                Some(json!({"observedGeneration": 0})),
            ),
            (
                json!({"properties": {"status": {"type": "object",
                    "properties": {"phase": {"type": "string"}}}}}),
                None,
            ),
            (json!({"properties": {"spec": {"type": "object"}}}), None),
        ];
        for (mut schema, want) in cases {
            let applied = default_pending_status(&mut schema);
            assert_eq!(applied, want.is_some(), "{schema}");
            assert_eq!(schema.pointer("/properties/status/default"), want.as_ref());
        }
    }

    #[test]
    fn non_nullable_drops_null_from_types_and_any_of() {
        let mut s = Schema::try_from(json!({"type": "object", "properties": {
            "a": {"type": ["string", "null"], "description": "A"},
            "b": {"anyOf": [{"type": "object", "properties": {}}, {"type": "null"}], "description": "B"},
            "c": {"type": "integer"}
        }}))
        .unwrap();
        non_nullable(&mut s);
        assert_eq!(
            s.to_value(),
            json!({"type": "object", "properties": {
                "a": {"type": "string", "description": "A"},
                "b": {"type": "object", "properties": {}, "description": "B"},
                "c": {"type": "integer"}
            }})
        );
    }

    #[test]
    fn strip_defaults_is_recursive() {
        let mut s = Schema::try_from(json!({"default": {}, "properties": {
            "a": {"default": "", "items": {"default": 1}}
        }}))
        .unwrap();
        strip_defaults(&mut s);
        assert_eq!(s.to_value(), json!({"properties": {"a": {"items": {}}}}));
    }

    #[test]
    fn unwrap_paragraphs_joins_wrapped_lines_only() {
        let table = [
            ("one line", "one line"),
            ("wrapped\nline", "wrapped line"),
            ("  indented\n   continuation  ", "indented continuation"),
            ("first\npara\n\nsecond\npara", "first para\n\nsecond para"),
            ("many\n\n\n\nblanks", "many\n\nblanks"),
            (
                "Items:\n- one\n  wraps\n- two\n* three\n+ four",
                "Items:\n- one wraps\n- two\n* three\n+ four",
            ),
            ("1. a\n2) b\n10. c\nd", "1. a\n2) b\n10. c d"),
            ("version 2.\n3 is not a list", "version 2. 3 is not a list"),
            ("-dash is text\n-1 too", "-dash is text -1 too"),
            ("a\n```\nx\n  y\n```\nb\nc", "a\n```\nx\n  y\n```\nb c"),
            ("", ""),
            ("\n\ntrimmed\n\n", "trimmed"),
        ];
        for (input, want) in table {
            assert_eq!(unwrap_paragraphs(input), want, "{input:?}");
        }
    }

    #[test]
    fn unwrap_descriptions_walks_schemas_but_not_values() {
        let mut v = json!({"description": "a\nb", "properties": {
            "description": {"type": "string", "description": "c\nd"},
            "x": {"default": {"description": "keep\nme"}, "enum": ["e\nf"],
                  "items": {"description": "g\nh"}},
            "y": {"anyOf": [{"description": "i\nj"}]}
        }});
        unwrap_descriptions(&mut v);
        assert_eq!(
            v,
            json!({"description": "a b", "properties": {
                "description": {"type": "string", "description": "c d"},
                "x": {"default": {"description": "keep\nme"}, "enum": ["e\nf"],
                      "items": {"description": "g h"}},
                "y": {"anyOf": [{"description": "i j"}]}
            }})
        );
    }
}
