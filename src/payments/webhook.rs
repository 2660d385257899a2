//! Stripe webhook signatures and the few events Curbside acts on.
//!
//! Stripe signs `"{t}.{raw body}"` with HMAC-SHA256 under the endpoint's secret and sends
//! `Stripe-Signature: t=…,v1=…[,v1=…]` (several `v1` while a secret is being rolled). The check
//! is done here rather than with async-stripe-webhook's `construct_event` for two reasons: it
//! works on the raw bytes as received, and it reads only the fields Curbside needs, so an event
//! rendered with a newer Stripe API version than the SDK's cannot be refused as unparseable
//! (Stripe would then retry it for days). A test checks both agree on signatures.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

use super::{PaymentIntentId, PaymentMethodId, SetupIntentId};

/// How old (or how far in the future) a signature's timestamp may be: Stripe's default,
/// which bounds how long a captured request can be replayed.
pub const TOLERANCE_SECONDS: i64 = 300;

/// Why a webhook was refused. All become 400 for the sender; they are distinct for logs
/// and tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No `t=` or no `v1=` in the `Stripe-Signature` header.
    #[error("malformed Stripe-Signature header")]
    MalformedHeader,
    /// No `v1` signature matches the body under our secret: forged, altered or another secret.
    #[error("webhook signature does not match")]
    BadSignature,
    /// The signature is valid but its timestamp is outside the tolerance: a replay.
    #[error("webhook timestamp is {age_seconds} s away from now, beyond the tolerance")]
    StaleTimestamp { age_seconds: i64 },
    /// Correctly signed, but not an event we can read.
    #[error("webhook payload is not a Stripe event: {0}")]
    BadPayload(String),
}

/// The part of a Stripe event Curbside acts on. An event names an object; what the object
/// says (a saved card, a payment's result) is never taken from the event itself but asked
/// of Stripe, so a forged or replayed event, even signed with a leaked secret, can make
/// Curbside ask but never believe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    /// `evt_…`: Stripe may deliver an event more than once; handle each id once.
    pub id: String,
    /// The event's type as Stripe wrote it, e.g. `payment_intent.succeeded`.
    pub event_type: String,
    /// Seconds since the epoch at which Stripe created the event.
    pub created: i64,
    pub kind: WebhookEventKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEventKind {
    /// `setup_intent.succeeded`: a card may have been saved on this SetupIntent.
    SetupIntentSucceeded { setup_intent_id: SetupIntentId },
    /// `payment_intent.succeeded` or `payment_intent.payment_failed`: this PaymentIntent has
    /// a result.
    PaymentIntentUpdated { payment_intent_id: PaymentIntentId },
    /// `charge.refunded`, `charge.refund.updated`, `refund.updated` or `refund.failed`: a
    /// refund of this PaymentIntent changed.
    RefundsChanged { payment_intent_id: PaymentIntentId },
    /// `payment_method.detached`: this card may have been removed outside Curbside.
    CardDetached { payment_method_id: PaymentMethodId },
    /// Any other event type, which Curbside acknowledges and ignores.
    Other,
}

/// The longest id Stripe gives an object (its documented limit is 255 characters).
const MAX_ID_LENGTH: usize = 255;

/// A Stripe id or event type as Stripe writes them: letters, digits, `_` (and `.` in types),
/// at most 255. Anything else is refused before it reaches PostgreSQL or a log: a NUL byte is
/// not valid text there, and an 8 kB id overflows an index row.
fn stripe_token(value: &str, what: &str, dots: bool) -> Result<String, WebhookError> {
    let valid = (1..=MAX_ID_LENGTH).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || (dots && b == b'.'));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(WebhookError::BadPayload(format!(
            "{what} is not a Stripe identifier"
        )))
    }
}

/// Verifies `stripe_signature` over `raw_body` at time `now` (seconds since the epoch), then
/// reads the event.
pub fn verify(
    raw_body: &[u8],
    stripe_signature: &str,
    secret: &str,
    now: i64,
) -> Result<WebhookEvent, WebhookError> {
    let header = SignatureHeader::parse(stripe_signature)?;
    let mac = signer(secret, header.timestamp, raw_body);
    let matches = header.signatures.iter().any(|candidate| {
        hex::decode(candidate).is_ok_and(|bytes| mac.clone().verify_slice(&bytes).is_ok())
    });
    if !matches {
        return Err(WebhookError::BadSignature);
    }
    let age_seconds = now - header.timestamp;
    if age_seconds.abs() > TOLERANCE_SECONDS {
        return Err(WebhookError::StaleTimestamp { age_seconds });
    }
    parse_event(raw_body)
}

/// The `Stripe-Signature` header Stripe would send for `payload` at `timestamp`. Used by tests
/// that post webhooks themselves (the imitation of Stripe signs with its own implementation).
pub fn sign(payload: &[u8], secret: &str, timestamp: i64) -> String {
    let signature = signer(secret, timestamp, payload).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(signature))
}

