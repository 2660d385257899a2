//! Stripe's form encoding: `a=1&metadata[k]=v&expand[0]=x&list[]=y` into nested JSON.
//!
//! Read with serde_qs, the crate async-stripe writes its requests with. Its form-encoding mode
//! decodes a key before reading its brackets, so they may come as async-stripe and curl send
//! them (`metadata[reservation_id]`) or percent-encoded, as other clients do
//! (`metadata%5Breservation_id%5D`).

use serde_json::{Map, Value};

/// Decodes a form body or query string. Every leaf is a string, as on the wire; indexed keys
/// (`[0]`, `[1]`) and appended ones (`[]`) become arrays.
pub fn decode(input: &[u8]) -> Result<Map<String, Value>, String> {
    serde_qs::Config::new()
        .use_form_encoding(true)
        .deserialize_bytes(input)
        .map_err(|error| format!("invalid parameters: {error}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn decoded(form: &str) -> Value {
        Value::Object(decode(form.as_bytes()).unwrap())
    }

    #[test]
    fn nested_keys_become_objects_and_lists() {
        let form = "amount=1099&currency=usd&metadata[reservation_id]=abc%20d\
            &payment_method_types[0]=card&payment_method_types[1]=link\
            &expand[]=customer&expand[]=latest_charge&a[b][c]=deep&confirm=true";
        assert_eq!(
            decoded(form),
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
    fn stripes_clients_brackets_are_read_raw_or_percent_encoded() {
        let expected = json!({
            "allowed_payment_method_types": ["card"],
            "customer": "cus_1",
            "metadata": {"reservation_id": "r 1"},
            "usage": "off_session",
        });
        // As async-stripe sends a SetupIntent (serde_qs' indexed arrays, brackets as they are).
        let sdk = "allowed_payment_method_types[0]=card&customer=cus_1\
            &metadata[reservation_id]=r+1&usage=off_session";
        assert_eq!(decoded(sdk), expected);
        let appended = "allowed_payment_method_types[]=card&customer=cus_1\
            &metadata[reservation_id]=r%201&usage=off_session";
        assert_eq!(decoded(appended), expected);
        let encoded = "allowed_payment_method_types%5B0%5D=card&customer=cus_1\
            &metadata%5Breservation_id%5D=r+1&usage=off_session";
        assert_eq!(decoded(encoded), expected);
        // An empty value unsets, as at Stripe: it stays an empty string.
        assert_eq!(decoded("metadata="), json!({"metadata": ""}));
    }

    #[test]
    fn malformed_forms_are_refused() {
        for form in ["a[b=1", "a]b[=1", "a=1&a[b]=2", "a[0]=x&a[2]=y", "a=%FF"] {
            assert!(decode(form.as_bytes()).is_err(), "{form}");
        }
        assert_eq!(decode(b"").unwrap(), Map::new());
    }
}
