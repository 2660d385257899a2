//! Money: whole cents of US dollars, Curbside's one currency. Amounts are never floats.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An amount in cents.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    sqlx::Type,
)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct Cents(pub i64);

impl Cents {
    pub const ZERO: Self = Self(0);

    /// For people: `$4.58`.
    pub fn dollars(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let cents = self.0.unsigned_abs();
        format!("{sign}${}.{:02}", cents / 100, cents % 100)
    }
}

impl std::ops::Sub for Cents {
    type Output = Self;

    fn sub(self, other: Self) -> Self {
        Self(self.0 - other.0)
    }
}

impl std::fmt::Display for Cents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_shown_in_dollars() {
        assert_eq!(Cents(458).dollars(), "$4.58");
        assert_eq!(Cents(50).dollars(), "$0.50");
        assert_eq!(Cents(12_000).dollars(), "$120.00");
        assert_eq!(Cents(-125).dollars(), "-$1.25");
    }

    #[test]
    fn cents_are_plain_integers_on_the_wire() {
        assert_eq!(serde_json::to_string(&Cents(225)).unwrap(), "225");
        assert_eq!(serde_json::from_str::<Cents>("50").unwrap(), Cents(50));
    }
}
