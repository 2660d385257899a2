//! Payments: the few things Curbside asks of Stripe, behind one small trait.
//!
//! Curbside saves a driver's card with a SetupIntent when a reservation is booked, asks
//! Stripe (not the client) whether the card was saved, and charges the final bill off-session
//! when the reservation ends. [`PaymentGateway`] is exactly that surface; [`StripeGateway`]
//! implements it over async-stripe, and the `fake-stripe` crate of this workspace is a local
//! imitation of Stripe that speaks the same wire format, so tests and development run the real
//! adapter over real HTTP.
//!
//! Every call that creates something at Stripe takes an idempotency key from the caller: a
//! retried charge with the same key can never charge twice.

mod ids;
mod stripe_gateway;
pub mod webhook;

use std::time::Duration;

use secrecy::SecretString;

use crate::error::AppError;
use crate::money::Cents;
use uuid::Uuid;

pub use self::ids::{CustomerId, PaymentIntentId, PaymentMethodId, RefundId, SetupIntentId};
pub use self::stripe_gateway::StripeGateway;
pub use self::webhook::{WebhookError, WebhookEvent, WebhookEventKind};

/// Stripe's API, used unless `STRIPE_API_BASE` points elsewhere.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com/";

/// How long one HTTP call to Stripe may take, connection included, before it counts as
/// [`PaymentError::Unavailable`]. Stripe answers in well under a second; a hung connection must
/// not hold a request or a job for ever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the payment adapter needs to know. The main configuration reads `STRIPE_SECRET_KEY`,
/// `STRIPE_WEBHOOK_SECRET` and `STRIPE_API_BASE` into it.
#[derive(Clone)]
pub struct PaymentsConfig {
    /// The secret API key (`sk_test_…` or `sk_live_…`).
    pub secret_key: SecretString,
    /// The signing secret of the webhook endpoint (`whsec_…`).
    pub webhook_secret: SecretString,
    /// Where the Stripe API is, always ending in `/` (async-stripe appends `v1/…` to it).
    pub api_base: String,
    /// Time limit of each HTTP call.
    pub timeout: Duration,
}

