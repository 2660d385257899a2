//! A driver's saved cards (listing, the default, detaching) and refunds, over HTTP as
//! Curbside's Stripe adapter meets them.

use std::time::Duration;

use fake_stripe::{FakeStripe, FakeStripeOptions, TEST_PUBLISHABLE_KEY, TEST_SECRET_KEY};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);

/// The imitation and a client that calls it as a server does, with the secret key.
struct Stripe {
    fake: FakeStripe,
    http: reqwest::Client,
}

impl Stripe {
    async fn start() -> Self {
        let fake = FakeStripe::start(FakeStripeOptions::default())
            .await
            .unwrap();
        Self {
            fake,
            http: reqwest::Client::new(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value, bool) {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let replayed = response.headers().contains_key("idempotent-replayed");
        (status, response.json().await.unwrap(), replayed)
    }

    fn post_request(&self, path: &str, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.fake.base_url()))
            .bearer_auth(TEST_SECRET_KEY)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap())
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let (status, body, _) = self.send(self.post_request(path, form)).await;
        (status, body)
    }

    /// `path` with its query, if any.
    async fn get(&self, path: &str) -> (u16, Value) {
        let request = self
            .http
            .get(format!("{}{path}", self.fake.base_url()))
            .bearer_auth(TEST_SECRET_KEY);
        let (status, body, _) = self.send(request).await;
        (status, body)
    }

    async fn customer(&self) -> String {
        let (status, customer) = self
            .post("v1/customers", &[("email", "driver@example.com")])
            .await;
        assert_eq!(status, 200, "{customer}");
        customer["id"].as_str().unwrap().to_owned()
    }

    /// Saves a test card for the customer as the driver's browser does (a SetupIntent
    /// confirmed with the publishable key); returns the new `pm_…`.
    async fn save_card(&self, customer: &str, token: &str) -> String {
        let (status, intent) = self
            .post(
                "v1/setup_intents",
                &[("customer", customer), ("usage", "off_session")],
            )
            .await;
        assert_eq!(status, 200, "{intent}");
        let (status, confirmed) = self
            .fake
            .confirm_setup_intent(intent["client_secret"].as_str().unwrap(), token)
            .await
            .unwrap();
        assert_eq!(status, 200, "{confirmed}");
        confirmed["payment_method"].as_str().unwrap().to_owned()
    }

    /// Charges a saved card off-session, as Curbside does; returns status and answer.
    async fn charge(&self, customer: &str, payment_method: &str, amount: &str) -> (u16, Value) {
        self.post(
            "v1/payment_intents",
            &[
                ("amount", amount),
                ("currency", "usd"),
                ("customer", customer),
                ("payment_method", payment_method),
                ("confirm", "true"),
                ("off_session", "true"),
            ],
        )
        .await
    }

    /// A succeeded payment of `amount` cents with a new card `token` for a new customer.
    async fn paid(&self, token: &str, amount: &str) -> Value {
        let customer = self.customer().await;
        let card = self.save_card(&customer, token).await;
        let (status, intent) = self.charge(&customer, &card, amount).await;
        assert_eq!(status, 200, "{intent}");
        assert_eq!(intent["status"], "succeeded");
        intent
    }

    fn events_of(&self, kind: &str) -> Vec<Value> {
        self.fake
            .events()
            .into_iter()
            .filter(|event| event.kind == kind)
            .map(|event| event.payload)
            .collect()
    }
}

