//! The Stripe adapter against the imitation of Stripe, over real HTTP: every gateway call,
//! every card outcome, idempotency under faults and timeouts, and signed webhooks.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use curbside::money::Cents;
use curbside::payments::webhook::{self, TOLERANCE_SECONDS};
use curbside::payments::{
    ChargeOutcome, ChargeRequest, CustomerId, PaymentError, PaymentGateway, PaymentIntentId,
    PaymentMethodId, PaymentsConfig, SetupIntentId, SetupIntentStatus, StripeGateway, WebhookError,
    WebhookEventKind,
};
use fake_stripe::{FakeStripe, FakeStripeOptions, PaymentIntentFilter, TEST_SECRET_KEY};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);

async fn fake() -> FakeStripe {
    FakeStripe::start(FakeStripeOptions::default())
        .await
        .expect("the fake Stripe starts")
}

fn gateway_for(fake: &FakeStripe) -> StripeGateway {
    gateway_with(fake, |config| config)
}

fn gateway_with(
    fake: &FakeStripe,
    adjust: impl FnOnce(PaymentsConfig) -> PaymentsConfig,
) -> StripeGateway {
    let config = PaymentsConfig::new(TEST_SECRET_KEY, fake.webhook_secret())
        .with_api_base(fake.base_url().trim_end_matches('/'));
    StripeGateway::new(&adjust(config)).expect("the gateway builds")
}

fn key() -> String {
    Uuid::new_v4().to_string()
}

/// A customer with a card saved through a SetupIntent, as the browser would save it.
async fn saved_card(
    fake: &FakeStripe,
    gateway: &StripeGateway,
    card: &str,
) -> (CustomerId, String) {
    let customer = gateway
        .create_customer("driver@example.com", &key())
        .await
        .unwrap();
    let intent = gateway
        .create_setup_intent(&customer, &key())
        .await
        .unwrap();
    let (status, body) = fake
        .confirm_setup_intent(&intent.client_secret, card)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let intent = gateway.retrieve_setup_intent(&intent.id).await.unwrap();
    assert_eq!(intent.status, SetupIntentStatus::Succeeded);
    let card = intent.payment_method.expect("a saved card");
    (customer, card.into_string())
}

fn charge(customer: &CustomerId, payment_method: &str, amount_cents: i64) -> ChargeRequest {
    ChargeRequest {
        customer_id: customer.clone(),
        payment_method_id: PaymentMethodId::new(payment_method),
        amount_cents: Cents(amount_cents),
        currency: "usd".into(),
        reservation_id: Uuid::new_v4(),
        idempotency_key: key(),
    }
}

fn for_reservation(request: &ChargeRequest) -> PaymentIntentFilter {
    PaymentIntentFilter {
        reservation_id: Some(request.reservation_id.to_string()),
        ..PaymentIntentFilter::default()
    }
}

#[tokio::test]
async fn a_card_is_saved_with_a_setup_intent_and_stripe_is_asked_about_it() {
    let fake = fake().await;
    let gateway = gateway_for(&fake);
    let customer = gateway
        .create_customer("driver@example.com", &key())
        .await
        .unwrap();
    assert!(customer.as_str().starts_with("cus_"), "{customer}");

    let intent = gateway
        .create_setup_intent(&customer, &key())
        .await
        .unwrap();
    assert!(intent.id.as_str().starts_with("seti_"));
    assert!(
        intent
            .client_secret
            .starts_with(&format!("{}_secret_", intent.id))
    );
    assert_eq!(intent.status, SetupIntentStatus::RequiresPaymentMethod);
    assert_eq!(intent.payment_method, None);
    let debug = format!("{intent:?}");
    assert!(!debug.contains(&intent.client_secret), "{debug}");

    // Not saved until the browser confirms it.
    let unchanged = gateway.retrieve_setup_intent(&intent.id).await.unwrap();
    assert_eq!(unchanged.status, SetupIntentStatus::RequiresPaymentMethod);

    let (status, _) = fake
        .confirm_setup_intent(&intent.client_secret, "pm_card_visa")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let saved = gateway.retrieve_setup_intent(&intent.id).await.unwrap();
    assert_eq!(saved.status, SetupIntentStatus::Succeeded);
    let payment_method = saved.payment_method.unwrap();
    // As at Stripe, a test token becomes a payment method of its own.
    assert!(
        payment_method.as_str().starts_with("pm_") && payment_method.as_str() != "pm_card_visa"
    );
    let card = gateway.card(&payment_method).await.unwrap().unwrap();
    assert_eq!((card.brand.as_str(), card.last4.as_str()), ("visa", "4242"));
    // Saving attached it to the intent's customer: that is how a card is known as the payer's.
    assert_eq!(card.customer_id.as_ref(), Some(&customer));

    // The setup intent was created for off-session use, for cards only, with a key.
    let requests = fake.requests();
    let create = requests
        .iter()
        .find(|r| r.method == "POST" && r.path == "/v1/setup_intents")
        .unwrap();
    assert!(create.idempotency_key.is_some());
    assert_eq!(create.params["customer"], customer.as_str());
    assert_eq!(create.params["usage"], "off_session");
    assert_eq!(
        create.params["allowed_payment_method_types"],
        json!(["card"])
    );
}

