//! Posting events to the webhook endpoint, signed as Stripe signs them.
//!
//! Each event is delivered by a task of its own, so a slow receiver holds up no request (Stripe
//! does not promise order either). A failed attempt (no answer, or not 2xx) is retried after
//! the configured delay, doubled each time, up to the configured number of attempts.

use std::sync::Arc;

use super::Shared;
use super::objects::now;
use crate::payments::webhook::sign;

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
        let signature = sign(&payload, &shared.webhook_secret, now());
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
