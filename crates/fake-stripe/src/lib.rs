//! A stateful imitation of Stripe for tests and development.
//!
//! It speaks Stripe's wire format (bearer secret key, form-encoded parameters, complete JSON
//! objects, Stripe's error bodies, `Idempotency-Key` replay, signed webhooks) for the endpoints
//! Curbside uses, so Curbside's real Stripe adapter runs against it over HTTP:
//!
//! | method | path |
//! |---|---|
//! | POST | `/v1/customers`, GET `/v1/customers/{id}` |
//! | POST | `/v1/customers/{id}` (`email`, `name`, `description`, `metadata[…]` merged, `invoice_settings[default_payment_method]`: a method attached to this customer; an empty value unsets; `customer.updated` when something changed) |
//! | GET | `/v1/customers/{id}/payment_methods` (`type`, `limit`, `starting_after`, `ending_before`: the customer's attached methods, newest first) |
//! | POST | `/v1/setup_intents`, GET `/v1/setup_intents/{id}` |
//! | POST | `/v1/setup_intents/{id}/confirm` (`payment_method=pm_card_visa`: what Stripe.js does when the driver saves a card; the publishable key with `client_secret` works too) |
//! | POST | `/v1/payment_intents`, GET `/v1/payment_intents/{id}` |
//! | POST | `/v1/payment_intents/{id}/confirm` (the card holder back on-session, as `stripe.confirmCardPayment` does: a card that wants 3-D Secure answers `requires_action` with a `next_action`; confirming it again stands for passing the bank's challenge) |
//! | GET | `/v1/payment_methods/{id}` |
//! | POST | `/v1/payment_methods/{id}/detach` (for good: a detached method is refused for payments; `payment_method.detached`, and `customer.updated` if it was the customer's default, which is unset) |
//! | POST | `/v1/refunds` (`payment_intent` or `charge`, `amount` (all that is left by default), `reason`, `metadata[…]`: succeeded at once with `refund.created` and `charge.refunded`, or, for `pm_card_pendingRefund`, `pending` with `refund.created` only) |
//! | GET | `/v1/refunds/{id}`, `/v1/refunds` (`payment_intent`, `charge`, `limit`, `starting_after`, `ending_before`: newest first) |
//! | GET | `/v1/charges/{id}` (a PaymentIntent's `latest_charge`, with its refunds), `/v1/charges/{id}/refunds` |
//!
//! Test cards are in [`cards`]. A control API under `/_fake/` (a path Stripe never uses) lets a
//! test drive a separately running `fake-stripe` too; every control has a method on
//! [`FakeStripe`] for tests in the same process:
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/_fake/payment_intents?customer=&reservation_id=` | `{"count", "data"}` of PaymentIntents created |
//! | GET | `/_fake/refunds` | `{"count", "data"}` of every refund, oldest first |
//! | POST | `/_fake/refunds/settle` | `{"settled"}`: every pending refund succeeds, with its events (`refund.updated`, `charge.refund.updated`, `charge.refunded`) |
//! | GET | `/_fake/requests` | every API request: method, path, idempotency key, status, replayed |
//! | GET | `/_fake/events` | every event and its delivery: attempts, delivered, last status |
//! | POST | `/_fake/faults` | `{"path_prefix", "count", "status"?}`: the next `count` requests under the prefix answer `status` (500) without running |
//! | DELETE | `/_fake/faults` | forget the faults not yet used |
//! | PUT | `/_fake/delay` | `{"path_prefix"?, "millis"}`: answer requests under the prefix that much later (after doing the work) |
//! | DELETE | `/_fake/delay` | answer at once again |
//! | PUT | `/_fake/webhook` | `{"url": "http://…" or null}`: where events are posted |
//!
//! It is a crate of its own, used by Curbside's tests as a dev-dependency and run by hand as
//! the `fake-stripe` binary ([`cli`]), so that none of it ships in the product. It shares no
//! code with the product either: its webhooks are signed by its own implementation of
//! Stripe's scheme, so the product's verifier is checked against a second one.

mod api;
pub mod cards;
pub mod cli;
mod control;
mod form;
mod objects;
mod webhooks;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{oneshot, watch};

pub use self::api::RequestRecord;
pub use self::cards::TestCard;
pub use self::webhooks::webhook_signature;

/// The webhook secret used when none is given: the API's development default
/// (`STRIPE_WEBHOOK_SECRET`), so the two started by hand agree and webhooks verify.
pub const DEFAULT_WEBHOOK_SECRET: &str = "whsec_curbside_development";

/// A secret key the imitation accepts (any `sk_test_…` does).
pub const TEST_SECRET_KEY: &str = "sk_test_curbside_fake_stripe";

/// A publishable key the imitation accepts (any `pk_test_…` does), for playing Stripe.js.
pub const TEST_PUBLISHABLE_KEY: &str = "pk_test_curbside_fake_stripe";

#[derive(Debug, Clone)]
pub struct FakeStripeOptions {
    /// `127.0.0.1:0` picks a free port.
    pub bind: SocketAddr,
    /// Where events are posted; none are posted without it (they are still listed).
    pub webhook_url: Option<String>,
    pub webhook_secret: String,
    /// Delivery attempts per event, the first included.
    pub webhook_attempts: u32,
    /// Wait before the second attempt, doubled before each later one.
    pub webhook_retry_delay: Duration,
}

impl Default for FakeStripeOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            webhook_url: None,
            webhook_secret: DEFAULT_WEBHOOK_SECRET.to_owned(),
            webhook_attempts: 4,
            webhook_retry_delay: Duration::from_secs(1),
        }
    }
}

/// A running imitation of Stripe. Stops when dropped.
pub struct FakeStripe {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Dropping it (with the handle) ends the server task.
    _stop: oneshot::Sender<()>,
}

/// Which PaymentIntents to count.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct PaymentIntentFilter {
    pub customer: Option<String>,
    /// `metadata[reservation_id]`
    pub reservation_id: Option<String>,
}

/// An event the imitation created, and how its delivery went.
#[derive(Debug, Clone, Serialize)]
pub struct SentEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The event object as posted.
    pub payload: Value,
    pub attempts: u32,
    pub delivered: bool,
    /// The status of the last attempt, if the receiver answered at all.
    pub last_status: Option<u16>,
}

impl FakeStripe {
    /// Binds first, then serves in the background: the URL works as soon as this returns.
    pub async fn start(options: FakeStripeOptions) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(options.bind).await?;
        let addr = listener.local_addr()?;
        let shared = Shared::new(&options);
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(shared.clone());
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%error, "fake Stripe stopped");
            }
        });
        Ok(Self {
            addr,
            shared,
            _stop: stop,
        })
    }

    /// `http://127.0.0.1:PORT/`: what `STRIPE_API_BASE` should be.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn webhook_secret(&self) -> &str {
        &self.shared.webhook_secret
    }

    /// Where later events are posted (`None`: nowhere).
    pub fn set_webhook_url(&self, url: Option<String>) {
        self.shared.lock().webhook_url = url;
    }

    /// The PaymentIntents created so far that match, oldest first.
    pub fn payment_intents(&self, filter: &PaymentIntentFilter) -> Vec<Value> {
        self.shared.payment_intents(filter)
    }

    pub fn payment_intent_count(&self, filter: &PaymentIntentFilter) -> usize {
        self.payment_intents(filter).len()
    }

    /// Every refund created so far, oldest first, as it is now.
    pub fn refunds(&self) -> Vec<Value> {
        self.shared.lock().store.refunds.clone()
    }

    /// Plays the bank confirming the refunds left `pending` (those of `pm_card_pendingRefund`):
    /// each succeeds, its charge counts it, and `refund.updated`, `charge.refund.updated` and
    /// `charge.refunded` are sent. Returns how many were settled.
    pub fn settle_pending_refunds(&self) -> usize {
        api::settle_pending_refunds(&self.shared)
    }

    /// The next `count` requests whose path starts with `path_prefix` answer `status`
    /// (500, 503, 429…) without doing anything.
    pub fn fail_next(&self, path_prefix: &str, count: u32, status: StatusCode) {
        self.shared.lock().faults.push(Fault {
            path_prefix: path_prefix.to_owned(),
            remaining: count,
            status,
        });
    }

    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Answers requests under `path_prefix` `delay` late, after doing the work.
    pub fn delay_responses(&self, path_prefix: &str, delay: Duration) {
        self.shared.lock().delay = Some(Delay {
            path_prefix: path_prefix.to_owned(),
            delay,
        });
    }

    pub fn clear_delay(&self) {
        self.shared.lock().delay = None;
    }

    /// Every API request received so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// Every event created so far, with its delivery state.
    pub fn events(&self) -> Vec<SentEvent> {
        self.shared.lock().events.clone()
    }

    /// Waits until an event matching `predicate` exists (delivered or not: look at the
    /// returned value), up to `timeout`.
    pub async fn wait_for_event(
        &self,
        timeout: Duration,
        predicate: impl Fn(&SentEvent) -> bool,
    ) -> Option<SentEvent> {
        let mut changes = self.shared.changes.subscribe();
        let find = || self.events().into_iter().find(|event| predicate(event));
        tokio::time::timeout(timeout, async {
            loop {
                if let Some(event) = find() {
                    return Some(event);
                }
                if changes.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// Plays the driver saving a card in the browser: confirms the SetupIntent with a test
    /// payment method (`pm_card_visa`…) over HTTP, as Stripe.js would with the publishable key
    /// and the client secret. Returns the status and Stripe's JSON answer.
    pub async fn confirm_setup_intent(
        &self,
        client_secret: &str,
        payment_method: &str,
    ) -> reqwest::Result<(u16, Value)> {
        save_card(
            &self.shared.http,
            &self.base_url(),
            client_secret,
            payment_method,
        )
        .await
    }

    /// Plays the card holder paying a PaymentIntent in the browser (see [`pay`]).
    pub async fn confirm_payment_intent(
        &self,
        client_secret: &str,
        payment_method: Option<&str>,
    ) -> reqwest::Result<(u16, Value)> {
        pay(
            &self.shared.http,
            &self.base_url(),
            client_secret,
            payment_method,
        )
        .await
    }
}

/// Confirms the PaymentIntent a client secret belongs to, as Stripe.js does when the card
/// holder pays on-session (`payment_method` `None`: the intent's own card). Returns the
/// status and Stripe's JSON answer.
pub async fn pay(
    http: &reqwest::Client,
    base_url: &str,
    client_secret: &str,
    payment_method: Option<&str>,
) -> reqwest::Result<(u16, Value)> {
    confirm_as_browser(
        http,
        base_url,
        "payment_intents",
        client_secret,
        payment_method,
    )
    .await
}

/// Confirms the SetupIntent a client secret belongs to with a test card, as Stripe.js does
/// in the browser. `base_url` ends with `/`.
pub async fn save_card(
    http: &reqwest::Client,
    base_url: &str,
    client_secret: &str,
    payment_method: &str,
) -> reqwest::Result<(u16, Value)> {
    confirm_as_browser(
        http,
        base_url,
        "setup_intents",
        client_secret,
        Some(payment_method),
    )
    .await
}

/// `POST /v1/{objects}/{id}/confirm` with the publishable key and the client secret, as
/// Stripe.js calls it (the intent's id is the part of the secret before `_secret_`).
async fn confirm_as_browser(
    http: &reqwest::Client,
    base_url: &str,
    objects: &str,
    client_secret: &str,
    payment_method: Option<&str>,
) -> reqwest::Result<(u16, Value)> {
    let id = client_secret
        .split_once("_secret_")
        .map_or(client_secret, |(id, _)| id);
    let mut pairs = vec![("client_secret", client_secret)];
    pairs.extend(payment_method.map(|pm| ("payment_method", pm)));
    let form = serde_urlencoded::to_string(pairs).expect("pairs of strings encode");
    let response = http
        .post(format!("{base_url}v1/{objects}/{id}/confirm"))
        .bearer_auth(TEST_PUBLISHABLE_KEY)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

impl std::fmt::Debug for FakeStripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeStripe")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// State shared by the server, the delivery tasks and the handle.
pub(crate) struct Shared {
    /// Everything mutable, under one lock that is never held across an `.await`.
    state: Mutex<FakeState>,
    webhook_secret: String,
    webhook_attempts: u32,
    webhook_retry_delay: Duration,
    /// For webhook deliveries (and the handle's browser imitation).
    http: reqwest::Client,
    /// Bumped on every change to the event list, so waiters need not poll.
    changes: watch::Sender<u64>,
}

#[derive(Default)]
struct FakeState {
    store: api::Store,
    faults: Vec<Fault>,
    delay: Option<Delay>,
    requests: Vec<RequestRecord>,
    events: Vec<SentEvent>,
    webhook_url: Option<String>,
}

#[derive(Debug, Clone)]
struct Fault {
    path_prefix: String,
    remaining: u32,
    status: StatusCode,
}

#[derive(Debug, Clone)]
struct Delay {
    path_prefix: String,
    delay: Duration,
}

impl Shared {
    fn new(options: &FakeStripeOptions) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client without TLS builds");
        Arc::new(Self {
            state: Mutex::new(FakeState {
                webhook_url: options.webhook_url.clone(),
                ..FakeState::default()
            }),
            webhook_secret: options.webhook_secret.clone(),
            webhook_attempts: options.webhook_attempts.max(1),
            webhook_retry_delay: options.webhook_retry_delay,
            http,
            changes: watch::Sender::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Uses up one matching fault, if any.
    fn take_fault(&self, path: &str) -> Option<StatusCode> {
        let mut state = self.lock();
        let fault = state
            .faults
            .iter_mut()
            .find(|fault| fault.remaining > 0 && path.starts_with(&fault.path_prefix))?;
        fault.remaining -= 1;
        let status = fault.status;
        state.faults.retain(|fault| fault.remaining > 0);
        Some(status)
    }

    fn delay_for(&self, path: &str) -> Option<Duration> {
        let state = self.lock();
        let delay = state.delay.as_ref()?;
        path.starts_with(&delay.path_prefix).then_some(delay.delay)
    }

    fn payment_intents(&self, filter: &PaymentIntentFilter) -> Vec<Value> {
        self.lock()
            .store
            .payment_intents
            .iter()
            .filter(|pi| {
                filter
                    .customer
                    .as_deref()
                    .is_none_or(|customer| pi["customer"] == customer)
                    && filter
                        .reservation_id
                        .as_deref()
                        .is_none_or(|id| pi["metadata"]["reservation_id"] == id)
            })
            .cloned()
            .collect()
    }

    fn notify(&self) {
        self.changes.send_modify(|version| *version += 1);
    }
}

impl FakeState {
    /// Lists new events; returns the indices of those to deliver.
    fn record_events(&mut self, events: Vec<Value>) -> Vec<usize> {
        let mut indices = Vec::new();
        for payload in events {
            indices.push(self.events.len());
            self.events.push(SentEvent {
                id: payload["id"].as_str().unwrap_or_default().to_owned(),
                kind: payload["type"].as_str().unwrap_or_default().to_owned(),
                payload,
                attempts: 0,
                delivered: false,
                last_status: None,
            });
        }
        indices
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .nest("/_fake", control::router())
        .fallback(api::handle)
        .with_state(shared)
}
