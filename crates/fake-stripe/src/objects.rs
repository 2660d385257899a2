//! Stripe objects as Stripe sends them.
//!
//! Each builder starts from the shape of Stripe's own example object (`stripe-fixtures.json`
//! from Stripe's OpenAPI repository: every field present, in the same nesting) with the
//! placeholder values replaced by what a real test-mode object holds. async-stripe decodes
//! strictly, so a missing field, or a nested object of the wrong shape, fails the whole
//! response; a test checks the field sets against the fixtures.

use rand::Rng as _;
use rand::distr::Alphanumeric;
use serde_json::{Map, Value, json};

/// The API version events are rendered with: the one async-stripe was generated for.
pub const API_VERSION: &str = "2026-09-30.endive";

/// A Stripe-looking id: `cus_` followed by 24 letters and digits.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_alphanumeric(24))
}

pub fn random_alphanumeric(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn customer(id: &str, email: Option<&str>, name: Option<&str>, metadata: Value) -> Value {
    let invoice_prefix = random_alphanumeric(8).to_ascii_uppercase();
    json!({
        "address": null,
        "balance": 0,
        "created": now(),
        "currency": null,
        "default_source": null,
        "delinquent": false,
        "description": null,
        "discount": null,
        "email": email,
        "id": id,
        "invoice_prefix": invoice_prefix,
        "invoice_settings": {
            "custom_fields": null,
            "default_payment_method": null,
            "footer": null,
            "rendering_options": null
        },
        "livemode": false,
        "metadata": metadata,
        "name": name,
        "next_invoice_sequence": 1,
        "object": "customer",
        "phone": null,
        "preferred_locales": [],
        "shipping": null,
        "tax_exempt": "none",
        "test_clock": null
    })
}

/// A card payment method; `card` comes from the test card it was made from.
pub fn payment_method(id: &str, card: &super::cards::TestCard, customer: Option<&str>) -> Value {
    json!({
        "allow_redisplay": "unspecified",
        "billing_details": {
            "address": {
                "city": null,
                "country": null,
                "line1": null,
                "line2": null,
                "postal_code": null,
                "state": null
            },
            "email": null,
            "name": null,
            "phone": null,
            "tax_id": null
        },
        "card": {
            "brand": card.brand,
            "checks": {
                "address_line1_check": null,
                "address_postal_code_check": null,
                "cvc_check": "pass"
            },
            "country": "US",
            "display_brand": card.brand,
            "exp_month": 12,
            "exp_year": 2034,
            "fingerprint": card.fingerprint,
            "funding": "credit",
            "generated_from": null,
            "last4": card.last4,
            "networks": {
                "available": [card.brand],
                "preferred": null
            },
            "regulated_status": "unregulated",
            "three_d_secure_usage": {
                "supported": true
            },
            "wallet": null
        },
        "created": now(),
        "customer": customer,
        "customer_account": null,
        "id": id,
        "livemode": false,
        "metadata": {},
        "object": "payment_method",
        "type": "card"
    })
}

pub fn setup_intent(id: &str, customer: Option<&str>, usage: &str, metadata: Value) -> Value {
    json!({
        "application": null,
        "automatic_payment_methods": null,
        "cancellation_reason": null,
        "client_secret": format!("{id}_secret_{}", random_alphanumeric(32)),
        "created": now(),
        "customer": customer,
        "description": null,
        "excluded_payment_method_types": null,
        "flow_directions": null,
        "id": id,
        "last_setup_error": null,
        "latest_attempt": null,
        "livemode": false,
        "mandate": null,
        "metadata": metadata,
        "next_action": null,
        "object": "setup_intent",
        "on_behalf_of": null,
        "payment_method": null,
        "payment_method_configuration_details": null,
        "payment_method_options": {
            "card": {
                "mandate_options": null,
                "network": null,
                "request_three_d_secure": "automatic"
            }
        },
        "payment_method_types": ["card"],
        "single_use_mandate": null,
        "status": "requires_payment_method",
        "usage": usage
    })
}

pub struct NewPaymentIntent<'a> {
    pub id: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub customer: Option<&'a str>,
    pub payment_method: Option<&'a str>,
    pub description: Option<&'a str>,
    pub metadata: Value,
}

