//! The `fake-stripe` binary as scripts and developers run it: serving, driven over HTTP by
//! its control API, refusing production, and `save-card` playing Stripe.js.

use std::process::{Output, Stdio};
use std::time::Duration;

use fake_stripe::{FakeStripe, FakeStripeOptions, TEST_SECRET_KEY};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(10);

fn fake_stripe() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fake-stripe"));
    command.env("RUST_LOG", "warn").kill_on_drop(true);
    command
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Reads the child's standard output until it says where it listens.
async fn listening_url(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let find = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("fake-stripe listening on ") {
                return url.to_owned();
            }
        }
        panic!("fake-stripe exited without listening");
    };
    tokio::time::timeout(WAIT, find)
        .await
        .expect("fake-stripe starts")
}

/// A form-encoded POST with the test secret key, as a server calls Stripe.
async fn post(http: &reqwest::Client, url: String, form: &[(&str, &str)]) -> (u16, Value) {
    let response = http
        .post(url)
        .bearer_auth(TEST_SECRET_KEY)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).unwrap())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn the_command_serves_and_is_driven_over_http() {
    let mut child = fake_stripe()
        .args(["--bind", "127.0.0.1:0"])
        .env("APP_ENV", "development")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let base_url = listening_url(&mut child).await;
    let http = reqwest::Client::new();

    let response = http
        .post(format!("{base_url}_fake/faults"))
        .json(&json!({"path_prefix": "/v1/customers", "count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let customers = format!("{base_url}v1/customers");
    let (status, body) = post(&http, customers.clone(), &[("email", "p@example.com")]).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["type"], "api_error");
    let (status, customer) = post(&http, customers, &[("email", "p@example.com")]).await;
    assert_eq!(status, 200, "{customer}");

    let charge = [
        ("amount", "500"),
        ("currency", "usd"),
        ("customer", customer["id"].as_str().unwrap()),
        ("payment_method", "pm_card_visa"),
        ("confirm", "true"),
        ("off_session", "true"),
        ("metadata[reservation_id]", "r-command"),
    ];
    let (status, intent) = post(&http, format!("{base_url}v1/payment_intents"), &charge).await;
    assert_eq!(status, 200, "{intent}");
    assert_eq!(intent["status"], "succeeded");
    let counted: Value = http
        .get(format!(
            "{base_url}_fake/payment_intents?reservation_id=r-command"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counted["count"], 1);

    child.kill().await.unwrap();
}

#[tokio::test]
async fn the_command_refuses_production() {
    let output = fake_stripe()
        .args(["--bind", "127.0.0.1:0"])
        .env("APP_ENV", "production")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("APP_ENV=production"),
        "{}",
        stderr(&output)
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("listening"));
}

#[tokio::test]
async fn a_card_is_saved_by_hand_with_save_card() {
    let fake = FakeStripe::start(FakeStripeOptions::default())
        .await
        .unwrap();
    let base = fake.base_url();
    let http = reqwest::Client::new();
    // A booking's SetupIntent, made as the API makes it.
    let (status, customer) = post(&http, format!("{base}v1/customers"), &[]).await;
    assert_eq!(status, 200, "{customer}");
    let new_intent = || async {
        let customer = customer["id"].as_str().unwrap();
        let form = [("customer", customer), ("usage", "off_session")];
        let (status, intent) = post(&http, format!("{base}v1/setup_intents"), &form).await;
        assert_eq!(status, 200, "{intent}");
        intent["client_secret"].as_str().unwrap().to_owned()
    };
    let save_card = |secret: String, more: &'static [&'static str]| {
        fake_stripe()
            .args(["save-card", &secret, "--api", &base])
            .args(more)
            .output()
    };

    // pm_card_visa unless told otherwise.
    let secret = new_intent().await;
    let saved = save_card(secret.clone(), &[]).await.unwrap();
    assert!(saved.status.success(), "{}", stderr(&saved));
    let stdout = String::from_utf8_lossy(&saved.stdout);
    assert!(stdout.contains(": succeeded, card pm_"), "{stdout}");
    let again = save_card(secret, &[]).await.unwrap();
    assert!(
        !again.status.success(),
        "a saved SetupIntent cannot be confirmed twice"
    );
    assert!(
        stderr(&again).contains("status of succeeded"),
        "{}",
        stderr(&again)
    );

    let declined = save_card(new_intent().await, &["--card", "pm_card_chargeDeclined"])
        .await
        .unwrap();
    assert!(!declined.status.success());
    assert!(
        stderr(&declined).contains("refused the card (402): Your card was declined."),
        "{}",
        stderr(&declined)
    );
}
