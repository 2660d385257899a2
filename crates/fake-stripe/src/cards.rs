//! Stripe's test payment methods (`pm_card_…`) and how each behaves.
//!
//! As at Stripe, using a test token creates a new `pm_…` payment method with that card's
//! behaviour; confirming a SetupIntent attaches it to the intent's customer. One
//! simplification: a card that asks for 3-D Secure when it is saved is treated as if the driver
//! completed the challenge in the browser (Stripe.js would show it), so saving succeeds.
//!
//! Refunds succeed at once, except those of `pm_card_pendingRefund` (4000 0000 0000 7726),
//! Stripe's card for refunds that take time: they wait in `pending` until the control API
//! settles them (`POST /_fake/refunds/settle`, [`crate::FakeStripe::settle_pending_refunds`]),
//! as the bank confirming them some days later would.

/// What the card does when it is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Approve,
    /// The issuer declines with this `decline_code`.
    Decline(&'static str),
    /// The issuer wants 3-D Secure: an off-session payment fails with
    /// `authentication_required`, an on-session one waits in `requires_action`.
    Authenticate,
}

#[derive(Debug)]
pub struct TestCard {
    pub token: &'static str,
    pub brand: &'static str,
    pub last4: &'static str,
    pub fingerprint: &'static str,
    /// Confirming a SetupIntent with it.
    pub on_setup: Attempt,
    /// A payment after the card was saved with a SetupIntent.
    pub on_payment_after_setup: Attempt,
    /// A payment with a card that was never set up for later use.
    pub on_payment: Attempt,
    /// Its refunds are created `pending` and succeed only when settled.
    pub refunds_pending: bool,
}

pub const CARDS: &[TestCard] = &[
    TestCard {
        token: "pm_card_visa",
        brand: "visa",
        last4: "4242",
        fingerprint: "Xt5EWLLDS7FJjR1c",
        on_setup: Attempt::Approve,
        on_payment_after_setup: Attempt::Approve,
        on_payment: Attempt::Approve,
        refunds_pending: false,
    },
    TestCard {
        token: "pm_card_mastercard",
        brand: "mastercard",
        last4: "4444",
        fingerprint: "mcLJ9fbQ7Lbd6vpU",
        on_setup: Attempt::Approve,
        on_payment_after_setup: Attempt::Approve,
        on_payment: Attempt::Approve,
        refunds_pending: false,
    },
    // 4000 0000 0000 0002: every attempt is declined, saving it too.
    TestCard {
        token: "pm_card_chargeDeclined",
        brand: "visa",
        last4: "0002",
        fingerprint: "dcl0002GenericDec",
        on_setup: Attempt::Decline("generic_decline"),
        on_payment_after_setup: Attempt::Decline("generic_decline"),
        on_payment: Attempt::Decline("generic_decline"),
        refunds_pending: false,
    },
    // 4000 0000 0000 0341: saving succeeds, charging it later is declined.
    TestCard {
        token: "pm_card_chargeCustomerFail",
        brand: "visa",
        last4: "0341",
        fingerprint: "cf0341CustomerFai",
        on_setup: Attempt::Approve,
        on_payment_after_setup: Attempt::Decline("generic_decline"),
        on_payment: Attempt::Decline("generic_decline"),
        refunds_pending: false,
    },
    // 4000 0027 6000 3184: asks for authentication on every payment, even once saved.
    TestCard {
        token: "pm_card_authenticationRequired",
        brand: "visa",
        last4: "3184",
        fingerprint: "ar3184AuthAlways0",
        on_setup: Attempt::Approve,
        on_payment_after_setup: Attempt::Authenticate,
        on_payment: Attempt::Authenticate,
        refunds_pending: false,
    },
    // 4000 0025 0000 3155: asks for authentication unless it was set up for later payments.
    TestCard {
        token: "pm_card_authenticationRequiredOnSetup",
        brand: "visa",
        last4: "3155",
        fingerprint: "ar3155AuthOnSetup",
        on_setup: Attempt::Approve,
        on_payment_after_setup: Attempt::Approve,
        on_payment: Attempt::Authenticate,
        refunds_pending: false,
    },
    // 4000 0000 0000 7726: saves and charges like any card; its refunds stay `pending` until
    // settled, then succeed (at Stripe, some time later by itself).
    TestCard {
        token: "pm_card_pendingRefund",
        brand: "visa",
        last4: "7726",
        fingerprint: "pr7726PendingRefu",
        on_setup: Attempt::Approve,
        on_payment_after_setup: Attempt::Approve,
        on_payment: Attempt::Approve,
        refunds_pending: true,
    },
];

pub fn find(token: &str) -> Option<&'static TestCard> {
    CARDS.iter().find(|card| card.token == token)
}
