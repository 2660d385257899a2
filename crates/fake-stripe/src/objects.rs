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

/// Why a charge failed, as in its `failure_code` and `outcome`.
pub struct ChargeFailure<'a> {
    pub code: &'a str,
    pub decline_code: &'a str,
    pub message: &'a str,
}

/// The charge a payment attempt on `intent` with `payment_method` (the object) made: succeeded
/// unless `failure`. Refund fields start at none refunded (see [`with_refunds`]).
pub fn charge(
    id: &str,
    intent: &Value,
    payment_method: &Value,
    failure: Option<&ChargeFailure<'_>>,
) -> Value {
    let amount = intent["amount"].as_i64().unwrap_or_default();
    let succeeded = failure.is_none();
    let card = &payment_method["card"];
    let outcome = match failure {
        None => json!({
            "advice_code": null,
            "network_advice_code": null,
            "network_decline_code": null,
            "network_status": "approved_by_network",
            "reason": null,
            "seller_message": "Payment complete.",
            "type": "authorized"
        }),
        Some(failure) => json!({
            "advice_code": null,
            "network_advice_code": null,
            "network_decline_code": null,
            "network_status": "declined_by_network",
            "reason": failure.decline_code,
            "seller_message": "The bank did not return any further details with this decline.",
            "type": "issuer_declined"
        }),
    };
    let details = json!({
        "card": {
            "amount_authorized": if succeeded { Value::from(amount) } else { Value::Null },
            "authorization_code": null,
            "brand": card["brand"],
            "checks": card["checks"],
            "country": card["country"],
            "exp_month": card["exp_month"],
            "exp_year": card["exp_year"],
            "extended_authorization": {"status": "disabled"},
            "fingerprint": card["fingerprint"],
            "funding": card["funding"],
            "incremental_authorization": {"status": "unavailable"},
            "installments": null,
            "last4": card["last4"],
            "mandate": null,
            "multicapture": {"status": "unavailable"},
            "network": card["brand"],
            "network_token": {"used": false},
            "network_transaction_id": null,
            "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
            "regulated_status": card["regulated_status"],
            "three_d_secure": null,
            "transaction_link_id": null,
            "wallet": null
        },
        "type": "card"
    });
    // In two halves, as the PaymentIntent: one `json!` this size exceeds the recursion limit.
    let mut charge = json!({
        "amount": amount,
        "amount_captured": if succeeded { amount } else { 0 },
        "amount_refunded": 0,
        "application": null,
        "application_fee": null,
        "application_fee_amount": null,
        "balance_transaction": if succeeded { Value::from(new_id("txn")) } else { Value::Null },
        "billing_details": payment_method["billing_details"],
        "calculated_statement_descriptor": null,
        "captured": succeeded,
        "created": now(),
        "currency": intent["currency"],
        "customer": intent["customer"],
        "description": intent["description"],
        "disputed": false,
        "failure_balance_transaction": null,
        "failure_code": failure.map(|f| f.code),
        "failure_message": failure.map(|f| f.message),
        "fraud_details": {},
        "id": id,
        "livemode": false,
    });
    let rest = json!({
        "metadata": intent["metadata"],
        "object": "charge",
        "on_behalf_of": null,
        "outcome": outcome,
        "paid": succeeded,
        "payment_intent": intent["id"],
        "payment_method": payment_method["id"],
        "payment_method_details": details,
        "receipt_email": null,
        "receipt_number": null,
        "receipt_url": format!("https://pay.stripe.com/receipts/payment/{}", random_alphanumeric(64)),
        "refunded": false,
        "refunds": list(Vec::new(), false, &format!("/v1/charges/{id}/refunds")),
        "review": null,
        "shipping": null,
        "source": null,
        "source_transfer": null,
        "statement_descriptor": null,
        "statement_descriptor_suffix": null,
        "status": if succeeded { "succeeded" } else { "failed" },
        "transfer_data": null,
        "transfer_group": null
    });
    if let (Some(charge), Value::Object(rest)) = (charge.as_object_mut(), rest) {
        charge.extend(rest);
    }
    charge
}

/// `charge` with its refund fields brought up to `refunds` (all of its refunds, oldest
/// first): `amount_refunded` and `refunded` count those that succeeded, `refunds` lists
/// every one, newest first.
pub fn with_refunds(mut charge: Value, refunds: &[&Value]) -> Value {
    let refunded: i64 = refunds
        .iter()
        .filter(|refund| refund["status"] == "succeeded")
        .filter_map(|refund| refund["amount"].as_i64())
        .sum();
    charge["amount_refunded"] = refunded.into();
    charge["refunded"] = (refunded > 0 && Some(refunded) == charge["amount"].as_i64()).into();
    let newest_first = refunds
        .iter()
        .rev()
        .map(|refund| (*refund).clone())
        .collect();
    let url = format!(
        "/v1/charges/{}/refunds",
        charge["id"].as_str().unwrap_or_default()
    );
    charge["refunds"] = list(newest_first, false, &url);
    charge
}

