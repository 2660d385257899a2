//! The imitation over HTTP as any Stripe client meets it: keys, forms, errors, idempotency.

use fake_stripe::{FakeStripe, FakeStripeOptions, TEST_SECRET_KEY};
use serde_json::{Value, json};

#[tokio::test]
async fn the_imitation_speaks_stripes_wire_format() {
    let fake = FakeStripe::start(FakeStripeOptions::default())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", fake.base_url());
    let form = |pairs: &[(&str, &str)]| serde_urlencoded::to_string(pairs).unwrap();

    let response = http.post(url("v1/customers")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let post = |path: &str, body: String| {
        http.post(url(path))
            .bearer_auth(TEST_SECRET_KEY)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    let customer: Value = post("v1/customers", form(&[("email", "w@example.com")]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let customer_id = customer["id"].as_str().unwrap();

    let charge = form(&[
        ("amount", "1099"),
        ("currency", "usd"),
        ("customer", customer_id),
        ("payment_method", "pm_card_chargeDeclined"),
        ("confirm", "true"),
        ("off_session", "true"),
        ("metadata[reservation_id]", "r-1"),
    ]);
    let response = post("v1/payment_intents", charge.clone())
        .header("idempotency-key", "k-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 402);
    assert!(response.headers().contains_key("request-id"));
    let body: Value = response.json().await.unwrap();
    let error = &body["error"];
    assert_eq!(error["type"], "card_error");
    assert_eq!(error["code"], "card_declined");
    assert_eq!(error["decline_code"], "generic_decline");
    assert_eq!(error["message"], "Your card was declined.");
    assert_eq!(error["payment_intent"]["status"], "requires_payment_method");
    assert_eq!(
        error["payment_intent"]["metadata"],
        json!({"reservation_id": "r-1"})
    );

    let replay = post("v1/payment_intents", charge)
        .header("idempotency-key", "k-1")
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 402);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replayed: Value = replay.json().await.unwrap();
    assert_eq!(replayed, body);

    let response = http
        .get(url("v1/subscriptions"))
        .bearer_auth(TEST_SECRET_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn the_key_is_taken_as_curl_u_sends_it() {
    let fake = FakeStripe::start(FakeStripeOptions::default())
        .await
        .unwrap();
    let url = format!("{}v1/customers", fake.base_url());
    let http = reqwest::Client::new();
    let basic = http
        .post(&url)
        .basic_auth(TEST_SECRET_KEY, Some(""))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=basic%40example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
    let customer: Value = basic.json().await.unwrap();
    assert_eq!(customer["email"], "basic@example.com");
    let wrong = http
        .post(&url)
        .basic_auth("sk_live_nope", Some(""))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
}
