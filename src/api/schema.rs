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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