impl PaymentsConfig {
    /// Stripe's own API with the default timeout.
    pub fn new(secret_key: impl Into<String>, webhook_secret: impl Into<String>) -> Self {
        Self {
            secret_key: SecretString::from(secret_key.into()),
            webhook_secret: SecretString::from(webhook_secret.into()),
            api_base: DEFAULT_API_BASE.to_owned(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Points the adapter at another base URL (the local imitation of Stripe). A missing
    /// trailing slash is added: without it async-stripe would build `…:12111v1/customers`.
    pub fn with_api_base(mut self, api_base: impl Into<String>) -> Self {
        let mut api_base = api_base.into();
        if !api_base.ends_with('/') {
            api_base.push('/');
        }
        self.api_base = api_base;
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl std::fmt::Debug for PaymentsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentsConfig")
            .field("api_base", &self.api_base)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Answers a failed Stripe call: 503 when trying again may work, 502 otherwise.
pub fn payment_error(error: PaymentError) -> AppError {
    tracing::warn!(%error, "Stripe call failed");
    match error {
        PaymentError::Unavailable(_) => AppError::ServiceUnavailable(
            "the payment provider is unavailable; retry shortly".into(),
        ),
        PaymentError::Rejected { .. } | PaymentError::Unexpected(_) => {
            AppError::BadGateway("the payment provider refused the request".into())
        }
    }
}

/// Everything Curbside asks of the payment provider. Object-safe, so the app holds an
/// `Arc<dyn PaymentGateway>` and tests can put anything behind it.
#[async_trait::async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// Creates the Stripe customer that a driver's saved card belongs to.
    async fn create_customer(
        &self,
        email: &str,
        idempotency_key: &str,
    ) -> Result<CustomerId, PaymentError>;

    /// Starts saving a card for later off-session charges (`usage=off_session`). The client
    /// secret goes to the browser, which confirms the SetupIntent with Stripe.js.
    async fn create_setup_intent(
        &self,
        customer_id: &CustomerId,
        idempotency_key: &str,
    ) -> Result<SetupIntent, PaymentError>;

    /// Asks Stripe whether the card was saved: the server never takes the client's word.
    async fn retrieve_setup_intent(&self, id: &SetupIntentId) -> Result<SetupIntent, PaymentError>;

    /// A saved card's brand, last four digits and owner, for receipts and to check that a
    /// card offered for a bill is the payer's; `None` for a method that is no card.
    async fn card(&self, payment_method_id: &PaymentMethodId)
    -> Result<Option<Card>, PaymentError>;

    /// The cards attached to the customer, newest first (Stripe's first 100).
    async fn cards_of(&self, customer_id: &CustomerId) -> Result<Vec<Card>, PaymentError>;

    /// The customer's default card (`invoice_settings.default_payment_method`), if any.
    async fn default_card(
        &self,
        customer_id: &CustomerId,
    ) -> Result<Option<PaymentMethodId>, PaymentError>;

    /// Makes the card, which must be attached to the customer, its default.
    async fn set_default_card(
        &self,
        customer_id: &CustomerId,
        payment_method_id: &PaymentMethodId,
    ) -> Result<(), PaymentError>;

    /// Detaches the card from its customer: it can no longer be charged. A card that is
    /// attached to nobody (detached before) is not an error.
    async fn detach_card(&self, payment_method_id: &PaymentMethodId) -> Result<(), PaymentError>;

    /// Refunds part or all of a succeeded PaymentIntent.
    async fn create_refund(&self, request: &RefundRequest) -> Result<Refund, PaymentError>;

    /// The refunds of a PaymentIntent, newest first (Stripe's first 100).
    async fn refunds_of(
        &self,
        payment_intent_id: &PaymentIntentId,
    ) -> Result<Vec<Refund>, PaymentError>;

    /// Asks Stripe for a PaymentIntent (`None` if Stripe has no such object). Webhooks only
    /// name a PaymentIntent; its state is believed when Stripe itself reports it.
    async fn retrieve_payment_intent(
        &self,
        id: &PaymentIntentId,
    ) -> Result<Option<PaymentIntent>, PaymentError>;

    /// Charges a saved card with nobody at the keyboard (`confirm=true`, `off_session=true`).
    /// A decline is an outcome, not an error; errors are about reaching Stripe at all.
    async fn charge_off_session(
        &self,
        request: &ChargeRequest,
    ) -> Result<ChargeOutcome, PaymentError>;

    /// Checks a webhook's `Stripe-Signature` over the raw body and reads the event.
    fn verify_webhook(
        &self,
        raw_body: &[u8],
        stripe_signature: &str,
    ) -> Result<WebhookEvent, WebhookError>;
}

/// What Curbside needs to know of a SetupIntent.
#[derive(Clone, PartialEq, Eq)]
pub struct SetupIntent {
    pub id: SetupIntentId,
    /// Handed to the browser (and only there): Stripe.js confirms the intent with it.
    pub client_secret: String,
    pub status: SetupIntentStatus,
    /// The saved card, once the driver has entered one.
    pub payment_method: Option<PaymentMethodId>,
}

impl std::fmt::Debug for SetupIntent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client secret opens the intent to whoever holds it: keep it out of logs.
        f.debug_struct("SetupIntent")
            .field("id", &self.id)
            .field("status", &self.status)
            .field("payment_method", &self.payment_method)
            .finish_non_exhaustive()
    }
}

/// The states of a SetupIntent; only `Succeeded` means the card can be charged later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupIntentStatus {
    RequiresPaymentMethod,
    RequiresConfirmation,
    RequiresAction,
    Processing,
    Canceled,
    Succeeded,
    /// A state newer than this code.
    Other(String),
}

impl SetupIntentStatus {
    pub fn parse(status: &str) -> Self {
        match status {
            "requires_payment_method" => Self::RequiresPaymentMethod,
            "requires_confirmation" => Self::RequiresConfirmation,
            "requires_action" => Self::RequiresAction,
            "processing" => Self::Processing,
            "canceled" => Self::Canceled,
            "succeeded" => Self::Succeeded,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// An off-session charge of a saved card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    pub customer_id: CustomerId,
    pub payment_method_id: PaymentMethodId,
    pub amount_cents: Cents,
    /// Lowercase ISO code, e.g. `usd`.
    pub currency: String,
    /// Sent as `metadata[reservation_id]`, so webhooks and Stripe's dashboard lead back to it.
    pub reservation_id: Uuid,
    /// The same key for every try of one attempt at the bill (a new attempt, with another
    /// card, has its own): Stripe then charges at most once per attempt.
    pub idempotency_key: String,
}

/// What Curbside reads of a PaymentIntent that Stripe reports.
#[derive(Clone, PartialEq, Eq)]
pub struct PaymentIntent {
    pub id: PaymentIntentId,
    pub customer_id: Option<CustomerId>,
    pub amount_cents: Cents,
    /// `metadata[reservation_id]`, as Curbside set it when charging.
    pub reservation_id: Option<Uuid>,
    /// The card it charges.
    pub payment_method_id: Option<PaymentMethodId>,
    /// Handed to the card holder's browser (and only there) when the bank asks them to
    /// authenticate: Stripe.js completes the payment with it.
    pub client_secret: Option<String>,
    /// Its state, read as the outcome of a charge.
    pub outcome: ChargeOutcome,
}

impl std::fmt::Debug for PaymentIntent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client secret opens the payment to whoever holds it: keep it out of logs.
        f.debug_struct("PaymentIntent")
            .field("id", &self.id)
            .field("customer_id", &self.customer_id)
            .field("amount_cents", &self.amount_cents)
            .field("reservation_id", &self.reservation_id)
            .field("payment_method_id", &self.payment_method_id)
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

/// A saved card, as Stripe describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub id: PaymentMethodId,
    /// `visa`, `mastercard`, …
    pub brand: String,
    pub last4: String,
    /// 1 to 12.
    pub exp_month: i16,
    /// Four digits.
    pub exp_year: i16,
    /// The customer it is attached to, if any.
    pub customer_id: Option<CustomerId>,
}

/// A refund of (part of) a paid bill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub payment_intent_id: PaymentIntentId,
    pub amount_cents: Cents,
    /// Curbside's id of the refund, sent as `metadata[refund_id]`: Stripe's refunds lead back
    /// to it, and events name it.
    pub refund_id: Uuid,
    pub reservation_id: Uuid,
    /// The operator's words, sent as `metadata[reason]` (Stripe's own `reason` takes only a
    /// few fixed words).
    pub reason: String,
    /// `refund:{refund_id}`: however often a refund is asked, Stripe makes it once.
    pub idempotency_key: String,
}

/// What Curbside reads of a Stripe Refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub id: RefundId,
    pub amount_cents: Cents,
    /// `metadata[refund_id]`, as Curbside set it.
    pub refund_id: Option<Uuid>,
    pub status: RefundStatus,
    /// Stripe's word when it failed (`expired_or_canceled_card`, …).
    pub failure_reason: Option<String>,
}