#[tokio::test]
async fn a_card_declined_when_saved_leaves_the_setup_intent_unsaved() {
    let fake = fake().await;
    let gateway = gateway_for(&fake);
    let customer = gateway
        .create_customer("d@example.com", &key())
        .await
        .unwrap();
    let intent = gateway
        .create_setup_intent(&customer, &key())
        .await
        .unwrap();
    let (status, body) = fake
        .confirm_setup_intent(&intent.client_secret, "pm_card_chargeDeclined")
        .await
        .unwrap();
    assert_eq!(status, 402);
    assert_eq!(body["error"]["code"], "card_declined");
    assert_eq!(body["error"]["setup_intent"]["id"], intent.id.as_str());
    let intent = gateway.retrieve_setup_intent(&intent.id).await.unwrap();
    assert_eq!(intent.status, SetupIntentStatus::RequiresPaymentMethod);
    assert_eq!(intent.payment_method, None);
}

#[tokio::test]
async fn a_visa_charge_succeeds_once_with_the_reservation_in_its_metadata() {
    let fake = fake().await;
    let gateway = gateway_for(&fake);
    let (customer, card) = saved_card(&fake, &gateway, "pm_card_visa").await;
    let request = charge(&customer, &card, 1250);

    let outcome = gateway.charge_off_session(&request).await.unwrap();
    let ChargeOutcome::Succeeded { payment_intent_id } = outcome else {
        panic!("expected success, got {outcome:?}");
    };
    let intents = fake.payment_intents(&for_reservation(&request));
    assert_eq!(intents.len(), 1);
    let intent = &intents[0];
    assert_eq!(intent["id"], payment_intent_id.as_str());
    assert_eq!(intent["status"], "succeeded");
    assert_eq!(intent["amount"], 1250);
    assert_eq!(intent["amount_received"], 1250);
    assert_eq!(intent["currency"], "usd");
    assert_eq!(intent["customer"], customer.as_str());
    assert_eq!(intent["payment_method"], card.as_str());

    let create = fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/payment_intents")
        .unwrap();
    assert_eq!(
        create.idempotency_key.as_deref(),
        Some(request.idempotency_key.as_str())
    );
}