fn ids(list: &Value) -> Vec<&str> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_customers_cards_are_listed_newest_first() {
    let stripe = Stripe::start().await;
    let driver = stripe.customer().await;
    let other = stripe.customer().await;
    let visa = stripe.save_card(&driver, "pm_card_visa").await;
    let mastercard = stripe.save_card(&driver, "pm_card_mastercard").await;
    let others = stripe.save_card(&other, "pm_card_visa").await;

    let path = format!("v1/customers/{driver}/payment_methods");
    let (status, list) = stripe.get(&format!("{path}?type=card")).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["object"], "list");
    assert_eq!(
        list["url"],
        format!("/v1/customers/{driver}/payment_methods")
    );
    assert_eq!(list["has_more"], false);
    assert_eq!(ids(&list), [mastercard.as_str(), visa.as_str()]);
    for method in list["data"].as_array().unwrap() {
        assert_eq!(method["customer"], driver.as_str());
        assert_eq!(method["object"], "payment_method");
    }
    assert_eq!(list["data"][0]["card"]["last4"], "4444");
    let (_, theirs) = stripe
        .get(&format!("v1/customers/{other}/payment_methods"))
        .await;
    assert_eq!(ids(&theirs), [others.as_str()]);

    // Paged as async-stripe's paginator asks: a page, then the one after its last item.
    let (_, first) = stripe.get(&format!("{path}?limit=1")).await;
    assert_eq!(ids(&first), [mastercard.as_str()]);
    assert_eq!(first["has_more"], true);
    let (_, second) = stripe
        .get(&format!("{path}?limit=1&starting_after={mastercard}"))
        .await;
    assert_eq!(ids(&second), [visa.as_str()]);
    assert_eq!(second["has_more"], false);
    let (_, none) = stripe.get(&format!("{path}?type=us_bank_account")).await;
    assert_eq!(ids(&none), Vec::<&str>::new());

    let (status, body) = stripe.get(&format!("{path}?limit=101")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "limit");
    let (status, body) = stripe.get("v1/customers/cus_nope/payment_methods").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "resource_missing");
    assert_eq!(body["error"]["message"], "No such customer: 'cus_nope'");
    let browser = stripe
        .http
        .get(format!("{}{path}", stripe.fake.base_url()))
        .bearer_auth(TEST_PUBLISHABLE_KEY);
    let (status, _, _) = stripe.send(browser).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn the_default_card_is_set_cleared_and_refused_for_another_customers_card() {
    let stripe = Stripe::start().await;
    let driver = stripe.customer().await;
    let card = stripe.save_card(&driver, "pm_card_visa").await;
    let other = stripe.customer().await;
    let others = stripe.save_card(&other, "pm_card_visa").await;
    let path = format!("v1/customers/{driver}");

    let (status, customer) = stripe
        .post(
            &path,
            &[
                ("invoice_settings[default_payment_method]", card.as_str()),
                ("name", "Wanda Driver"),
                ("metadata[driver_id]", "d-1"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{customer}");
    assert_eq!(
        customer["invoice_settings"]["default_payment_method"],
        card.as_str()
    );
    assert_eq!(customer["name"], "Wanda Driver");
    assert_eq!(customer["email"], "driver@example.com");
    let (_, read) = stripe.get(&path).await;
    assert_eq!(read, customer);
    let settings = &read["invoice_settings"];
    for field in ["custom_fields", "footer", "rendering_options"] {
        assert!(settings.get(field).is_some_and(Value::is_null), "{field}");
    }
    let updated = stripe.events_of("customer.updated");
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0]["data"]["object"], customer);
    assert_eq!(
        updated[0]["data"]["previous_attributes"],
        json!({"invoice_settings": {"default_payment_method": null},
               "metadata": {"driver_id": null}, "name": null})
    );

    // Another customer's card, a card that does not exist, a test token: refused, unchanged.
    for (refused, message) in [
        (
            others.as_str(),
            format!(
                "The customer does not have a payment method with the ID {others}. The payment \
                 method must be attached to the customer."
            ),
        ),
        ("pm_nope", "No such PaymentMethod: 'pm_nope'".to_owned()),
        (
            "pm_card_visa",
            "No such PaymentMethod: 'pm_card_visa'".to_owned(),
        ),
    ] {
        let (status, body) = stripe
            .post(
                &path,
                &[("invoice_settings[default_payment_method]", refused)],
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "resource_missing");
        assert_eq!(
            body["error"]["param"],
            "invoice_settings[default_payment_method]"
        );
        assert_eq!(body["error"]["message"], message);
    }
    let (_, read) = stripe.get(&path).await;
    assert_eq!(
        read["invoice_settings"]["default_payment_method"],
        card.as_str()
    );

    // An empty value unsets, as at Stripe; an update that changes nothing sends no event.
    let clear = [
        ("invoice_settings[default_payment_method]", ""),
        ("metadata[driver_id]", ""),
    ];
    let (status, cleared) = stripe.post(&path, &clear).await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(
        cleared["invoice_settings"]["default_payment_method"],
        Value::Null
    );
    assert_eq!(cleared["metadata"], json!({}));
    let (status, _) = stripe.post(&path, &clear).await;
    assert_eq!(status, 200);
    assert_eq!(stripe.events_of("customer.updated").len(), 2);

    let (status, body) = stripe.post(&path, &[("email", "not-an-email")]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "email_invalid");
    let (status, body) = stripe.post("v1/customers/cus_nope", &[("name", "x")]).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "resource_missing");
}

