//! [`PaymentGateway`] over async-stripe 1.0.0-rc.10.
//!
//! Both intents are limited to cards (`allowed_payment_method_types[]=card`, the current name of
//! `payment_method_types`): Curbside charges saved cards off-session and shows their last four
//! digits, so a payment method of another kind saved in the browser would be of no use.
//!
//! The SDK sends each request once (`RequestStrategy::Idempotent` never retries by itself);
//! retrying is the caller's decision, made with the same idempotency key.

use std::collections::HashMap;

use secrecy::ExposeSecret;
use stripe::{
    Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest as _,
};
use stripe_core::customer::{
    CreateCustomer, ListPaymentMethodsCustomer, RetrieveCustomer, RetrieveCustomerReturned,
    UpdateCustomer, UpdateCustomerInvoiceSettings,
};
use stripe_core::payment_intent::{
    CreatePaymentIntent, CreatePaymentIntentOffSession, RetrievePaymentIntent,
};
use stripe_core::refund::{CreateRefund, ListRefund};
use stripe_core::setup_intent::{CreateSetupIntent, CreateSetupIntentUsage, RetrieveSetupIntent};
use stripe_payment::payment_method::{DetachPaymentMethod, RetrievePaymentMethod};
use stripe_shared::{
    ApiErrors, PaymentIntentAllowedPaymentMethodTypes, PaymentIntentStatus,
    SetupIntentAllowedPaymentMethodTypes,
};

use super::webhook::{self, WebhookError, WebhookEvent};
use super::{
    Card, ChargeOutcome, ChargeRequest, CustomerId, PaymentError, PaymentGateway, PaymentIntent,
    PaymentIntentId, PaymentMethodId, PaymentsConfig, Refund, RefundId, RefundRequest,
    RefundStatus, SetupIntent, SetupIntentId, SetupIntentStatus,
};
use crate::money::Cents;

/// The Stripe implementation of [`PaymentGateway`]. Cheap to clone; build one at start-up.
#[derive(Clone)]
pub struct StripeGateway {
    client: Client,
    webhook_secret: secrecy::SecretString,
}

impl std::fmt::Debug for StripeGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeGateway").finish_non_exhaustive()
    }
}

impl StripeGateway {
    /// Fails only on a secret key or base URL that cannot be used in a request.
    pub fn new(config: &PaymentsConfig) -> Result<Self, PaymentError> {
        let client = ClientBuilder::new(config.secret_key.expose_secret())
            .url(config.api_base.as_str())
            .timeout(config.timeout)
            .app_info("curbside", Some(env!("CARGO_PKG_VERSION").to_owned()), None)
            .build()
            .map_err(|error| PaymentError::Unexpected(error.to_string()))?;
        Ok(Self {
            client,
            webhook_secret: config.webhook_secret.clone(),
        })
    }
}

fn idempotent(key: &str) -> Result<RequestStrategy, PaymentError> {
    let key = IdempotencyKey::new(key).map_err(|error| PaymentError::Rejected {
        status: 400,
        code: "idempotency_key_invalid".into(),
        message: error.to_string(),
    })?;
    Ok(RequestStrategy::Idempotent(key))
}

