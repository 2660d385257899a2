//! Extractors whose rejections are [`AppError`], so malformed input gets the same
//! problem+json body as every other error, and names the offending field.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::{AppError, FieldError};

/// Largest request body any route accepts.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// A JSON body. Wrong content type → 415, too large → 413, not JSON → 400,
/// JSON of the wrong shape (missing field, wrong type) → 422 naming the field.
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers().get(header::CONTENT_TYPE)) {
            return Err(AppError::UnsupportedMediaType(
                "the request body must be application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(body_rejection)?;
        parse_json(&bytes).map(Json)
    }
}

fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > 5 && essence[essence.len() - 5..].eq_ignore_ascii_case("+json"))
}

fn body_rejection(rejection: BytesRejection) -> AppError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        AppError::PayloadTooLarge {
            limit_bytes: BODY_LIMIT_BYTES,
        }
    } else {
        AppError::bad_request("unreadable_body", rejection.body_text())
    }
}

/// Parses a JSON document, telling syntax errors (400) from shape errors (422).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_data() {
            AppError::Validation(vec![field_error(&path, &inner.to_string())])
        } else {
            AppError::bad_request(
                "malformed_json",
                format!("the request body is not valid JSON: {inner}"),
            )
        }
    })?;
    deserializer.end().map_err(|error| {
        AppError::bad_request(
            "malformed_json",
            format!("the request body is not valid JSON: {error}"),
        )
    })?;
    Ok(value)
}

/// Names the field a serde error is about. serde reports a missing field at the path of
/// its parent, so the name is taken from the message in that case.
fn field_error(path: &str, message: &str) -> FieldError {
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(message)
        .to_owned();
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let field = match (missing, path) {
        (Some(name), ".") => name.to_owned(),
        (Some(name), parent) => format!("{parent}.{name}"),
        (None, ".") => "body".to_owned(),
        (None, path) => path.to_owned(),
    };
    let message = if missing.is_some() {
        "is required".to_owned()
    } else {
        message
    };
    FieldError::new(field, message)
}

/// A query string. Any value that does not fit its parameter → 422 naming the parameter.
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Query)
            .map_err(|error| {
                let path = error.path().to_string();
                AppError::Validation(vec![field_error(&path, &error.into_inner().to_string())])
            })
    }
}

/// Path parameters. A value of the wrong form (say, not a UUID) → 400 naming the parameter.
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection| AppError::bad_request("invalid_path", rejection.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct SignUp {
        email: String,
        age: u8,
    }

    fn parse(body: &str) -> AppError {
        parse_json::<SignUp>(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn syntax_errors_are_bad_requests() {
        assert_eq!(parse("{\"email\":").code(), "malformed_json");
        assert_eq!(
            parse(r#"{"email": "a@b.c", "age": 1} trailing"#).code(),
            "malformed_json"
        );
    }

    #[test]
    fn missing_fields_are_named() {
        match parse(r#"{"age": 3}"#) {
            AppError::Validation(errors) => {
                assert_eq!(errors, vec![FieldError::new("email", "is required")])
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn wrong_types_are_named() {
        match parse(r#"{"email": "a@b.c", "age": "old"}"#) {
            AppError::Validation(errors) => assert_eq!(errors[0].field, "age"),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn json_content_types() {
        let ok = |v: &str| is_json(Some(&header::HeaderValue::from_str(v).unwrap()));
        assert!(ok("application/json"));
        assert!(ok("application/json; charset=utf-8"));
        assert!(ok("application/merge-patch+json"));
        assert!(!ok("text/plain"));
        assert!(!is_json(None));
    }
}