#[tokio::test]
async fn a_detached_card_is_gone_for_good() {
    let stripe = Stripe::start().await;
    let driver = stripe.customer().await;
    let card = stripe.save_card(&driver, "pm_card_visa").await;
    let kept = stripe.save_card(&driver, "pm_card_mastercard").await;
    let (status, _) = stripe
        .post(
            &format!("v1/customers/{driver}"),
            &[("invoice_settings[default_payment_method]", card.as_str())],
        )
        .await;
    assert_eq!(status, 200);

    let (status, detached) = stripe
        .post(&format!("v1/payment_methods/{card}/detach"), &[])
        .await;
    assert_eq!(status, 200, "{detached}");
    assert_eq!(detached["id"], card.as_str());
    assert_eq!(detached["customer"], Value::Null);
    let events = stripe.events_of("payment_method.detached");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["object"], detached);
    assert_eq!(
        events[0]["data"]["previous_attributes"],
        json!({"customer": driver})
    );
    let (_, read) = stripe.get(&format!("v1/payment_methods/{card}")).await;
    assert_eq!(read["customer"], Value::Null);

    // No longer listed, no longer the default.
    let (_, list) = stripe
        .get(&format!("v1/customers/{driver}/payment_methods"))
        .await;
    assert_eq!(ids(&list), [kept.as_str()]);
    let (_, customer) = stripe.get(&format!("v1/customers/{driver}")).await;
    assert_eq!(
        customer["invoice_settings"]["default_payment_method"],
        Value::Null
    );
    let updated = stripe.events_of("customer.updated");
    assert_eq!(updated.last().unwrap()["data"]["object"], customer);

    // And it can no longer be charged for that customer, nor saved again.
    let (status, body) = stripe.charge(&driver, &card, "1099").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "resource_missing");
    assert_eq!(body["error"]["param"], "payment_method");
    assert_eq!(
        body["error"]["message"],
        format!(
            "The customer does not have a payment method with the ID {card}. The payment method \
             must be attached to the customer."
        )
    );
    let (status, _) = stripe.charge(&driver, &kept, "1099").await;
    assert_eq!(status, 200);

    // Detaching again, or a card attached to nobody: Stripe's refusal, message only.
    let not_attached = "The payment method you provided is not attached to a customer so \
                        detachment is impossible.";
    for method in [card.as_str(), "pm_card_visa"] {
        let (status, body) = stripe
            .post(&format!("v1/payment_methods/{method}/detach"), &[])
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["message"], not_attached);
        assert!(body["error"].get("code").is_none(), "{body}");
        assert!(body["error"].get("param").is_none(), "{body}");
    }
    let (status, body) = stripe.post("v1/payment_methods/pm_nope/detach", &[]).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "resource_missing");
}