#[async_trait::async_trait]
impl PaymentGateway for StripeGateway {
    #[tracing::instrument(skip_all)]
    async fn create_customer(
        &self,
        email: &str,
        idempotency_key: &str,
    ) -> Result<CustomerId, PaymentError> {
        let customer = CreateCustomer::new()
            .email(email)
            .customize()
            .request_strategy(idempotent(idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(classify)?;
        Ok(CustomerId::new(customer.id.as_str()))
    }

    #[tracing::instrument(skip_all, fields(customer.id = %customer_id))]
    async fn create_setup_intent(
        &self,
        customer_id: &CustomerId,
        idempotency_key: &str,
    ) -> Result<SetupIntent, PaymentError> {
        let intent = CreateSetupIntent::new()
            .customer(customer_id.as_str())
            .usage(CreateSetupIntentUsage::OffSession)
            .allowed_payment_method_types(vec![SetupIntentAllowedPaymentMethodTypes::Card])
            .customize()
            .request_strategy(idempotent(idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(classify)?;
        setup_intent(intent)
    }

    #[tracing::instrument(skip_all, fields(setup_intent.id = %id))]
    async fn retrieve_setup_intent(&self, id: &SetupIntentId) -> Result<SetupIntent, PaymentError> {
        let intent = RetrieveSetupIntent::new(id.as_str())
            .send(&self.client)
            .await
            .map_err(classify)?;
        setup_intent(intent)
    }

    #[tracing::instrument(skip_all, fields(payment_method.id = %payment_method_id))]
    async fn card(
        &self,
        payment_method_id: &PaymentMethodId,
    ) -> Result<Option<Card>, PaymentError> {
        let method = RetrievePaymentMethod::new(payment_method_id.as_str())
            .send(&self.client)
            .await
            .map_err(classify)?;
        Ok(card_of(method))
    }

    #[tracing::instrument(skip_all, fields(customer.id = %customer_id))]
    async fn cards_of(&self, customer_id: &CustomerId) -> Result<Vec<Card>, PaymentError> {
        let list = ListPaymentMethodsCustomer::new(customer_id.as_str())
            .type_(stripe_core::customer::ListPaymentMethodsCustomerType::Card)
            .limit(100)
            .send(&self.client)
            .await
            .map_err(classify)?;
        Ok(list.data.into_iter().filter_map(card_of).collect())
    }

    #[tracing::instrument(skip_all, fields(customer.id = %customer_id))]
    async fn default_card(
        &self,
        customer_id: &CustomerId,
    ) -> Result<Option<PaymentMethodId>, PaymentError> {
        let customer = RetrieveCustomer::new(customer_id.as_str())
            .send(&self.client)
            .await
            .map_err(classify)?;
        let RetrieveCustomerReturned::Customer(customer) = customer else {
            return Ok(None);
        };
        Ok(customer
            .invoice_settings
            .and_then(|settings| settings.default_payment_method)
            .map(|pm| PaymentMethodId::new(pm.id().as_str())))
    }

    #[tracing::instrument(skip_all, fields(customer.id = %customer_id))]
    async fn set_default_card(
        &self,
        customer_id: &CustomerId,
        payment_method_id: &PaymentMethodId,
    ) -> Result<(), PaymentError> {
        let mut settings = UpdateCustomerInvoiceSettings::new();
        settings.default_payment_method = Some(payment_method_id.as_str().to_owned());
        UpdateCustomer::new(customer_id.as_str())
            .invoice_settings(settings)
            .send(&self.client)
            .await
            .map_err(classify)?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(payment_method.id = %payment_method_id))]
    async fn detach_card(&self, payment_method_id: &PaymentMethodId) -> Result<(), PaymentError> {
        match DetachPaymentMethod::new(payment_method_id.as_str())
            .send(&self.client)
            .await
        {
            Ok(_) => Ok(()),
            // Stripe refuses to detach a card attached to nobody, in words only: detached
            // before (by an earlier try whose answer was lost, or elsewhere) is done.
            Err(StripeError::Stripe(error, 400)) => match self.card(payment_method_id).await? {
                Some(card) if card.customer_id.is_some() => {
                    Err(classify(StripeError::Stripe(error, 400)))
                }
                _ => Ok(()),
            },
            Err(error) => Err(classify(error)),
        }
    }

    #[tracing::instrument(skip_all, fields(refund.id = %request.refund_id))]
    async fn create_refund(&self, request: &RefundRequest) -> Result<Refund, PaymentError> {
        let metadata = HashMap::from([
            ("refund_id".to_owned(), request.refund_id.to_string()),
            (
                "reservation_id".to_owned(),
                request.reservation_id.to_string(),
            ),
            ("reason".to_owned(), request.reason.clone()),
        ]);
        let refund = CreateRefund::new()
            .payment_intent(request.payment_intent_id.as_str())
            .amount(request.amount_cents.0)
            .reason(stripe_core::refund::CreateRefundReason::RequestedByCustomer)
            .metadata(metadata)
            .customize()
            .request_strategy(idempotent(&request.idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(classify)?;
        Ok(refund_of(refund))
    }

    #[tracing::instrument(skip_all, fields(payment_intent.id = %payment_intent_id))]
    async fn refunds_of(
        &self,
        payment_intent_id: &PaymentIntentId,
    ) -> Result<Vec<Refund>, PaymentError> {
        let list = ListRefund::new()
            .payment_intent(payment_intent_id.as_str())
            .limit(100)
            .send(&self.client)
            .await
            .map_err(classify)?;
        Ok(list.data.into_iter().map(refund_of).collect())
    }

    #[tracing::instrument(skip_all, fields(payment_intent.id = %id))]
    async fn retrieve_payment_intent(
        &self,
        id: &PaymentIntentId,
    ) -> Result<Option<PaymentIntent>, PaymentError> {
        let intent = match RetrievePaymentIntent::new(id.as_str())
            .send(&self.client)
            .await
        {
            Ok(intent) => intent,
            Err(StripeError::Stripe(_, 404)) => return Ok(None),
            Err(error) => return Err(classify(error)),
        };
        Ok(Some(PaymentIntent {
            id: PaymentIntentId::new(intent.id.as_str()),
            customer_id: intent
                .customer
                .as_ref()
                .map(|c| CustomerId::new(c.id().as_str())),
            amount_cents: Cents(intent.amount),
            reservation_id: intent
                .metadata
                .get("reservation_id")
                .and_then(|id| id.parse().ok()),
            payment_method_id: intent
                .payment_method
                .as_ref()
                .map(|pm| PaymentMethodId::new(pm.id().as_str())),
            client_secret: intent.client_secret.clone(),
            outcome: charge_outcome(intent),
        }))
    }

    #[tracing::instrument(skip_all, fields(reservation.id = %request.reservation_id))]
    async fn charge_off_session(
        &self,
        request: &ChargeRequest,
    ) -> Result<ChargeOutcome, PaymentError> {
        let currency = request
            .currency
            .parse::<stripe_types::Currency>()
            .unwrap_or_else(|never| match never {});
        let metadata = HashMap::from([(
            "reservation_id".to_owned(),
            request.reservation_id.to_string(),
        )]);
        let result = CreatePaymentIntent::new(request.amount_cents.0, currency)
            .customer(request.customer_id.as_str())
            .payment_method(request.payment_method_id.as_str())
            .allowed_payment_method_types(vec![PaymentIntentAllowedPaymentMethodTypes::Card])
            .off_session(CreatePaymentIntentOffSession::Bool(true))
            .confirm(true)
            .metadata(metadata)
            .customize()
            .request_strategy(idempotent(&request.idempotency_key)?)
            .send(&self.client)
            .await;
        match result {
            Ok(intent) => Ok(charge_outcome(intent)),
            Err(StripeError::Stripe(error, 402)) => Ok(declined_outcome(&error)),
            Err(error) => Err(classify(error)),
        }
    }

    fn verify_webhook(
        &self,
        raw_body: &[u8],
        stripe_signature: &str,
    ) -> Result<WebhookEvent, WebhookError> {
        webhook::verify(
            raw_body,
            stripe_signature,
            self.webhook_secret.expose_secret(),
            chrono::Utc::now().timestamp(),
        )
    }
}

/// The card of a payment method; `None` for a method of another kind.
fn card_of(method: stripe_shared::PaymentMethod) -> Option<Card> {
    let customer_id = method
        .customer
        .as_ref()
        .map(|c| CustomerId::new(c.id().as_str()));
    let card = method.card?;
    Some(Card {
        id: PaymentMethodId::new(method.id.as_str()),
        brand: card.brand,
        last4: card.last4,
        exp_month: i16::try_from(card.exp_month).unwrap_or(0),
        exp_year: i16::try_from(card.exp_year).unwrap_or(0),
        customer_id,
    })
}

fn refund_of(refund: stripe_shared::Refund) -> Refund {
    let metadata = refund.metadata.unwrap_or_default();
    Refund {
        id: RefundId::new(refund.id.as_str()),
        amount_cents: Cents(refund.amount),
        refund_id: metadata.get("refund_id").and_then(|id| id.parse().ok()),
        status: RefundStatus::parse(refund.status.as_deref().unwrap_or("pending")),
        failure_reason: refund.failure_reason,
    }
}

fn setup_intent(intent: stripe_shared::SetupIntent) -> Result<SetupIntent, PaymentError> {
    let client_secret = intent.client_secret.ok_or_else(|| {
        PaymentError::Unexpected(format!(
            "SetupIntent {} came without client_secret",
            intent.id
        ))
    })?;
    Ok(SetupIntent {
        id: SetupIntentId::new(intent.id.as_str()),
        client_secret,
        status: SetupIntentStatus::parse(intent.status.as_str()),
        payment_method: intent
            .payment_method
            .map(|pm| PaymentMethodId::new(pm.id().as_str())),
    })
}

/// The outcome of a PaymentIntent that Stripe returned with 200.
fn charge_outcome(intent: stripe_shared::PaymentIntent) -> ChargeOutcome {
    let payment_intent_id = PaymentIntentId::new(intent.id.as_str());
    match intent.status {
        PaymentIntentStatus::Succeeded => ChargeOutcome::Succeeded { payment_intent_id },
        PaymentIntentStatus::RequiresAction => ChargeOutcome::RequiresAction { payment_intent_id },
        PaymentIntentStatus::RequiresPaymentMethod => {
            // A failed attempt that came back as 200, or one retrieved later (Stripe reports
            // these as 402 when charging, but the object alone is enough to tell).
            let error = intent.last_payment_error.as_deref();
            let code = error
                .and_then(|e| e.code.as_ref())
                .map(|code| code.as_str());
            if code == Some("authentication_required") {
                return ChargeOutcome::RequiresAction { payment_intent_id };
            }
            ChargeOutcome::Declined {
                payment_intent_id: Some(payment_intent_id),
                code: error
                    .and_then(|e| e.code.as_ref())
                    .map_or("card_declined", |code| code.as_str())
                    .to_owned(),
                decline_code: error.and_then(|e| e.decline_code.clone()),
                message: error
                    .and_then(|e| e.message.clone())
                    .unwrap_or_else(|| "The payment was not completed.".to_owned()),
            }
        }
        // processing, requires_confirmation, requires_capture: the result will come by webhook
        // (or by retrieving the intent); nothing was refused.
        _ => ChargeOutcome::Processing { payment_intent_id },
    }
}

/// A 402 from a confirmed PaymentIntent: the card was tried and did not pay.
fn declined_outcome(error: &ApiErrors) -> ChargeOutcome {
    let code = error
        .code
        .as_ref()
        .map_or("card_declined", |code| code.as_str())
        .to_owned();
    let payment_intent_id = error
        .payment_intent
        .as_ref()
        .map(|pi| PaymentIntentId::new(pi.id.as_str()));
    if code == "authentication_required"
        && let Some(payment_intent_id) = payment_intent_id.clone()
    {
        return ChargeOutcome::RequiresAction { payment_intent_id };
    }
    ChargeOutcome::Declined {
        payment_intent_id,
        code,
        decline_code: error.decline_code.clone(),
        message: error
            .message
            .clone()
            .unwrap_or_else(|| "The card was declined.".to_owned()),
    }
}

/// Sorts an SDK error into what the caller can do about it.
fn classify(error: StripeError) -> PaymentError {
    match error {
        StripeError::Stripe(error, status) => {
            let code = error.code.as_ref().map_or_else(
                || error.type_.as_str().to_owned(),
                |code| code.as_str().to_owned(),
            );
            let message = error.message.clone().unwrap_or_default();
            if matches!(status, 409 | 429) || status >= 500 {
                PaymentError::Unavailable(format!("Stripe answered {status} {code}: {message}"))
            } else {
                PaymentError::Rejected {
                    status,
                    code,
                    message,
                }
            }
        }
        StripeError::Timeout => PaymentError::Unavailable("timed out".into()),
        StripeError::ClientError(message) => PaymentError::Unavailable(message),
        // The SDK says this when a non-2xx answer was not a Stripe error object: a proxy or
        // load balancer answered (502 pages and the like), not Stripe's API.
        StripeError::JSONDeserialize(message) if message == "error deserializing Stripe error" => {
            PaymentError::Unavailable("an error answer that is not from Stripe's API".into())
        }
        StripeError::JSONDeserialize(message) | StripeError::ConfigError(message) => {
            PaymentError::Unexpected(message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_errors_are_sorted_by_what_the_caller_can_do() {
        assert!(classify(StripeError::Timeout).is_retryable());
        assert!(classify(StripeError::ClientError("connection refused".into())).is_retryable());
        assert!(
            classify(StripeError::JSONDeserialize(
                "error deserializing Stripe error".into()
            ))
            .is_retryable()
        );
        assert!(matches!(
            classify(StripeError::JSONDeserialize(
                "error deserializing request data".into()
            )),
            PaymentError::Unexpected(_)
        ));
    }

    #[test]
    fn the_base_url_keeps_its_trailing_slash() {
        let config =
            PaymentsConfig::new("sk_test_x", "whsec_x").with_api_base("http://127.0.0.1:1");
        assert_eq!(config.api_base, "http://127.0.0.1:1/");
        let config = config.with_api_base("http://127.0.0.1:2/");
        assert_eq!(config.api_base, "http://127.0.0.1:2/");
        assert!(StripeGateway::new(&config).is_ok());
    }
}