pub struct NewRefund<'a> {
    pub id: &'a str,
    pub amount: i64,
    /// The charge refunded (the object).
    pub charge: &'a Value,
    pub reason: Option<&'a str>,
    pub metadata: Value,
    /// `pending` (until settled) rather than `succeeded`.
    pub pending: bool,
}

/// A card refund. Stripe has no example Refund in its fixtures: the fields are those of its
/// Refund object as async-stripe reads it (`stripe_shared::Refund`), which a test checks.
pub fn refund(new: &NewRefund<'_>) -> Value {
    let charge = new.charge;
    json!({
        "amount": new.amount,
        "balance_transaction": new_id("txn"),
        "charge": charge["id"],
        "created": now(),
        "currency": charge["currency"],
        "customer": charge["customer"],
        "customer_account": null,
        "description": null,
        "destination_details": {
            "card": {
                "reference": null,
                "reference_status": "pending",
                "reference_type": null,
                "type": "refund"
            },
            "type": "card"
        },
        "failure_balance_transaction": null,
        "failure_reason": null,
        "id": new.id,
        "instructions_email": null,
        "metadata": new.metadata,
        "next_action": null,
        "object": "refund",
        "payment_intent": charge["payment_intent"],
        "payment_method": charge["payment_method"],
        "pending_reason": if new.pending { Value::from("processing") } else { Value::Null },
        "presentment_details": null,
        "reason": new.reason,
        "receipt_number": null,
        "source_transfer_reversal": null,
        "status": if new.pending { "pending" } else { "succeeded" },
        "transfer_reversal": null
    })
}

/// One of Stripe's lists: a page of `data` and whether more follow.
pub fn list(data: Vec<Value>, has_more: bool, url: &str) -> Value {
    json!({
        "data": data,
        "has_more": has_more,
        "object": "list",
        "url": url
    })
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
        let method = payment_method("pm_1", card, None);
        let charged = charge("ch_1", &intent, &method, None);
        let refunded = refund(&NewRefund {
            id: "re_1",
            amount: 40,
            charge: &charged,
            reason: None,
            metadata: json!({}),
            pending: false,
        });
        let charged = with_refunds(charged, &[&refunded]);
        let failure = ChargeFailure {
            code: "card_declined",
            decline_code: "generic_decline",
            message: "Your card was declined.",
        };
        let cases = [
            ("customer", customer("cus_1", None, None, json!({}))),
            ("payment_method", method.clone()),
            ("setup_intent", setup.clone()),
            ("charge", charged.clone()),
            ("charge", charge("ch_2", &intent, &method, Some(&failure))),
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
        // The card under the charge's payment_method_details, two levels down.
        assert_eq!(
            keys(&charged["payment_method_details"]["card"]),
            keys(&fixtures["charge"]["payment_method_details"]["card"]),
        );
        assert_eq!(charged["amount_refunded"], 40);
        assert_eq!(charged["refunded"], false);
        assert_eq!(charged["refunds"]["data"][0]["id"], "re_1");
    }

    /// Stripe's fixtures have no Refund: every field of async-stripe's `stripe_shared::Refund`
    /// (async-stripe-shared 1.0.0-rc.10, `src/refund.rs`), which reads `amount`, `created`,
    /// `currency` and `id` as required and the others as nullable, plus `object`.
    #[test]
    fn refunds_have_every_field_async_stripe_reads() {
        let card = cards::find("pm_card_pendingRefund").unwrap();
        let intent = payment_intent(&NewPaymentIntent {
            id: "pi_1",
            amount: 100,
            currency: "usd",
            customer: Some("cus_1"),
            payment_method: Some("pm_1"),
            description: None,
            metadata: json!({}),
        });
        let charged = charge("ch_1", &intent, &payment_method("pm_1", card, None), None);
        let pending = refund(&NewRefund {
            id: "re_1",
            amount: 100,
            charge: &charged,
            reason: Some("requested_by_customer"),
            metadata: json!({"k": "v"}),
            pending: true,
        });
        let expected: BTreeSet<String> = [
            "amount",
            "balance_transaction",
            "charge",
            "created",
            "currency",
            "customer",
            "customer_account",
            "description",
            "destination_details",
            "failure_balance_transaction",
            "failure_reason",
            "id",
            "instructions_email",
            "metadata",
            "next_action",
            "object",
            "payment_intent",
            "payment_method",
            "pending_reason",
            "presentment_details",
            "reason",
            "receipt_number",
            "source_transfer_reversal",
            "status",
            "transfer_reversal",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        assert_eq!(keys(&pending), expected);
        assert_eq!(pending["status"], "pending");
        assert_eq!(pending["pending_reason"], "processing");
        assert_eq!(pending["charge"], "ch_1");
        assert_eq!(pending["payment_intent"], "pi_1");
        assert_eq!(pending["customer"], "cus_1");
        // `destination_details.type` names the one sub-object present, as async-stripe expects.
        assert_eq!(pending["destination_details"]["type"], "card");
        assert_eq!(pending["destination_details"]["card"]["type"], "refund");
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