#[tokio::test]
async fn a_payments_latest_charge_is_a_charge_to_read() {
    let stripe = Stripe::start().await;
    let intent = stripe.paid("pm_card_visa", "1099").await;
    let charge_id = intent["latest_charge"].as_str().unwrap();
    let (status, charge) = stripe.get(&format!("v1/charges/{charge_id}")).await;
    assert_eq!(status, 200, "{charge}");
    assert_eq!(charge["object"], "charge");
    assert_eq!(charge["id"], charge_id);
    for field in ["amount", "currency", "customer", "payment_method"] {
        assert_eq!(charge[field], intent[field], "{field}");
    }
    assert_eq!(charge["payment_intent"], intent["id"]);
    assert_eq!(charge["status"], "succeeded");
    assert_eq!(charge["paid"], true);
    assert_eq!(charge["captured"], true);
    assert_eq!(charge["amount_captured"], 1099);
    assert_eq!(charge["amount_refunded"], 0);
    assert_eq!(charge["refunded"], false);
    assert_eq!(
        charge["refunds"],
        json!({"object": "list", "data": [], "has_more": false,
               "url": format!("/v1/charges/{charge_id}/refunds")})
    );
    assert_eq!(charge["payment_method_details"]["card"]["last4"], "4242");

    // A declined attempt's charge failed, and cannot be refunded.
    let customer = stripe.customer().await;
    let card = stripe
        .save_card(&customer, "pm_card_chargeCustomerFail")
        .await;
    let (status, body) = stripe.charge(&customer, &card, "1099").await;
    assert_eq!(status, 402);
    let failed_id = body["error"]["charge"].as_str().unwrap();
    assert_eq!(body["error"]["payment_intent"]["latest_charge"], failed_id);
    let (_, failed) = stripe.get(&format!("v1/charges/{failed_id}")).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["paid"], false);
    assert_eq!(failed["failure_code"], "card_declined");
    assert_eq!(failed["outcome"]["reason"], "generic_decline");
    let (status, body) = stripe.post("v1/refunds", &[("charge", failed_id)]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "charge_not_refundable");

    let (status, body) = stripe.get("v1/charges/ch_nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["message"], "No such charge: 'ch_nope'");
}

