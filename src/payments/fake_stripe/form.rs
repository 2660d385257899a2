//! Stripe's form encoding: `a=1&metadata[k]=v&expand[0]=x&list[]=y` into nested JSON.

use serde_json::{Map, Value};

/// Decodes a form body or query string. Every leaf is a string, as on the wire; objects whose
/// keys are all indices (`[0]`, `[1]`, `[]`) become arrays.
pub fn decode(input: &[u8]) -> Result<Map<String, Value>, String> {
    let mut root = Map::new();
    for (key, value) in form_urlencoded::parse(input) {
        let path = split_key(&key)?;
        insert(&mut root, &path, value.into_owned())?;
    }
    Ok(arrays(Value::Object(root))
        .as_object()
        .cloned()
        .unwrap_or_default())
}

/// `metadata[reservation_id]` → `["metadata", "reservation_id"]`; `[]` gives `""`.
fn split_key(key: &str) -> Result<Vec<String>, String> {
    let malformed = || format!("malformed parameter name `{key}`");
    let (base, mut rest) = match key.find('[') {
        Some(at) => (&key[..at], &key[at..]),
        None => (key, ""),
    };
    if base.is_empty() {
        return Err(malformed());
    }
    let mut path = vec![base.to_owned()];
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[').ok_or_else(malformed)?;
        let end = inner.find(']').ok_or_else(malformed)?;
        path.push(inner[..end].to_owned());
        rest = &inner[end + 1..];
    }
    Ok(path)
}

fn insert(map: &mut Map<String, Value>, path: &[String], value: String) -> Result<(), String> {
    let (first, rest) = path.split_first().expect("a key has a name");
    // `[]` appends: give it the next index.
    let key = if first.is_empty() {
        map.len().to_string()
    } else {
        first.clone()
    };
    if rest.is_empty() {
        map.insert(key, Value::String(value));
        return Ok(());
    }
    let child = map
        .entry(key.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    match child {
        Value::Object(child) => insert(child, rest, value),
        _ => Err(format!("parameter `{key}` is both a value and a hash")),
    }
}

fn arrays(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let is_list = !map.is_empty() && map.keys().all(|k| k.parse::<usize>().is_ok());
            let mut entries: Vec<(String, Value)> =
                map.into_iter().map(|(k, v)| (k, arrays(v))).collect();
            if is_list {
                entries.sort_by_key(|(k, _)| k.parse::<usize>().unwrap_or(usize::MAX));
                Value::Array(entries.into_iter().map(|(_, v)| v).collect())
            } else {
                Value::Object(entries.into_iter().collect())
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nested_keys_become_objects_and_lists() {
        let form = b"amount=1099&currency=usd&metadata[reservation_id]=abc%20d\
            &payment_method_types[0]=card&payment_method_types[1]=link\
            &expand[]=customer&expand[]=latest_charge&a[b][c]=deep&confirm=true";
        let decoded = Value::Object(decode(form).unwrap());
        assert_eq!(
            decoded,
            json!({
                "amount": "1099", "currency": "usd", "confirm": "true",
                "metadata": {"reservation_id": "abc d"},
                "payment_method_types": ["card", "link"],
                "expand": ["customer", "latest_charge"],
                "a": {"b": {"c": "deep"}},
            })
        );
    }

    #[test]
    fn malformed_names_are_refused() {
        for form in [&b"[x]=1"[..], b"a[b=1", b"a]b[=1", b"a=1&a[b]=2"] {
            assert!(decode(form).is_err(), "{}", String::from_utf8_lossy(form));
        }
        assert_eq!(decode(b"").unwrap(), Map::new());
    }
}
