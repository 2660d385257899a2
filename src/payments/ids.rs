//! Stripe's object ids, one type each, so a SetupIntent's id can never be passed where a
//! PaymentIntent's or a card's is expected. Stripe's ids are opaque strings with a prefix
//! (`cus_`, `seti_`, `pm_`, `pi_`); Curbside stores them as text and never parses them.

macro_rules! stripe_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, sqlx::Type)]
        #[sqlx(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    };
}

stripe_id!(
    /// A customer (`cus_…`): the payer a saved card belongs to.
    CustomerId
);
stripe_id!(
    /// A SetupIntent (`seti_…`): saving a card for later off-session charges.
    SetupIntentId
);
stripe_id!(
    /// A payment method (`pm_…`): here always a card.
    PaymentMethodId
);
impl PaymentMethodId {
    /// The longest id Stripe gives an object (its documented limit).
    pub const MAX_LENGTH: usize = 255;

    /// A payment method id as a client sends it: `pm_` and letters, digits or `_`, at most
    /// 255 characters. Anything else is refused before it reaches Stripe, a log or SQL.
    pub fn parse(raw: &str) -> Option<Self> {
        let well_formed = raw.starts_with("pm_")
            && raw.len() <= Self::MAX_LENGTH
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        well_formed.then(|| Self::new(raw))
    }
}

stripe_id!(
    /// A PaymentIntent (`pi_…`): one attempt at charging a bill.
    PaymentIntentId
);
stripe_id!(
    /// A refund (`re_…`): money given back from a PaymentIntent.
    RefundId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_method_ids_are_stripes_shape_only() {
        assert!(PaymentMethodId::parse("pm_1PgMxqLkdIwHu7ix").is_some());
        assert!(PaymentMethodId::parse("pm_").is_some());
        for bad in [
            "",
            "card_1",
            "pm_1'; drop",
            "pm_\u{0}",
            &format!("pm_{}", "a".repeat(253)),
        ] {
            assert!(PaymentMethodId::parse(bad).is_none(), "{bad:?}");
        }
    }
}