fn signer(secret: &str, timestamp: i64, payload: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

struct SignatureHeader<'a> {
    timestamp: i64,
    signatures: Vec<&'a str>,
}

impl<'a> SignatureHeader<'a> {
    fn parse(header: &'a str) -> Result<Self, WebhookError> {
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for item in header.split(',') {
            // Other schemes (`v0` in test mode) are ignored, as Stripe's libraries do.
            match item.trim().split_once('=') {
                Some(("t", value)) => {
                    timestamp = Some(value.parse().map_err(|_| WebhookError::MalformedHeader)?);
                }
                Some(("v1", value)) => signatures.push(value),
                _ => {}
            }
        }
        match timestamp {
            Some(timestamp) if !signatures.is_empty() => Ok(Self {
                timestamp,
                signatures,
            }),
            _ => Err(WebhookError::MalformedHeader),
        }
    }
}

#[derive(Deserialize)]
struct RawEvent {
    id: String,
    created: i64,
    #[serde(rename = "type")]
    kind: String,
    data: RawData,
}

#[derive(Deserialize)]
struct RawData {
    object: Value,
}

fn parse_event(raw_body: &[u8]) -> Result<WebhookEvent, WebhookError> {
    let event: RawEvent = serde_json::from_slice(raw_body)
        .map_err(|error| WebhookError::BadPayload(error.to_string()))?;
    let id = stripe_token(&event.id, "the event id", false)?;
    let event_type = stripe_token(&event.kind, "the event type", true)?;
    let object_id = || {
        let id = event.data.object["id"]
            .as_str()
            .ok_or_else(|| WebhookError::BadPayload("data.object.id is missing".into()))?;
        stripe_token(id, "data.object.id", false)
    };
    let kind = match event_type.as_str() {
        "setup_intent.succeeded" => WebhookEventKind::SetupIntentSucceeded {
            setup_intent_id: SetupIntentId::new(object_id()?),
        },
        "payment_intent.succeeded" | "payment_intent.payment_failed" => {
            WebhookEventKind::PaymentIntentUpdated {
                payment_intent_id: PaymentIntentId::new(object_id()?),
            }
        }
        // A charge and a refund both name their PaymentIntent.
        "charge.refunded" | "charge.refund.updated" | "refund.updated" | "refund.failed" => {
            let payment_intent = event.data.object["payment_intent"]
                .as_str()
                .ok_or_else(|| {
                    WebhookError::BadPayload("data.object.payment_intent is missing".into())
                })?;
            WebhookEventKind::RefundsChanged {
                payment_intent_id: PaymentIntentId::new(stripe_token(
                    payment_intent,
                    "data.object.payment_intent",
                    false,
                )?),
            }
        }
        "payment_method.detached" => WebhookEventKind::CardDetached {
            payment_method_id: PaymentMethodId::new(object_id()?),
        },
        _ => WebhookEventKind::Other,
    };
    Ok(WebhookEvent {
        id,
        event_type,
        created: event.created,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const NOW: i64 = 1_800_000_000;

    fn event(kind: &str, object: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "id": "evt_1", "object": "event", "created": NOW, "type": kind,
            "data": {"object": object}, "livemode": false, "pending_webhooks": 1,
            "api_version": null, "request": {"id": null, "idempotency_key": null},
        }))
        .unwrap()
    }

    fn succeeded_payment() -> Vec<u8> {
        event(
            "payment_intent.succeeded",
            json!({"id": "pi_1", "object": "payment_intent",
                   "metadata": {"reservation_id": "0190b5c0-0000-7000-8000-000000000001"}}),
        )
    }

    #[test]
    fn a_signed_event_is_read() {
        let body = succeeded_payment();
        let header = sign(&body, SECRET, NOW - 10);
        let event = verify(&body, &header, SECRET, NOW).unwrap();
        assert_eq!(event.id, "evt_1");
        assert_eq!(event.event_type, "payment_intent.succeeded");
        assert_eq!(
            event.kind,
            WebhookEventKind::PaymentIntentUpdated {
                payment_intent_id: PaymentIntentId::new("pi_1"),
            }
        );
    }

    #[test]
    fn a_changed_body_or_another_secret_is_refused() {
        let body = succeeded_payment();
        let header = sign(&body, SECRET, NOW);
        let mut tampered = body.clone();
        let at = tampered.iter().position(|b| *b == b'1').unwrap();
        tampered[at] = b'2';
        assert_eq!(
            verify(&tampered, &header, SECRET, NOW),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify(&body, &header, "whsec_other", NOW),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn old_and_future_timestamps_are_refused_after_the_signature_check() {
        let body = succeeded_payment();
        let old = sign(&body, SECRET, NOW - TOLERANCE_SECONDS - 1);
        assert_eq!(
            verify(&body, &old, SECRET, NOW),
            Err(WebhookError::StaleTimestamp {
                age_seconds: TOLERANCE_SECONDS + 1
            })
        );
        let future = sign(&body, SECRET, NOW + TOLERANCE_SECONDS + 1);
        assert!(matches!(
            verify(&body, &future, SECRET, NOW),
            Err(WebhookError::StaleTimestamp { .. })
        ));
        assert!(
            verify(
                &body,
                &sign(&body, SECRET, NOW - TOLERANCE_SECONDS),
                SECRET,
                NOW
            )
            .is_ok()
        );
        // A stale timestamp with a wrong signature says nothing about the timestamp.
        assert_eq!(
            verify(&body, &old, "whsec_other", NOW),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn any_matching_v1_is_enough_and_malformed_headers_are_named() {
        let body = succeeded_payment();
        let good = sign(&body, SECRET, NOW);
        let v1 = good.split_once(",v1=").unwrap().1;
        let rolled = format!("t={NOW},v1={},v0=abc,v1={v1}", "00".repeat(32));
        assert!(verify(&body, &rolled, SECRET, NOW).is_ok());
        for header in ["", "t=abc,v1=00", &format!("t={NOW}"), &format!("v1={v1}")] {
            assert_eq!(
                verify(&body, header, SECRET, NOW),
                Err(WebhookError::MalformedHeader),
                "{header}"
            );
        }
        assert_eq!(
            verify(&body, &format!("t={NOW},v1=not-hex"), SECRET, NOW),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn event_kinds_name_the_object_and_nothing_more() {
        let read = |body: Vec<u8>| verify(&body, &sign(&body, SECRET, NOW), SECRET, NOW);
        let saved = read(event(
            "setup_intent.succeeded",
            json!({"id": "seti_1", "payment_method": "pm_1"}),
        ))
        .unwrap();
        assert_eq!(
            saved.kind,
            WebhookEventKind::SetupIntentSucceeded {
                setup_intent_id: SetupIntentId::new("seti_1"),
            }
        );
        let failed = read(event(
            "payment_intent.payment_failed",
            json!({"id": "pi_2", "last_payment_error": {"code": "card_declined"}}),
        ))
        .unwrap();
        assert_eq!(
            failed.kind,
            WebhookEventKind::PaymentIntentUpdated {
                payment_intent_id: PaymentIntentId::new("pi_2"),
            }
        );
        let refunded = read(event(
            "charge.refunded",
            json!({"id": "ch_1", "object": "charge", "payment_intent": "pi_3"}),
        ))
        .unwrap();
        assert_eq!(
            refunded.kind,
            WebhookEventKind::RefundsChanged {
                payment_intent_id: PaymentIntentId::new("pi_3"),
            }
        );
        assert!(matches!(
            read(event(
                "refund.failed",
                json!({"id": "re_1", "payment_intent": "pi'; drop"})
            )),
            Err(WebhookError::BadPayload(_))
        ));
        let detached = read(event(
            "payment_method.detached",
            json!({"id": "pm_4", "customer": null}),
        ))
        .unwrap();
        assert_eq!(
            detached.kind,
            WebhookEventKind::CardDetached {
                payment_method_id: PaymentMethodId::new("pm_4"),
            }
        );
        let other = read(event("customer.created", json!({"id": "cus_1"}))).unwrap();
        assert_eq!(other.kind, WebhookEventKind::Other);
        assert_eq!(other.event_type, "customer.created");
        assert!(matches!(
            read(b"not json".to_vec()),
            Err(WebhookError::BadPayload(_))
        ));
        assert!(matches!(
            read(event(
                "payment_intent.succeeded",
                json!({"object": "payment_intent"})
            )),
            Err(WebhookError::BadPayload(_))
        ));
    }

    #[test]
    fn ids_that_are_not_stripes_are_refused() {
        let read = |body: Vec<u8>| verify(&body, &sign(&body, SECRET, NOW), SECRET, NOW);
        let with_id = |id: &str| {
            let mut value: Value = serde_json::from_slice(&succeeded_payment()).unwrap();
            value["id"] = json!(id);
            serde_json::to_vec(&value).unwrap()
        };
        for bad in [
            "evt_\u{0}1",
            &"e".repeat(8 * 1024),
            "",
            "evt 1",
            "evt_1;drop",
        ] {
            assert!(
                matches!(read(with_id(bad)), Err(WebhookError::BadPayload(_))),
                "{bad:?}"
            );
        }
        assert!(read(with_id(&"e".repeat(255))).is_ok());
        let nul_object = event("payment_intent.succeeded", json!({"id": "pi_\u{0}"}));
        assert!(matches!(read(nul_object), Err(WebhookError::BadPayload(_))));
        let odd_type = event("payment intent\u{0}", json!({"id": "pi_1"}));
        assert!(matches!(read(odd_type), Err(WebhookError::BadPayload(_))));
    }

    #[test]
    fn signatures_agree_with_async_stripe_webhook() {
        let body = succeeded_payment();
        let text = std::str::from_utf8(&body).unwrap();
        let theirs = stripe_webhook::Webhook::generate_test_header(text, SECRET, Some(NOW));
        assert_eq!(theirs, sign(&body, SECRET, NOW));
        assert!(verify(&body, &theirs, SECRET, NOW).is_ok());
    }
}