pub fn payment_intent(new: &NewPaymentIntent<'_>) -> Value {
    let status = if new.payment_method.is_some() {
        "requires_confirmation"
    } else {
        "requires_payment_method"
    };
    // In two halves: one `json!` of this size exceeds the macro recursion limit.
    let mut intent = json!({
        "amount": new.amount,
        "amount_capturable": 0,
        "amount_details": {
            "tip": {}
        },
        "amount_received": 0,
        "application": null,
        "application_fee_amount": null,
        "automatic_payment_methods": null,
        "canceled_at": null,
        "cancellation_reason": null,
        "capture_method": "automatic_async",
        "client_secret": format!("{}_secret_{}", new.id, random_alphanumeric(25)),
        "confirmation_method": "automatic",
        "created": now(),
        "currency": new.currency,
        "customer": new.customer,
        "customer_account": null,
        "description": new.description,
        "excluded_payment_method_types": null,
        "id": new.id,
    });
    let rest = json!({
        "last_payment_error": null,
        "latest_charge": null,
        "livemode": false,
        "managed_payments": null,
        "metadata": new.metadata,
        "next_action": null,
        "object": "payment_intent",
        "on_behalf_of": null,
        "payment_method": new.payment_method,
        "payment_method_configuration_details": null,
        "payment_method_options": {
            "card": {
                "installments": null,
                "mandate_options": null,
                "network": null,
                "request_three_d_secure": "automatic"
            }
        },
        "payment_method_types": ["card"],
        "processing": null,
        "receipt_email": null,
        "review": null,
        "setup_future_usage": null,
        "shipping": null,
        "source": null,
        "statement_descriptor": null,
        "statement_descriptor_suffix": null,
        "status": status,
        "transfer_data": null,
        "transfer_group": null
    });
    if let (Some(intent), Value::Object(rest)) = (intent.as_object_mut(), rest) {
        intent.extend(rest);
    }
    intent
}

/// An event as delivered to webhook endpoints, `object` being a snapshot taken now.
pub fn event(
    id: &str,
    kind: &str,
    object: &Value,
    request_id: Option<&str>,
    idempotency_key: Option<&str>,
) -> Value {
    json!({
        "api_version": API_VERSION,
        "created": now(),
        "data": {
            "object": object
        },
        "id": id,
        "livemode": false,
        "object": "event",
        "pending_webhooks": 1,
        "request": {
            "id": request_id,
            "idempotency_key": idempotency_key
        },
        "type": kind
    })
}

/// The body of every Stripe error: `{"error": {…}}` with the fields that apply.
pub fn error_body(kind: &str, fields: Map<String, Value>) -> Value {
    let mut error = fields;
    error.insert("type".into(), kind.into());
    if let Some(code) = error.get("code").and_then(Value::as_str) {
        let doc_url = format!(
            "https://stripe.com/docs/error-codes/{}",
            code.replace('_', "-")
        );
        error.insert("doc_url".into(), doc_url.into());
    }
    json!({ "error": error })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::cards;

    /// Stripe's example objects (see tests/fixtures/README.md).
    fn fixtures() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/stripe-fixtures.json"
        );
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|error| panic!("cannot read {path}: {error}"));
        serde_json::from_str(&text).unwrap()
    }

    fn keys(value: &Value) -> BTreeSet<String> {
        value.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn objects_have_every_field_of_stripes_examples() {
        let fixtures = fixtures();
        let card = cards::find("pm_card_visa").unwrap();
        let intent = payment_intent(&NewPaymentIntent {
            id: "pi_1",
            amount: 100,
            currency: "usd",
            customer: None,
            payment_method: None,
            description: None,
            metadata: json!({}),
        });
        let setup = setup_intent("seti_1", None, "off_session", json!({}));
        let cases = [
            ("customer", customer("cus_1", None, None, json!({}))),
            ("payment_method", payment_method("pm_1", card, None)),
            ("setup_intent", setup.clone()),
            ("payment_intent", intent),
            (
                "event",
                event("evt_1", "setup_intent.created", &setup, None, None),
            ),
        ];
        for (name, ours) in cases {
            let theirs = &fixtures[name];
            assert_eq!(keys(&ours), keys(theirs), "{name}");
            for (field, value) in theirs.as_object().unwrap() {
                // One level down too, where both sides are objects (card, invoice_settings…).
                if let (Some(_), Some(_)) = (value.as_object(), ours[field].as_object())
                    && !value.as_object().unwrap().is_empty()
                    && field != "metadata"
                    && field != "payment_method_options"
                    && !(name == "event" && field == "data")
                {
                    assert_eq!(keys(&ours[field]), keys(value), "{name}.{field}");
                }
            }
        }
    }

    #[test]
    fn ids_look_like_stripes() {
        let id = new_id("pi");
        assert!(id.starts_with("pi_"));
        assert_eq!(id.len(), 27);
        assert!(id[3..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(new_id("pi"), id);
    }
}