#[tokio::test]
async fn a_declined_card_is_an_outcome_not_an_error() {
    let fake = fake().await;
    let gateway = gateway_for(&fake);
    // Saved fine, declined when charged later.
    let (customer, card) = saved_card(&fake, &gateway, "pm_card_chargeCustomerFail").await;
    let request = charge(&customer, &card, 900);
    let outcome = gateway.charge_off_session(&request).await.unwrap();
    let ChargeOutcome::Declined {
        payment_intent_id: Some(payment_intent_id),
        code,
        decline_code,
        message,
    } = outcome
    else {
        panic!("expected a decline with an intent, got {outcome:?}");
    };
    assert_eq!(code, "card_declined");
    assert_eq!(decline_code.as_deref(), Some("generic_decline"));
    assert_eq!(message, "Your card was declined.");
    let intent = &fake.payment_intents(&for_reservation(&request))[0];
    assert_eq!(intent["id"], payment_intent_id.as_str());
    assert_eq!(intent["status"], "requires_payment_method");
    assert_eq!(intent["last_payment_error"]["code"], "card_declined");

    // Stripe's always-declined test card, charged without being saved first.
    let request = ChargeRequest {
        payment_method_id: PaymentMethodId::new("pm_card_chargeDeclined"),
        ..charge(&customer, "", 900)
    };
    let outcome = gateway.charge_off_session(&request).await.unwrap();
    assert!(
        matches!(&outcome, ChargeOutcome::Declined { code, .. } if code == "card_declined"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_card_that_needs_authentication_requires_the_driver() {
    let fake = fake().await;
    let gateway = gateway_for(&fake);
    let (customer, card) = saved_card(&fake, &gateway, "pm_card_authenticationRequired").await;
    let request = charge(&customer, &card, 700);
    let outcome = gateway.charge_off_session(&request).await.unwrap();
    let ChargeOutcome::RequiresAction { payment_intent_id } = outcome else {
        panic!("expected requires action, got {outcome:?}");
    };
    let intent = &fake.payment_intents(&for_reservation(&request))[0];
    assert_eq!(intent["id"], payment_intent_id.as_str());
    assert_eq!(intent["status"], "requires_payment_method");
    assert_eq!(
        intent["last_payment_error"]["code"],
        "authentication_required"
    );

    // A card that only asks when it was not set up passes once saved.
    let (customer, card) =
        saved_card(&fake, &gateway, "pm_card_authenticationRequiredOnSetup").await;
    let outcome = gateway
        .charge_off_session(&charge(&customer, &card, 700))
        .await
        .unwrap();
    assert!(
        matches!(outcome, ChargeOutcome::Succeeded { .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn the_same_idempotency_key_charges_once() {
    let fake = fake().await;
    let gateway = gateway_for(&fake);
    let (customer, card) = saved_card(&fake, &gateway, "pm_card_visa").await;
    let request = charge(&customer, &card, 1000);

    let first = gateway.charge_off_session(&request).await.unwrap();
    let second = gateway.charge_off_session(&request).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(fake.payment_intent_count(&for_reservation(&request)), 1);
    let replays: Vec<bool> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/payment_intents")
        .map(|r| r.replayed)
        .collect();
    assert_eq!(replays, [false, true]);

    // The same key for another amount is a bug in the caller, not a second charge.
    let other = ChargeRequest {
        amount_cents: Cents(2000),
        ..request.clone()
    };
    let error = gateway.charge_off_session(&other).await.unwrap_err();
    assert!(
        matches!(&error, PaymentError::Rejected { status: 400, code, .. } if code == "idempotency_error"),
        "{error:?}"
    );
    assert_eq!(fake.payment_intent_count(&for_reservation(&request)), 1);

    // Creating customers is idempotent the same way.
    let customer_key = key();
    let a = gateway
        .create_customer("x@example.com", &customer_key)
        .await
        .unwrap();
    let b = gateway
        .create_customer("x@example.com", &customer_key)
        .await
        .unwrap();
    assert_eq!(a, b);
}

#[tokio::test]
async fn server_errors_are_retryable_and_a_retry_with_the_same_key_charges_once() {
    let fake = fake().await;
    let gateway = gateway_for(&fake);
    let (customer, card) = saved_card(&fake, &gateway, "pm_card_visa").await;
    let request = charge(&customer, &card, 1500);

    fake.fail_next("/v1/payment_intents", 2, StatusCode::INTERNAL_SERVER_ERROR);
    for _ in 0..2 {
        let error = gateway.charge_off_session(&request).await.unwrap_err();
        assert!(matches!(error, PaymentError::Unavailable(_)), "{error:?}");
        assert!(error.is_retryable());
    }
    let outcome = gateway.charge_off_session(&request).await.unwrap();
    assert!(
        matches!(outcome, ChargeOutcome::Succeeded { .. }),
        "{outcome:?}"
    );
    assert_eq!(fake.payment_intent_count(&for_reservation(&request)), 1);

    fake.fail_next("/v1/customers", 1, StatusCode::TOO_MANY_REQUESTS);
    let error = gateway
        .create_customer("y@example.com", &key())
        .await
        .unwrap_err();
    assert!(matches!(error, PaymentError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn a_slow_answer_is_unavailable_and_the_retry_finds_the_charge_already_made() {
    let fake = fake().await;
    let gateway = gateway_for(&fake);
    let impatient = gateway_with(&fake, |config| {
        config.with_timeout(Duration::from_millis(300))
    });
    let (customer, card) = saved_card(&fake, &gateway, "pm_card_visa").await;
    let request = charge(&customer, &card, 800);

    fake.delay_responses("/v1/payment_intents", Duration::from_secs(5));
    let started = Instant::now();
    let error = impatient.charge_off_session(&request).await.unwrap_err();
    assert!(matches!(error, PaymentError::Unavailable(_)), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout applies"
    );
    // Stripe did the work; only the answer was lost.
    assert_eq!(fake.payment_intent_count(&for_reservation(&request)), 1);

    fake.clear_delay();
    let outcome = gateway.charge_off_session(&request).await.unwrap();
    assert!(
        matches!(outcome, ChargeOutcome::Succeeded { .. }),
        "{outcome:?}"
    );
    assert_eq!(fake.payment_intent_count(&for_reservation(&request)), 1);
}

#[tokio::test]
async fn an_unreachable_stripe_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    let config =
        PaymentsConfig::new(TEST_SECRET_KEY, "whsec_x").with_api_base(format!("http://{closed}/"));
    let gateway = StripeGateway::new(&config).unwrap();
    let error = gateway
        .create_customer("z@example.com", &key())
        .await
        .unwrap_err();
    assert!(matches!(error, PaymentError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn refusals_are_rejected_with_stripes_code() {
    let fake = fake().await;
    let gateway = gateway_for(&fake);
    let error = gateway
        .retrieve_setup_intent(&SetupIntentId::new("seti_missing"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PaymentError::Rejected { status: 404, code, .. } if code == "resource_missing"),
        "{error:?}"
    );
    let error = gateway
        .create_setup_intent(&CustomerId::new("cus_missing"), &key())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PaymentError::Rejected { status: 400, code, .. } if code == "resource_missing"),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    let customer = gateway
        .create_customer("d@example.com", &key())
        .await
        .unwrap();
    let error = gateway
        .charge_off_session(&charge(&customer, "pm_card_visa", 49))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PaymentError::Rejected { code, .. } if code == "amount_too_small"),
        "{error:?}"
    );

    let live = gateway_with(&fake, |config| PaymentsConfig {
        secret_key: "sk_live_not_here".to_owned().into(),
        ..config
    });
    let error = live
        .create_customer("d@example.com", &key())
        .await
        .unwrap_err();
    assert!(
        matches!(error, PaymentError::Rejected { status: 401, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_control_api_drives_faults_delays_and_counts_over_http() {
    let fake = fake().await;
    let gateway = gateway_for(&fake);
    let http = reqwest::Client::new();
    let control = |path: &str| format!("{}_fake/{path}", fake.base_url());

    let response = http
        .post(control("faults"))
        .json(&json!({"path_prefix": "/v1/customers", "count": 1, "status": 503}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let error = gateway
        .create_customer("a@example.com", &key())
        .await
        .unwrap_err();
    assert!(matches!(error, PaymentError::Unavailable(_)), "{error:?}");
    let customer = gateway
        .create_customer("a@example.com", &key())
        .await
        .unwrap();

    let request = charge(&customer, "pm_card_visa", 600);
    gateway.charge_off_session(&request).await.unwrap();
    let counted: Value = http
        .get(control(&format!(
            "payment_intents?reservation_id={}",
            request.reservation_id
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counted["count"], 1);
    let by_customer: Value = http
        .get(control(&format!("payment_intents?customer={customer}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_customer["count"], 1);

    let requests: Value = http
        .get(control("requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let statuses: Vec<u64> = requests
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [503, 200, 200]);

    let response = http
        .put(control("delay"))
        .json(&json!({"millis": 3000}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let impatient = gateway_with(&fake, |c| c.with_timeout(Duration::from_millis(200)));
    let visa = PaymentMethodId::new("pm_card_visa");
    let error = impatient.card(&visa).await.unwrap_err();
    assert!(matches!(error, PaymentError::Unavailable(_)), "{error:?}");
    http.delete(control("delay")).send().await.unwrap();
    assert_eq!(
        gateway.card(&visa).await.unwrap().map(|card| card.last4),
        Some("4242".to_owned())
    );
}

/// A webhook endpoint run by the test: it hands over what it receives and answers 500 to the
/// first `failures` deliveries.
async fn receiver(failures: usize) -> (String, mpsc::UnboundedReceiver<(HeaderMap, Bytes)>) {
    let (sender, received) = mpsc::unbounded_channel();
    let seen = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let sender = sender.clone();
            let seen = seen.clone();
            async move {
                let _ = sender.send((headers, body));
                if seen.fetch_add(1, Ordering::SeqCst) < failures {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

async fn next(received: &mut mpsc::UnboundedReceiver<(HeaderMap, Bytes)>) -> (String, Bytes) {
    let (headers, body) = tokio::time::timeout(WAIT, received.recv())
        .await
        .expect("a webhook arrives")
        .unwrap();
    let signature = headers["stripe-signature"].to_str().unwrap().to_owned();
    (signature, body)
}

#[tokio::test]
async fn signed_events_are_delivered_and_verified() {
    let (url, mut received) = receiver(0).await;
    let fake = FakeStripe::start(FakeStripeOptions {
        webhook_url: Some(url),
        webhook_secret: "whsec_delivery_test".into(),
        ..FakeStripeOptions::default()
    })
    .await
    .unwrap();
    let gateway = gateway_for(&fake);
    let (customer, card) = saved_card(&fake, &gateway, "pm_card_visa").await;

    let (signature, body) = next(&mut received).await;
    let event = gateway.verify_webhook(&body, &signature).unwrap();
    assert!(event.id.starts_with("evt_"));
    let WebhookEventKind::SetupIntentSucceeded { setup_intent_id } = event.kind else {
        panic!("expected setup_intent.succeeded, got {:?}", event.kind);
    };
    assert!(setup_intent_id.as_str().starts_with("seti_"));
    // The event only names the SetupIntent; Stripe's own answer tells the card.
    let intent = gateway
        .retrieve_setup_intent(&setup_intent_id)
        .await
        .unwrap();
    assert_eq!(
        intent.payment_method.as_ref().map(PaymentMethodId::as_str),
        Some(card.as_str())
    );
    // Shaped as Stripe's: the SDK's own event parser reads it.
    let text = std::str::from_utf8(&body).unwrap();
    stripe_webhook::Webhook::construct_event(text, &signature, "whsec_delivery_test")
        .expect("async-stripe-webhook reads the event");

    let request = charge(&customer, &card, 1100);
    gateway.charge_off_session(&request).await.unwrap();
    let (signature, body) = next(&mut received).await;
    let event = gateway.verify_webhook(&body, &signature).unwrap();
    assert_eq!(event.event_type, "payment_intent.succeeded");
    let WebhookEventKind::PaymentIntentUpdated { payment_intent_id } = &event.kind else {
        panic!("expected a PaymentIntent event, got {event:?}");
    };
    let paid = gateway
        .retrieve_payment_intent(payment_intent_id)
        .await
        .unwrap()
        .expect("Stripe knows the PaymentIntent it announced");
    assert_eq!(paid.reservation_id, Some(request.reservation_id));
    assert_eq!(paid.customer_id.as_ref(), Some(&customer));
    assert_eq!(paid.amount_cents, Cents(1100));
    assert!(
        matches!(paid.outcome, ChargeOutcome::Succeeded { .. }),
        "{paid:?}"
    );
    assert_eq!(
        gateway
            .retrieve_payment_intent(&PaymentIntentId::new("pi_never_made"))
            .await,
        Ok(None)
    );
    stripe_webhook::Webhook::construct_event(
        std::str::from_utf8(&body).unwrap(),
        &signature,
        "whsec_delivery_test",
    )
    .expect("async-stripe-webhook reads the event");

    // A changed body, another secret, an old signature: all refused, each for its reason.
    let mut tampered = body.to_vec();
    let at = tampered.len() / 2;
    tampered[at] = if tampered[at] == b'x' { b'y' } else { b'x' };
    assert_eq!(
        gateway.verify_webhook(&tampered, &signature).unwrap_err(),
        WebhookError::BadSignature
    );
    let other = gateway_with(&fake, |config| PaymentsConfig {
        webhook_secret: "whsec_someone_else".to_owned().into(),
        ..config
    });
    assert_eq!(
        other.verify_webhook(&body, &signature).unwrap_err(),
        WebhookError::BadSignature
    );
    let old = chrono::Utc::now().timestamp() - TOLERANCE_SECONDS - 5;
    let stale = webhook::sign(&body, "whsec_delivery_test", old);
    assert!(matches!(
        gateway.verify_webhook(&body, &stale),
        Err(WebhookError::StaleTimestamp { .. })
    ));

    // A declined charge is announced too, with its code.
    let (customer, card) = saved_card(&fake, &gateway, "pm_card_chargeCustomerFail").await;
    let _ = next(&mut received).await; // its setup_intent.succeeded
    let request = charge(&customer, &card, 1100);
    gateway.charge_off_session(&request).await.unwrap();
    let (signature, body) = next(&mut received).await;
    let event = gateway.verify_webhook(&body, &signature).unwrap();
    assert_eq!(event.event_type, "payment_intent.payment_failed");
    let WebhookEventKind::PaymentIntentUpdated { payment_intent_id } = &event.kind else {
        panic!("expected a PaymentIntent event, got {event:?}");
    };
    let declined = gateway
        .retrieve_payment_intent(payment_intent_id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&declined.outcome, ChargeOutcome::Declined { code, .. } if code == "card_declined"),
        "{declined:?}"
    );

    let kinds: Vec<String> = fake.events().into_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            "setup_intent.succeeded",
            "payment_intent.succeeded",
            "setup_intent.succeeded",
            "payment_intent.payment_failed"
        ]
    );
}

#[tokio::test]
async fn a_failed_delivery_is_retried_with_the_same_event() {
    let (url, mut received) = receiver(1).await;
    let fake = FakeStripe::start(FakeStripeOptions {
        webhook_url: Some(url),
        webhook_retry_delay: Duration::from_millis(20),
        ..FakeStripeOptions::default()
    })
    .await
    .unwrap();
    let gateway = gateway_for(&fake);
    saved_card(&fake, &gateway, "pm_card_visa").await;

    let (first_signature, first) = next(&mut received).await;
    let (second_signature, second) = next(&mut received).await;
    assert_eq!(first, second, "the same event, byte for byte");
    assert!(gateway.verify_webhook(&first, &first_signature).is_ok());
    assert!(gateway.verify_webhook(&second, &second_signature).is_ok());

    let event = fake
        .wait_for_event(WAIT, |event| event.delivered)
        .await
        .expect("delivered in the end");
    assert_eq!(event.attempts, 2);
    assert_eq!(event.last_status, Some(200));
}

/// The imitation signs with its own implementation of Stripe's scheme, so this checks the
/// product's verifier against a second one (and `signatures_agree_with_async_stripe_webhook`
/// against the SDK's).
#[test]
fn webhooks_signed_by_the_imitation_verify_and_tampered_ones_do_not() {
    let secret = "whsec_cross_check";
    let now = chrono::Utc::now().timestamp();
    let body = serde_json::to_vec(&json!({
        "id": "evt_cross", "object": "event", "created": now, "type": "setup_intent.succeeded",
        "data": {"object": {"id": "seti_cross", "object": "setup_intent"}},
        "livemode": false, "pending_webhooks": 1, "api_version": null,
        "request": {"id": null, "idempotency_key": null},
    }))
    .unwrap();
    let signature = fake_stripe::webhook_signature(&body, secret, now);
    let event = webhook::verify(&body, &signature, secret, now).expect("the signature verifies");
    assert_eq!(
        event.kind,
        WebhookEventKind::SetupIntentSucceeded {
            setup_intent_id: SetupIntentId::new("seti_cross")
        }
    );
    assert_eq!(signature, webhook::sign(&body, secret, now));

    let mut tampered = body.clone();
    let at = tampered.iter().position(|b| *b == b'c').unwrap();
    tampered[at] = b'k';
    assert_eq!(
        webhook::verify(&tampered, &signature, secret, now),
        Err(WebhookError::BadSignature)
    );
    let retimed = signature.replacen(&format!("t={now}"), &format!("t={}", now - 1), 1);
    assert_eq!(
        webhook::verify(&body, &retimed, secret, now),
        Err(WebhookError::BadSignature)
    );
    assert_eq!(
        webhook::verify(&body, &signature, "whsec_someone_else", now),
        Err(WebhookError::BadSignature)
    );
}
