//! Posting events to the webhook endpoint, signed as Stripe signs them.
//!
//! Each event is delivered by a task of its own, so a slow receiver holds up no request (Stripe
//! does not promise order either). A failed attempt (no answer, or not 2xx) is retried after
//! the configured delay, doubled each time, up to the configured number of attempts.

use std::sync::Arc;

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use super::Shared;
use super::objects::now;

/// The `Stripe-Signature` header Stripe sends with `payload` at `timestamp` (seconds since the
/// epoch), by Stripe's published scheme: `t={timestamp},v1={hex HMAC-SHA256 of
/// "{timestamp}.{payload}" under the secret}`. Written from the scheme rather than taken from
/// the product, so the product's verifier is tested against a second implementation.
pub fn webhook_signature(payload: &[u8], secret: &str, timestamp: i64) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(payload);
    let signature = hex::encode(mac.finalize().into_bytes());
    format!("t={timestamp},v1={signature}")
}

pub(super) fn spawn_delivery(shared: Arc<Shared>, index: usize) {
    tokio::spawn(async move { deliver(&shared, index).await });
}

async fn deliver(shared: &Shared, index: usize) {
    let payload = {
        let state = shared.lock();
        // Serialized once, so every attempt signs and sends the very same bytes.
        serde_json::to_vec(&state.events[index].payload).expect("JSON values serialize")
    };
    let mut wait = shared.webhook_retry_delay;
    for attempt in 1..=shared.webhook_attempts {
        let Some(url) = shared.lock().webhook_url.clone() else {
            return;
        };
        let signature = webhook_signature(&payload, &shared.webhook_secret, now());
        let result = shared
            .http
            .post(&url)
            .header("content-type", "application/json; charset=utf-8")
            .header(
                "user-agent",
                "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            )
            .header("stripe-signature", signature)
            .body(payload.clone())
            .send()
            .await;
        let status = result.as_ref().ok().map(|response| response.status());
        let delivered = status.is_some_and(|status| status.is_success());
        {
            let mut state = shared.lock();
            let event = &mut state.events[index];
            event.attempts = attempt;
            event.last_status = status.map(|status| status.as_u16());
            event.delivered = delivered;
        }
        shared.notify();
        if delivered {
            return;
        }
        if let Err(error) = &result {
            tracing::debug!(%error, attempt, "webhook delivery failed");
        }
        if attempt < shared.webhook_attempts {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_stripes_scheme() {
        // Worked out apart from this code, with Python's hmac module:
        // hmac.new(b"whsec_test_secret", b"1800000000." + payload, hashlib.sha256).hexdigest()
        let payload = br#"{"id":"evt_1","object":"event"}"#;
        assert_eq!(
            webhook_signature(payload, "whsec_test_secret", 1_800_000_000),
            "t=1800000000,v1=d0ffffa7434b9a227ebe60bf97ad6137fbc31cbd39613e1ac0e4bc924c41fde7"
        );
    }
}