/// Where a refund is: only `Succeeded` means the money went back; `Failed` and `Canceled`
/// give the amount back to what can be refunded. Stored in `refunds.status` in these words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum RefundStatus {
    /// Also Stripe's `requires_action` (rare for cards) and any state newer than this code.
    Pending,
    Succeeded,
    Failed,
    Canceled,
}

impl RefundStatus {
    pub fn parse(status: &str) -> Self {
        match status {
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "canceled" => Self::Canceled,
            _ => Self::Pending,
        }
    }
}

/// How an off-session charge ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// The money is ours.
    Succeeded { payment_intent_id: PaymentIntentId },
    /// Stripe has accepted the charge and will tell us the result by webhook (rare for cards).
    Processing { payment_intent_id: PaymentIntentId },
    /// The bank said no (`card_declined`, `expired_card`, …); becomes HTTP 402 for clients.
    Declined {
        payment_intent_id: Option<PaymentIntentId>,
        /// Stripe's error code, e.g. `card_declined`.
        code: String,
        /// The issuer's reason when given, e.g. `insufficient_funds`.
        decline_code: Option<String>,
        /// Stripe's text, safe to show to the card holder.
        message: String,
    },
    /// The bank wants the card holder to authenticate (`authentication_required`): only the
    /// driver, on-session, can finish this payment.
    RequiresAction { payment_intent_id: PaymentIntentId },
}

/// Why a call to Stripe did not give an answer Curbside can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// Stripe could not be reached or could not answer now: timeout, connection error, 5xx,
    /// 429 or a conflicting concurrent request (409). Retry later with the same idempotency key.
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
    /// Stripe refused the request (a 4xx other than the above): retrying it will not help.
    #[error("the payment provider rejected the request ({status} {code}): {message}")]
    Rejected {
        status: u16,
        /// Stripe's error code, or its error type when there is no code.
        code: String,
        message: String,
    },
    /// Stripe answered with something this code cannot read (an API version mismatch or a
    /// bug). The state at Stripe is unknown: do not retry blindly, and do not assume failure.
    #[error("unexpected answer from the payment provider: {0}")]
    Unexpected(String),
}

impl PaymentError {
    /// Whether trying again later, with the same idempotency key, may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}