#[tokio::test]
async fn refunds_give_back_part_then_the_rest_of_a_payment() {
    let stripe = Stripe::start().await;
    let intent = stripe.paid("pm_card_visa", "2000").await;
    let pi = intent["id"].as_str().unwrap();
    let charge_id = intent["latest_charge"].as_str().unwrap();

    let (status, partial) = stripe
        .post(
            "v1/refunds",
            &[
                ("payment_intent", pi),
                ("amount", "500"),
                ("reason", "requested_by_customer"),
                ("metadata[reservation_id]", "r-1"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{partial}");
    assert!(partial["id"].as_str().unwrap().starts_with("re_"));
    assert_eq!(partial["object"], "refund");
    assert_eq!(partial["amount"], 500);
    assert_eq!(partial["currency"], "usd");
    assert_eq!(partial["status"], "succeeded");
    assert_eq!(partial["reason"], "requested_by_customer");
    assert_eq!(partial["metadata"], json!({"reservation_id": "r-1"}));
    assert_eq!(partial["payment_intent"], pi);
    assert_eq!(partial["charge"], charge_id);
    assert!(
        partial["balance_transaction"]
            .as_str()
            .unwrap()
            .starts_with("txn_")
    );
    let (_, charge) = stripe.get(&format!("v1/charges/{charge_id}")).await;
    assert_eq!(charge["amount_refunded"], 500);
    assert_eq!(charge["refunded"], false);
    assert_eq!(ids(&charge["refunds"]), [partial["id"].as_str().unwrap()]);

    assert_eq!(
        stripe.events_of("refund.created")[0]["data"]["object"],
        partial
    );
    let refunded = stripe.events_of("charge.refunded");
    assert_eq!(refunded.len(), 1);
    assert_eq!(refunded[0]["data"]["object"], charge);

    // No amount: what is left.
    let (status, rest) = stripe.post("v1/refunds", &[("charge", charge_id)]).await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(rest["amount"], 1500);
    assert_eq!(rest["payment_intent"], pi);
    assert_eq!(rest["reason"], Value::Null);
    let (_, charge) = stripe.get(&format!("v1/charges/{charge_id}")).await;
    assert_eq!(charge["amount_refunded"], 2000);
    assert_eq!(charge["refunded"], true);
    let newest_first = [
        rest["id"].as_str().unwrap(),
        partial["id"].as_str().unwrap(),
    ];
    assert_eq!(ids(&charge["refunds"]), newest_first);
    let refunded = stripe.events_of("charge.refunded");
    assert_eq!(refunded.len(), 2);
    assert_eq!(refunded[1]["data"]["object"]["refunded"], true);

    let (status, body) = stripe.post("v1/refunds", &[("payment_intent", pi)]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "charge_already_refunded");
    assert_eq!(
        body["error"]["message"],
        format!("Charge {charge_id} has already been refunded.")
    );

    // Read back, one by one and listed.
    let (status, read) = stripe
        .get(&format!("v1/refunds/{}", rest["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(read, rest);
    let other = stripe.paid("pm_card_visa", "700").await;
    let (status, _) = stripe
        .post(
            "v1/refunds",
            &[("payment_intent", other["id"].as_str().unwrap())],
        )
        .await;
    assert_eq!(status, 200);
    let (status, list) = stripe.get(&format!("v1/refunds?payment_intent={pi}")).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["url"], "/v1/refunds");
    assert_eq!(list["has_more"], false);
    assert_eq!(ids(&list), newest_first);
    let (_, page) = stripe
        .get(&format!("v1/refunds?payment_intent={pi}&limit=1"))
        .await;
    assert_eq!(ids(&page), [newest_first[0]]);
    assert_eq!(page["has_more"], true);
    let (_, all) = stripe.get("v1/refunds").await;
    assert_eq!(all["data"].as_array().unwrap().len(), 3);
    let (_, of_charge) = stripe.get(&format!("v1/charges/{charge_id}/refunds")).await;
    assert_eq!(ids(&of_charge), newest_first);
    let (status, body) = stripe.get("v1/refunds/re_nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["message"], "No such refund: 're_nope'");
    assert_eq!(stripe.fake.refunds().len(), 3);
    assert_eq!(stripe.fake.refunds()[0]["id"], partial["id"]);
}

#[tokio::test]
async fn refunds_beyond_what_is_left_or_without_a_successful_charge_are_refused() {
    let stripe = Stripe::start().await;
    let intent = stripe.paid("pm_card_visa", "2000").await;
    let pi = intent["id"].as_str().unwrap();

    let (status, body) = stripe
        .post("v1/refunds", &[("payment_intent", pi), ("amount", "2500")])
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "amount_too_large");
    assert_eq!(body["error"]["param"], "amount");
    assert_eq!(
        body["error"]["message"],
        "Refund amount ($25.00) is greater than unrefunded amount on charge ($20.00)"
    );
    let (status, _) = stripe
        .post("v1/refunds", &[("payment_intent", pi), ("amount", "1999")])
        .await;
    assert_eq!(status, 200);
    let (status, body) = stripe
        .post("v1/refunds", &[("payment_intent", pi), ("amount", "2")])
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "Refund amount ($0.02) is greater than unrefunded amount on charge ($0.01)"
    );

    for (form, param) in [
        (vec![("payment_intent", pi), ("amount", "0")], "amount"),
        (
            vec![("payment_intent", pi), ("reason", "changed_my_mind")],
            "reason",
        ),
        (vec![("payment_intent", "pi_nope")], "payment_intent"),
    ] {
        let (status, body) = stripe.post("v1/refunds", &form).await;
        assert_eq!(status, 400, "{form:?}: {body}");
        assert_eq!(body["error"]["param"], param, "{form:?}");
    }
    let (status, body) = stripe.post("v1/refunds", &[]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "parameter_missing");

    // An intent never charged (not confirmed), and one whose charge was declined.
    let customer = stripe.customer().await;
    let card = stripe.save_card(&customer, "pm_card_visa").await;
    let (status, unconfirmed) = stripe
        .post(
            "v1/payment_intents",
            &[
                ("amount", "1000"),
                ("currency", "usd"),
                ("customer", customer.as_str()),
                ("payment_method", card.as_str()),
            ],
        )
        .await;
    assert_eq!(status, 200);
    let declining = stripe
        .save_card(&customer, "pm_card_chargeCustomerFail")
        .await;
    let (status, declined) = stripe.charge(&customer, &declining, "1000").await;
    assert_eq!(status, 402);
    for intent in [&unconfirmed, &declined["error"]["payment_intent"]] {
        let id = intent["id"].as_str().unwrap();
        let (status, body) = stripe.post("v1/refunds", &[("payment_intent", id)]).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "payment_intent_unexpected_state");
        assert_eq!(
            body["error"]["message"],
            "This PaymentIntent does not have a successful charge to refund."
        );
    }
    assert_eq!(stripe.fake.refunds().len(), 1);
}

#[tokio::test]
async fn a_refund_replayed_with_its_idempotency_key_is_the_same_refund() {
    let stripe = Stripe::start().await;
    let intent = stripe.paid("pm_card_visa", "1200").await;
    let form = [
        ("payment_intent", intent["id"].as_str().unwrap()),
        ("amount", "300"),
    ];
    let request = || {
        stripe
            .post_request("v1/refunds", &form)
            .header("idempotency-key", "refund-r-1")
    };
    let (status, first, replayed) = stripe.send(request()).await;
    assert_eq!(status, 200, "{first}");
    assert!(!replayed);
    let (status, again, replayed) = stripe.send(request()).await;
    assert_eq!(status, 200);
    assert!(replayed);
    assert_eq!(again, first);
    assert_eq!(stripe.fake.refunds().len(), 1);
    assert_eq!(stripe.events_of("refund.created").len(), 1);
    assert_eq!(stripe.events_of("charge.refunded").len(), 1);
    let (_, charge) = stripe
        .get(&format!(
            "v1/charges/{}",
            intent["latest_charge"].as_str().unwrap()
        ))
        .await;
    assert_eq!(charge["amount_refunded"], 300);
}

#[tokio::test]
async fn a_pending_refund_succeeds_when_settled() {
    let stripe = Stripe::start().await;
    let intent = stripe.paid("pm_card_pendingRefund", "1500").await;
    let pi = intent["id"].as_str().unwrap();
    let charge_id = intent["latest_charge"].as_str().unwrap();

    let (status, refund) = stripe.post("v1/refunds", &[("payment_intent", pi)]).await;
    assert_eq!(status, 200, "{refund}");
    assert_eq!(refund["status"], "pending");
    assert_eq!(refund["amount"], 1500);
    assert_eq!(stripe.events_of("refund.created").len(), 1);
    assert!(stripe.events_of("charge.refunded").is_empty());
    let (_, charge) = stripe.get(&format!("v1/charges/{charge_id}")).await;
    assert_eq!(charge["amount_refunded"], 0);
    assert_eq!(charge["refunded"], false);
    assert_eq!(charge["refunds"]["data"][0]["status"], "pending");
    // A pending refund already counts against what is left.
    let (status, body) = stripe.post("v1/refunds", &[("payment_intent", pi)]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "charge_already_refunded");

    // Settled through the control API, as a separately running imitation is driven.
    let settle = stripe
        .http
        .post(format!("{}_fake/refunds/settle", stripe.fake.base_url()));
    let (status, settled, _) = stripe.send(settle).await;
    assert_eq!(status, 200);
    assert_eq!(settled, json!({"settled": 1}));
    let event = stripe
        .fake
        .wait_for_event(WAIT, |event| event.kind == "charge.refunded")
        .await
        .expect("charge.refunded is sent");
    let charge = &event.payload["data"]["object"];
    assert_eq!(charge["object"], "charge");
    assert_eq!(charge["id"], charge_id);
    assert_eq!(charge["payment_intent"], pi);
    assert_eq!(charge["amount_refunded"], 1500);
    assert_eq!(charge["refunded"], true);
    assert_eq!(charge["refunds"]["object"], "list");
    assert_eq!(charge["refunds"]["data"][0]["id"], refund["id"]);
    assert_eq!(charge["refunds"]["data"][0]["status"], "succeeded");
    // It happened by itself, not in answer to a request.
    assert_eq!(
        event.payload["request"],
        json!({"id": null, "idempotency_key": null})
    );

    let updated = stripe.events_of("refund.updated");
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0]["data"]["object"]["status"], "succeeded");
    assert_eq!(updated[0]["data"]["object"]["pending_reason"], Value::Null);
    assert_eq!(
        updated[0]["data"]["previous_attributes"],
        json!({"status": "pending", "pending_reason": "processing"})
    );
    assert_eq!(stripe.events_of("charge.refund.updated").len(), 1);
    let (_, read) = stripe
        .get(&format!("v1/refunds/{}", refund["id"].as_str().unwrap()))
        .await;
    assert_eq!(read["status"], "succeeded");

    let (status, listed) = stripe.get("_fake/refunds").await;
    assert_eq!(status, 200);
    assert_eq!(listed["count"], 1);
    assert_eq!(listed["data"][0], read);
    assert_eq!(stripe.fake.settle_pending_refunds(), 0);
    assert_eq!(stripe.events_of("charge.refunded").len(), 1);
}
