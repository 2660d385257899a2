//! Account types. Input is parsed into these once, at the edge; the rest of the code can
//! rely on an `Email` being normalised and a `Password` being of an allowed length.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::FieldError;

/// An email address, trimmed and lowercased, so that comparisons are case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let email = raw.trim().to_lowercase();
        let invalid = || FieldError::new("email", "is not a valid email address");
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.contains('@')
            && domain.split('.').all(|label| !label.is_empty());
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password of 8 to 128 characters. Kept secret so it never reaches a log.
#[derive(Debug)]
pub struct Password(SecretString);

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 128;

    pub fn parse(field: &'static str, raw: String) -> Result<Self, FieldError> {
        let chars = raw.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&chars) {
            return Err(FieldError::new(
                field,
                format!(
                    "must be between {} and {} characters long",
                    Self::MIN_CHARS,
                    Self::MAX_CHARS
                ),
            ));
        }
        Ok(Self(raw.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// A display name: trimmed, 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

impl UserName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let name = raw.trim();
        let chars = name.chars().count();
        if chars == 0 || chars > 100 || name.chars().any(char::is_control) {
            return Err(FieldError::new(
                "name",
                "must be 1 to 100 characters without control characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Role {
    Driver,
    Operator,
}

/// A user as clients see it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    /// Null when none was given at sign-up.
    #[schema(required = true)]
    pub name: Option<String>,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        let email = Email::parse("  Ada.Lovelace@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "ada.lovelace@example.com");
    }

    #[test]
    fn malformed_emails_are_refused() {
        for raw in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "ada@@example.com",
            "ada lovelace@example.com",
            "ada@example..com",
            &format!("{}@example.com", "a".repeat(65)),
        ] {
            assert!(Email::parse(raw).is_err(), "{raw:?} was accepted");
        }
    }

    #[test]
    fn passwords_are_counted_in_characters() {
        assert!(Password::parse("password", "1234567".into()).is_err());
        assert!(Password::parse("password", "12345678".into()).is_ok());
        assert!(Password::parse("password", "é".repeat(128)).is_ok());
        assert!(Password::parse("password", "é".repeat(129)).is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(UserName::parse("  Ada ").unwrap().as_str(), "Ada");
        assert!(UserName::parse("   ").is_err());
        assert!(UserName::parse(&"x".repeat(101)).is_err());
        assert!(UserName::parse("a\u{0}b").is_err());
    }
}
