//! Account types. Input is parsed into these once, at the edge; the rest of the code can
//! rely on an `Email` being normalised and a `Password` being of an allowed length.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::FieldError;

/// An email address, trimmed and lowercased, so that comparisons are case-insensitive, and
/// one the mailer can send to: it is read by the same parser (lettre's) that delivery uses,
/// so no message is written to the outbox for an address that can never be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// RFC 5321's limit on a whole address.
    pub const MAX_LENGTH: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let email = raw.trim().to_lowercase();
        let invalid = || FieldError::new("email", "is not a valid email address");
        if email.len() > Self::MAX_LENGTH
            || email
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || is_invisible(c))
        {
            return Err(invalid());
        }
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        // Non-ASCII local parts need SMTPUTF8, which many servers refuse; a domain may be
        // internationalised (lettre sends it as punycode).
        let domain_ok = domain.contains('.') && domain.split('.').all(|label| !label.is_empty());
        if local.len() > 64 || !local.is_ascii() || !domain_ok {
            return Err(invalid());
        }
        let address: lettre::Address = email.parse().map_err(|_| invalid())?;
        // The outbox stores the text and the mailer reads it back as a mailbox: it must read
        // as this very address, not as a display name around another one.
        let mailbox: lettre::message::Mailbox = email.parse().map_err(|_| invalid())?;
        if mailbox.name.is_some() || mailbox.email != address {
            return Err(invalid());
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Characters that change how text is shown without being seen: bidirectional overrides
/// (an address that reads differently than it routes) and zero-width marks.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
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
#[derive(Debug, Clone, Serialize, ToSchema)]
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
            // What the mailer could not send to, found by a hostile tester.
            "a,b@example.com",
            "x<y>@example.com",
            "Ada <ada@example.com>",
            "\u{202E}moc.elpmaxe@ada",
            "ada@exa\u{202E}mple.com",
            "a\u{200B}da@example.com",
            "adä@example.com",
            "ada@exa mple.com",
            "ada@[300.1.1.1]",
            "\"ada\"@example.com",
        ] {
            assert!(Email::parse(raw).is_err(), "{raw:?} was accepted");
        }
    }

    #[test]
    fn real_addresses_are_kept_and_parse_as_the_mailer_reads_them() {
        for raw in [
            "ada@example.com",
            "o'brien+parking@mail.example.ie",
            "first.last@sub.example.co.uk",
            "driver@münchen.de",
        ] {
            let email = Email::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e:?}"));
            let mailbox: lettre::message::Mailbox = email.as_str().parse().unwrap();
            assert_eq!(mailbox.email.to_string(), email.as_str());
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
