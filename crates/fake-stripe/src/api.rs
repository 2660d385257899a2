//! The Stripe endpoints Curbside uses, with Stripe's rules: bearer-key authentication,
//! form-encoded parameters, idempotency keys, card outcomes and events.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::cards::{self, Attempt, TestCard};
use super::objects::{self, ChargeFailure, NewPaymentIntent, NewRefund, error_body, new_id};
use super::{FakeState, Shared, form};

/// Everything the imitation remembers. Guarded by one mutex that is never held across an
/// `.await`: each request is handled whole under it, so requests never interleave.
#[derive(Default)]
pub(super) struct Store {
    customers: HashMap<String, Value>,
    setup_intents: HashMap<String, Value>,
    /// In creation order, so tests see charges in the order they were made.
    pub payment_intents: Vec<Value>,
    payment_methods: HashMap<String, SavedMethod>,
    /// The charges of payment attempts, with their refund fields kept up to date.
    charges: HashMap<String, Value>,
    /// In creation order (lists show them newest first).
    pub refunds: Vec<Value>,
    /// Responses by idempotency key, replayed for the same request.
    idempotency: HashMap<String, Stored>,
}

/// A payment method and the test card that decides how it behaves.
struct SavedMethod {
    object: Value,
    card: &'static TestCard,
    /// Saved with a SetupIntent, which spares some cards authentication later.
    set_up: bool,
    /// Its place in creation order, for lists (newest first).
    number: usize,
    /// Detached from its customer: at Stripe such a method can never be used again.
    detached: bool,
}

struct Stored {
    method: Method,
    path: String,
    params: Map<String, Value>,
    status: StatusCode,
    body: Value,
}

/// Who is calling: the secret key (the server) or the publishable key (Stripe.js in a
/// browser, which may only touch a SetupIntent whose client secret it holds).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    Secret,
    Publishable,
}

/// An error answer: the status and Stripe's `{"error": {…}}` body.
pub(super) struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    /// Fields given as `null` are left out: Stripe omits what does not apply (`param`…).
    fn new(status: StatusCode, kind: &str, fields: Value) -> Self {
        let fields = match fields {
            Value::Object(mut map) => {
                map.retain(|_, value| !value.is_null());
                map
            }
            _ => Map::new(),
        };
        Self {
            status,
            body: error_body(kind, fields),
        }
    }

    fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            json!({"message": message.into(), "param": param}),
        )
    }

    fn invalid_code(code: &str, message: impl Into<String>, param: Option<&str>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            json!({"code": code, "message": message.into(), "param": param}),
        )
    }

    /// A missing object named in the path (404) or in a parameter (400), as Stripe does.
    fn no_such(what: &str, id: &str, param: &str, in_path: bool) -> Self {
        let status = if in_path {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        };
        Self::new(
            status,
            "invalid_request_error",
            json!({"code": "resource_missing", "message": format!("No such {what}: '{id}'"),
                   "param": param}),
        )
    }

    /// An existing payment method that is not the customer's (another's, or detached).
    fn not_customers(payment_method: &str, param: &str) -> Self {
        Self::invalid_code(
            "resource_missing",
            format!(
                "The customer does not have a payment method with the ID {payment_method}. The \
                 payment method must be attached to the customer."
            ),
            Some(param),
        )
    }

    fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            json!({"message": message.into()}),
        )
    }

    /// What an injected fault answers: Stripe's own words for a 5xx or a 429.
    pub(super) fn injected(status: StatusCode) -> Self {
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Self::new(
                status,
                "invalid_request_error",
                json!({"code": "rate_limit",
                       "message": "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits."}),
            );
        }
        Self::new(
            status,
            "api_error",
            json!({"message": "An unknown error occurred"}),
        )
    }
}

/// What a request leaves behind besides its answer: events to deliver.
pub(super) struct Ctx {
    /// `None` for what happens by itself (a pending refund settling): such events name no
    /// request, as at Stripe.
    request_id: Option<String>,
    idempotency_key: Option<String>,
    pub events: Vec<Value>,
}

impl Ctx {
    fn emit(&mut self, kind: &str, object: &Value) {
        self.events.push(objects::event(
            &new_id("evt"),
            kind,
            object,
            self.request_id.as_deref(),
            self.idempotency_key.as_deref(),
        ));
    }

    /// An `*.updated`-like event, with Stripe's `data.previous_attributes`: the values that
    /// changed, as they were before.
    fn emit_change(&mut self, kind: &str, before: &Value, after: &Value) {
        self.emit(kind, after);
        if let Some(event) = self.events.last_mut() {
            event["data"]["previous_attributes"] = previous_attributes(before, after);
        }
    }
}

/// The fields of `before` that differ in `after`, with their old values (`null` for one that
/// did not exist), going into nested objects as Stripe does (`{"invoice_settings":
/// {"default_payment_method": "pm_…"}}`).
fn previous_attributes(before: &Value, after: &Value) -> Value {
    let (Some(before), Some(after)) = (before.as_object(), after.as_object()) else {
        return before.clone();
    };
    let mut changed = Map::new();
    for key in before.keys().chain(after.keys()) {
        let old = before.get(key).unwrap_or(&Value::Null);
        let new = after.get(key).unwrap_or(&Value::Null);
        if old != new && !changed.contains_key(key) {
            let value = if old.is_object() && new.is_object() {
                previous_attributes(old, new)
            } else {
                old.clone()
            };
            changed.insert(key.clone(), value);
        }
    }
    Value::Object(changed)
}

/// One record per API request, for tests ("was an idempotency key sent?").
#[derive(Debug, Clone, serde::Serialize)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// The decoded form parameters (or query), e.g. `{"metadata": {"reservation_id": …}}`.
    pub params: Value,
    pub idempotency_key: Option<String>,
    pub status: u16,
    /// Whether the answer was a stored one, replayed for a repeated idempotency key.
    pub replayed: bool,
}

/// Every Stripe API request lands here (the control API has its own routes).
pub(super) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let request_id = new_id("req");

    // An injected fault stands for a failure in front of the API: nothing is executed.
    if let Some(status) = shared.take_fault(&path) {
        let error = ApiError::injected(status);
        shared
            .lock()
            .record(&method, &uri, &headers, &body, status, false);
        return respond(error.status, &error.body, &request_id, false);
    }

    let request = Request {
        method: &method,
        path: &path,
        uri: &uri,
        headers: &headers,
        body: &body,
        request_id: &request_id,
    };
    let (status, answer, replayed) = match execute(&shared, &request) {
        Ok(answer) => answer,
        Err(error) => (error.status, error.body, false),
    };
    shared
        .lock()
        .record(&method, &uri, &headers, &body, status, replayed);

    if let Some(delay) = shared.delay_for(&path) {
        // After the work is done: a client that gives up meanwhile has lost an answer to a
        // request that did happen, which is what a retry with the same key must cope with.
        tokio::time::sleep(delay).await;
    }
    respond(status, &answer, &request_id, replayed)
}

fn respond(status: StatusCode, body: &Value, request_id: &str, replayed: bool) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("request-id", value);
    }
    headers.insert(
        "stripe-version",
        HeaderValue::from_static(objects::API_VERSION),
    );
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

struct Request<'a> {
    method: &'a Method,
    path: &'a str,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    body: &'a [u8],
    request_id: &'a str,
}

fn execute(
    shared: &Arc<Shared>,
    request: &Request<'_>,
) -> Result<(StatusCode, Value, bool), ApiError> {
    let Request {
        method,
        path,
        uri,
        headers,
        body,
        request_id,
    } = *request;
    let caller = authenticate(headers)?;
    let raw = if *method == Method::GET {
        uri.query().unwrap_or("").as_bytes()
    } else {
        body
    };
    let params = form::decode(raw).map_err(|message| ApiError::invalid(message, None))?;
    let idempotency_key = (*method == Method::POST)
        .then(|| {
            headers
                .get("idempotency-key")?
                .to_str()
                .ok()
                .map(str::to_owned)
        })
        .flatten();

    let mut state = shared.lock();
    if let Some(key) = &idempotency_key
        && let Some(stored) = state.store.idempotency.get(key)
    {
        if stored.method == *method && stored.path == path && stored.params == params {
            let answer = (stored.status, stored.body.clone(), true);
            return Ok(answer);
        }
        let error = ApiError::new(
            StatusCode::BAD_REQUEST,
            "idempotency_error",
            json!({"message": format!(
                "Keys for idempotent requests can only be used with the same parameters they \
                 were first used with. Try using a key other than '{key}' if you meant to \
                 execute a different request.")}),
        );
        return Err(error);
    }

    let mut ctx = Ctx {
        request_id: Some(request_id.to_owned()),
        idempotency_key: idempotency_key.clone(),
        events: Vec::new(),
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let result = state
        .store
        .route(method, &segments, &Params(params.clone()), caller, &mut ctx);
    let (status, body) = match result {
        Ok(body) => (StatusCode::OK, body),
        Err(error) => (error.status, error.body),
    };
    // Stripe keeps the result of a request that ran (including a decline), not of one refused
    // before it ran (bad parameters, missing objects).
    if let Some(key) = &idempotency_key
        && (status.is_success() || status == StatusCode::PAYMENT_REQUIRED)
    {
        state.store.idempotency.insert(
            key.clone(),
            Stored {
                method: method.clone(),
                path: path.to_owned(),
                params,
                status,
                body: body.clone(),
            },
        );
    }
    publish(shared, state, ctx.events);
    Ok((status, body, false))
}

/// Lists the events and starts their deliveries, once the lock is released.
fn publish(shared: &Arc<Shared>, mut state: MutexGuard<'_, FakeState>, events: Vec<Value>) {
    let deliveries = state.record_events(events);
    drop(state);
    if !deliveries.is_empty() {
        shared.notify();
    }
    for index in deliveries {
        super::webhooks::spawn_delivery(shared.clone(), index);
    }
}

/// Moves every pending refund to `succeeded`, as the bank confirming them does at Stripe
/// (`refund.updated`, `charge.refund.updated`, then `charge.refunded` for each). Returns how
/// many were settled.
pub(super) fn settle_pending_refunds(shared: &Arc<Shared>) -> usize {
    let mut state = shared.lock();
    let mut ctx = Ctx {
        request_id: None,
        idempotency_key: None,
        events: Vec::new(),
    };
    let settled = state.store.settle_pending_refunds(&mut ctx);
    publish(shared, state, ctx.events);
    settled
}

fn authenticate(headers: &HeaderMap) -> Result<Caller, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "You did not provide an API key. You need to provide your API key in the \
             Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        ));
    };
    let key = value.to_str().ok().and_then(api_key).unwrap_or_default();
    if key.starts_with("sk_test_") && key.len() > "sk_test_".len() {
        Ok(Caller::Secret)
    } else if key.starts_with("pk_test_") && key.len() > "pk_test_".len() {
        Ok(Caller::Publishable)
    } else {
        let shown: String = key.chars().take(8).collect();
        Err(ApiError::unauthorized(format!(
            "Invalid API Key provided: {shown}****"
        )))
    }
}

/// The key in an `Authorization` header, sent as Stripe takes it: `Bearer KEY`, or HTTP
/// Basic with the key as the user name and no password (`curl -u KEY:`).
fn api_key(header: &str) -> Option<String> {
    let (scheme, credentials) = header.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(credentials.trim().to_owned());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, _password) = decoded.split_once(':').unwrap_or((&decoded, ""));
    Some(user.to_owned())
}

/// Request parameters, every leaf a string as on the wire.
struct Params(Map<String, Value>);

impl Params {
    fn str(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    }

    fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.str(name).ok_or_else(|| {
            ApiError::invalid_code(
                "parameter_missing",
                format!("Missing required param: {name}."),
                Some(name),
            )
        })
    }

    fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.str(name)
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::invalid_code(
                        "parameter_invalid_integer",
                        format!("Invalid integer: {v}"),
                        Some(name),
                    )
                })
            })
            .transpose()
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.str(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(ApiError::invalid_code(
                "parameter_invalid_boolean",
                format!("Invalid boolean: {other}"),
                Some(name),
            )),
        }
    }

    fn metadata(&self) -> Result<Value, ApiError> {
        match self.0.get("metadata") {
            None => Ok(json!({})),
            Some(Value::String(s)) if s.is_empty() => Ok(json!({})),
            Some(Value::Object(map)) if map.values().all(Value::is_string) => {
                Ok(Value::Object(map.clone()))
            }
            Some(_) => Err(ApiError::invalid(
                "Invalid metadata: must be a hash of strings",
                Some("metadata"),
            )),
        }
    }

    /// `metadata` applied to `current` as an update does at Stripe: keys given are set, keys
    /// given empty are removed, and `metadata=` removes every key.
    fn metadata_update(&self, current: &Value) -> Result<Value, ApiError> {
        let mut merged = current.as_object().cloned().unwrap_or_default();
        match self.0.get("metadata") {
            None => {}
            Some(Value::String(s)) if s.is_empty() => merged.clear(),
            Some(Value::Object(map)) if map.values().all(Value::is_string) => {
                for (key, value) in map {
                    if value.as_str() == Some("") {
                        merged.remove(key);
                    } else {
                        merged.insert(key.clone(), value.clone());
                    }
                }
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    "Invalid metadata: must be a hash of strings",
                    Some("metadata"),
                ));
            }
        }
        Ok(Value::Object(merged))
    }

    /// A field an update sets, or unsets when given empty (`name=`): `None` when not given.
    fn update(&self, name: &str) -> Result<Option<Option<&str>>, ApiError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(Some(None)),
            Some(Value::String(s)) => Ok(Some(Some(s))),
            Some(_) => Err(ApiError::invalid(
                format!("Invalid string: {name} must be a string"),
                Some(name),
            )),
        }
    }

    /// A list's page size: 1 to 100, 10 when not given.
    fn limit(&self) -> Result<usize, ApiError> {
        let limit = self.int("limit")?.unwrap_or(10);
        if limit < 1 {
            return Err(ApiError::invalid(
                "This value must be greater than or equal to 1.",
                Some("limit"),
            ));
        }
        if limit > 100 {
            return Err(ApiError::invalid(
                "This value must be less than or equal to 100.",
                Some("limit"),
            ));
        }
        Ok(usize::try_from(limit).expect("between 1 and 100"))
    }
}

/// One page of `items` (newest first) as Stripe lists: `limit` of them, from the start, after
/// `starting_after` or before `ending_before` (ids of `what` in the list). `has_more` says
/// whether more follow in the direction of paging, as async-stripe's paginator reads it.
fn page(items: Vec<Value>, params: &Params, url: &str, what: &str) -> Result<Value, ApiError> {
    let limit = params.limit()?;
    let position = |param: &str| {
        params
            .str(param)
            .map(|id| {
                items
                    .iter()
                    .position(|item| item["id"] == id)
                    .ok_or_else(|| ApiError::no_such(what, id, param, false))
            })
            .transpose()
    };
    let (start, end, has_more) = match (position("starting_after")?, position("ending_before")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "You may only specify one of these parameters: ending_before, starting_after.",
                None,
            ));
        }
        (Some(after), None) => {
            let end = (after + 1 + limit).min(items.len());
            (after + 1, end, end < items.len())
        }
        (None, Some(before)) => {
            let start = before.saturating_sub(limit);
            (start, before, start > 0)
        }
        (None, None) => {
            let end = limit.min(items.len());
            (0, end, end < items.len())
        }
    };
    Ok(objects::list(items[start..end].to_vec(), has_more, url))
}

/// An amount as Stripe writes it in messages: `$12.50`.
fn money(amount: i64, currency: &str) -> String {
    let units = format!("{}.{:02}", amount / 100, amount % 100);
    match currency {
        "usd" => format!("${units}"),
        "eur" => format!("€{units}"),
        "gbp" => format!("£{units}"),
        other => format!("{units} {}", other.to_ascii_uppercase()),
    }
}

fn check_email(email: &str) -> Result<(), ApiError> {
    if email.contains('@') {
        return Ok(());
    }
    Err(ApiError::invalid_code(
        "email_invalid",
        format!("Invalid email address: {email}"),
        Some("email"),
    ))
}

impl Store {
    fn route(
        &mut self,
        method: &Method,
        segments: &[&str],
        params: &Params,
        caller: Caller,
        ctx: &mut Ctx,
    ) -> Result<Value, ApiError> {
        let secret_only = || {
            if caller == Caller::Secret {
                Ok(())
            } else {
                Err(ApiError::unauthorized(
                    "This API call cannot be made with a publishable API key. Please use a \
                     secret API key.",
                ))
            }
        };
        match (method.as_str(), segments) {
            ("POST", ["v1", "customers"]) => {
                secret_only()?;
                self.create_customer(params)
            }
            ("GET", ["v1", "customers", id]) => {
                secret_only()?;
                self.customers
                    .get(*id)
                    .cloned()
                    .ok_or_else(|| ApiError::no_such("customer", id, "id", true))
            }
            ("POST", ["v1", "customers", id]) => {
                secret_only()?;
                self.update_customer(id, params, ctx)
            }
            ("GET", ["v1", "customers", id, "payment_methods"]) => {
                secret_only()?;
                self.customer_payment_methods(id, params)
            }
            ("POST", ["v1", "setup_intents"]) => {
                secret_only()?;
                self.create_setup_intent(params, ctx)
            }
            ("GET", ["v1", "setup_intents", id]) => {
                let intent = self.setup_intent(id, params, caller)?;
                Ok(intent.clone())
            }
            ("POST", ["v1", "setup_intents", id, "confirm"]) => {
                self.setup_intent(id, params, caller)?;
                self.confirm_setup_intent(id, params, ctx)
            }
            ("POST", ["v1", "payment_intents"]) => {
                secret_only()?;
                self.create_payment_intent(params, ctx)
            }
            ("GET", ["v1", "payment_intents", id]) => {
                secret_only()?;
                self.payment_intents
                    .iter()
                    .find(|pi| pi["id"] == *id)
                    .cloned()
                    .ok_or_else(|| ApiError::no_such("payment_intent", id, "intent", true))
            }
            ("POST", ["v1", "payment_intents", id, "confirm"]) => {
                self.payment_intent(id, params, caller)?;
                self.confirm_payment_intent(id, params, ctx)
            }
            ("GET", ["v1", "payment_methods", id]) => {
                secret_only()?;
                if let Some(card) = cards::find(id) {
                    return Ok(objects::payment_method(id, card, None));
                }
                self.payment_methods
                    .get(*id)
                    .map(|pm| pm.object.clone())
                    .ok_or_else(|| ApiError::no_such("PaymentMethod", id, "payment_method", true))
            }
            ("POST", ["v1", "payment_methods", id, "detach"]) => {
                secret_only()?;
                self.detach_payment_method(id, ctx)
            }
            ("POST", ["v1", "refunds"]) => {
                secret_only()?;
                self.create_refund(params, ctx)
            }
            ("GET", ["v1", "refunds"]) => {
                secret_only()?;
                self.list_refunds(params)
            }
            ("GET", ["v1", "refunds", id]) => {
                secret_only()?;
                self.refunds
                    .iter()
                    .find(|refund| refund["id"] == *id)
                    .cloned()
                    .ok_or_else(|| ApiError::no_such("refund", id, "id", true))
            }
            ("GET", ["v1", "charges", id]) => {
                secret_only()?;
                self.charges
                    .get(*id)
                    .cloned()
                    .ok_or_else(|| ApiError::no_such("charge", id, "id", true))
            }
            ("GET", ["v1", "charges", id, "refunds"]) => {
                secret_only()?;
                if !self.charges.contains_key(*id) {
                    return Err(ApiError::no_such("charge", id, "charge", true));
                }
                let refunds = self
                    .refunds
                    .iter()
                    .rev()
                    .filter(|refund| refund["charge"] == *id)
                    .cloned()
                    .collect();
                page(
                    refunds,
                    params,
                    &format!("/v1/charges/{id}/refunds"),
                    "refund",
                )
            }
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                json!({"message": format!(
                    "Unrecognized request URL ({}: /{}). This imitation of Stripe serves only \
                     what Curbside uses.", method, segments.join("/"))}),
            )),
        }
    }

    fn create_customer(&mut self, params: &Params) -> Result<Value, ApiError> {
        let email = params.str("email");
        if let Some(email) = email {
            check_email(email)?;
        }
        let id = new_id("cus");
        let customer = objects::customer(&id, email, params.str("name"), params.metadata()?);
        self.customers.insert(id, customer.clone());
        Ok(customer)
    }

    /// `POST /v1/customers/{id}`: what Curbside changes on a customer. A field given empty is
    /// unset; the default payment method must be one attached to this customer.
    fn update_customer(
        &mut self,
        id: &str,
        params: &Params,
        ctx: &mut Ctx,
    ) -> Result<Value, ApiError> {
        let before = self
            .customers
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::no_such("customer", id, "id", true))?;
        let mut customer = before.clone();
        if let Some(email) = params.update("email")? {
            if let Some(email) = email {
                check_email(email)?;
            }
            customer["email"] = email.into();
        }
        for field in ["name", "description"] {
            if let Some(value) = params.update(field)? {
                customer[field] = value.into();
            }
        }
        customer["metadata"] = params.metadata_update(&before["metadata"])?;
        let default = match params.0.get("invoice_settings") {
            None => None,
            Some(Value::String(s)) if s.is_empty() => Some(Value::Null),
            Some(Value::Object(settings)) => settings
                .get("default_payment_method")
                .map(|pm| self.default_payment_method(id, pm))
                .transpose()?,
            Some(_) => {
                return Err(ApiError::invalid("Invalid hash", Some("invoice_settings")));
            }
        };
        if let Some(default) = default {
            customer["invoice_settings"]["default_payment_method"] = default;
        }
        // Stripe sends no event for an update that changes nothing.
        if customer != before {
            ctx.emit_change("customer.updated", &before, &customer);
        }
        self.customers.insert(id.to_owned(), customer.clone());
        Ok(customer)
    }

    /// The value `invoice_settings[default_payment_method]` sets on customer `customer_id`.
    fn default_payment_method(
        &self,
        customer_id: &str,
        requested: &Value,
    ) -> Result<Value, ApiError> {
        const PARAM: &str = "invoice_settings[default_payment_method]";
        let pm = match requested {
            Value::String(pm) if pm.is_empty() => return Ok(Value::Null),
            Value::String(pm) => pm,
            _ => return Err(ApiError::invalid("Invalid string", Some(PARAM))),
        };
        let method = self
            .payment_methods
            .get(pm)
            .ok_or_else(|| ApiError::no_such("PaymentMethod", pm, PARAM, false))?;
        if method.object["customer"] != customer_id {
            return Err(ApiError::not_customers(pm, PARAM));
        }
        Ok(pm.as_str().into())
    }

    /// `GET /v1/customers/{id}/payment_methods`: the methods attached to the customer, newest
    /// first (`type` filters; every method here is a card).
    fn customer_payment_methods(&self, id: &str, params: &Params) -> Result<Value, ApiError> {
        if !self.customers.contains_key(id) {
            return Err(ApiError::no_such("customer", id, "id", true));
        }
        let kind = params.str("type");
        let mut methods: Vec<&SavedMethod> = self
            .payment_methods
            .values()
            .filter(|method| {
                method.object["customer"] == id
                    && kind.is_none_or(|kind| method.object["type"] == kind)
            })
            .collect();
        methods.sort_by_key(|method| std::cmp::Reverse(method.number));
        let items = methods.iter().map(|method| method.object.clone()).collect();
        page(
            items,
            params,
            &format!("/v1/customers/{id}/payment_methods"),
            "PaymentMethod",
        )
    }

    /// `POST /v1/payment_methods/{id}/detach`: the method leaves its customer for good (and
    /// stops being the customer's default, if it was).
    fn detach_payment_method(&mut self, id: &str, ctx: &mut Ctx) -> Result<Value, ApiError> {
        let not_attached = || {
            ApiError::invalid(
                "The payment method you provided is not attached to a customer so detachment \
                 is impossible.",
                None,
            )
        };
        if cards::find(id).is_some() {
            // A test token stands for a new method, attached to nobody.
            return Err(not_attached());
        }
        let method = self
            .payment_methods
            .get_mut(id)
            .ok_or_else(|| ApiError::no_such("PaymentMethod", id, "payment_method", true))?;
        let Some(customer_id) = method.object["customer"].as_str().map(str::to_owned) else {
            return Err(not_attached());
        };
        let before = method.object.clone();
        method.object["customer"] = Value::Null;
        method.detached = true;
        let detached = method.object.clone();
        ctx.emit_change("payment_method.detached", &before, &detached);
        if let Some(customer) = self.customers.get_mut(&customer_id)
            && customer["invoice_settings"]["default_payment_method"] == id
        {
            let before = customer.clone();
            customer["invoice_settings"]["default_payment_method"] = Value::Null;
            ctx.emit_change("customer.updated", &before, customer);
        }
        Ok(detached)
    }

    fn create_setup_intent(&mut self, params: &Params, ctx: &mut Ctx) -> Result<Value, ApiError> {
        let customer = params.str("customer");
        if let Some(customer) = customer
            && !self.customers.contains_key(customer)
        {
            return Err(ApiError::no_such("customer", customer, "customer", false));
        }
        let usage = params.str("usage").unwrap_or("off_session");
        if !matches!(usage, "off_session" | "on_session") {
            return Err(ApiError::invalid(
                "Invalid usage: must be one of off_session or on_session",
                Some("usage"),
            ));
        }
        let id = new_id("seti");
        let intent = objects::setup_intent(&id, customer, usage, params.metadata()?);
        self.setup_intents.insert(id.clone(), intent.clone());
        if params.bool("confirm")? == Some(true) {
            return self.confirm_setup_intent(&id, params, ctx);
        }
        Ok(intent)
    }

    /// The SetupIntent named in the path, if this caller may see it.
    fn setup_intent(&self, id: &str, params: &Params, caller: Caller) -> Result<&Value, ApiError> {
        let intent = self
            .setup_intents
            .get(id)
            .ok_or_else(|| ApiError::no_such("setupintent", id, "intent", true))?;
        client_secret_matches(intent, params, caller, "SetupIntent")?;
        Ok(intent)
    }

    fn confirm_setup_intent(
        &mut self,
        id: &str,
        params: &Params,
        ctx: &mut Ctx,
    ) -> Result<Value, ApiError> {
        let mut intent = self.setup_intents[id].clone();
        let status = intent["status"].as_str().unwrap_or_default().to_owned();
        if !matches!(
            status.as_str(),
            "requires_payment_method" | "requires_confirmation" | "requires_action"
        ) {
            return Err(ApiError::invalid_code(
                "setup_intent_unexpected_state",
                format!("You cannot confirm this SetupIntent because it has a status of {status}."),
                None,
            ));
        }
        let requested = params
            .str("payment_method")
            .map(str::to_owned)
            .or_else(|| intent["payment_method"].as_str().map(str::to_owned))
            .ok_or_else(|| {
                ApiError::invalid_code(
                    "setup_intent_unexpected_state",
                    "You cannot confirm this SetupIntent because it's missing a payment method. \
                     Update the SetupIntent with a payment method and then confirm it again.",
                    None,
                )
            })?;
        let customer = intent["customer"].as_str().map(str::to_owned);
        let pm_id = self.resolve_payment_method(&requested, None)?;
        let method = &self.payment_methods[&pm_id];
        let card = method.card;
        let pm_object = method.object.clone();

        intent["latest_attempt"] = new_id("setatt").into();
        let result = match card.on_setup {
            Attempt::Approve | Attempt::Authenticate => {
                // (Authentication is taken as completed by the driver in the browser.)
                let method = self.payment_methods.get_mut(&pm_id).expect("just resolved");
                method.set_up = true;
                if let Some(customer) = &customer {
                    method.object["customer"] = customer.clone().into();
                }
                intent["status"] = "succeeded".into();
                intent["payment_method"] = pm_id.clone().into();
                intent["last_setup_error"] = Value::Null;
                ctx.emit("setup_intent.succeeded", &intent);
                Ok(intent.clone())
            }
            Attempt::Decline(decline_code) => {
                let mut error = card_error_fields("card_declined", decline_code, &pm_object, None);
                intent["status"] = "requires_payment_method".into();
                intent["payment_method"] = Value::Null;
                intent["last_setup_error"] = Value::Object(error.clone());
                ctx.emit("setup_intent.setup_failed", &intent);
                error.insert("setup_intent".into(), intent.clone());
                error.insert(
                    "request_log_url".into(),
                    request_log_url(ctx.request_id.as_deref()),
                );
                Err(ApiError::new(
                    StatusCode::PAYMENT_REQUIRED,
                    "card_error",
                    Value::Object(error),
                ))
            }
        };
        self.setup_intents.insert(id.to_owned(), intent);
        result
    }

    /// The `pm_…` to use for `requested`: a test token makes a new payment method, as at
    /// Stripe; an existing one must belong to `customer` when it belongs to anybody.
    fn resolve_payment_method(
        &mut self,
        requested: &str,
        customer: Option<Option<&str>>,
    ) -> Result<String, ApiError> {
        if let Some(card) = cards::find(requested) {
            let id = new_id("pm");
            let number = self.payment_methods.len();
            self.payment_methods.insert(
                id.clone(),
                SavedMethod {
                    object: objects::payment_method(&id, card, None),
                    card,
                    set_up: false,
                    number,
                    detached: false,
                },
            );
            return Ok(id);
        }
        let method = self.payment_methods.get(requested).ok_or_else(|| {
            ApiError::no_such("PaymentMethod", requested, "payment_method", false)
        })?;
        if method.detached {
            // Stripe never lets a detached method be used again, with its old customer or not.
            return Err(match customer {
                Some(Some(_)) => ApiError::not_customers(requested, "payment_method"),
                _ => ApiError::invalid(
                    "This PaymentMethod was previously used without being attached to a \
                     Customer or was detached from a Customer, and may not be used again.",
                    Some("payment_method"),
                ),
            });
        }
        if let (Some(customer), Some(owner)) = (customer, method.object["customer"].as_str())
            && customer != Some(owner)
        {
            return Err(ApiError::not_customers(requested, "payment_method"));
        }
        Ok(requested.to_owned())
    }

    fn create_payment_intent(&mut self, params: &Params, ctx: &mut Ctx) -> Result<Value, ApiError> {
        let amount = params.int("amount")?.ok_or_else(|| {
            ApiError::invalid_code(
                "parameter_missing",
                "Missing required param: amount.",
                Some("amount"),
            )
        })?;
        let currency = params.required("currency")?.to_ascii_lowercase();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_lowercase()) {
            return Err(ApiError::invalid(
                format!("Invalid currency: {currency}."),
                Some("currency"),
            ));
        }
        if amount < 1 {
            return Err(ApiError::invalid(
                "This value must be greater than or equal to 1.",
                Some("amount"),
            ));
        }
        if currency == "usd" && amount < 50 {
            return Err(ApiError::invalid_code(
                "amount_too_small",
                "Amount must be at least $0.50 usd",
                Some("amount"),
            ));
        }
        let customer = params.str("customer");
        if let Some(customer) = customer
            && !self.customers.contains_key(customer)
        {
            return Err(ApiError::no_such("customer", customer, "customer", false));
        }
        let confirm = params.bool("confirm")?.unwrap_or(false);
        let off_session = match params.str("off_session") {
            None | Some("false") => false,
            Some("true" | "one_off" | "recurring") => true,
            Some(other) => {
                return Err(ApiError::invalid(
                    format!("Invalid off_session: {other}"),
                    Some("off_session"),
                ));
            }
        };
        if off_session && !confirm {
            return Err(ApiError::invalid(
                "You can only pass `off_session` when `confirm` is set to `true`.",
                Some("off_session"),
            ));
        }
        let payment_method = params
            .str("payment_method")
            .map(|pm| self.resolve_payment_method(pm, Some(customer)))
            .transpose()?;
        if confirm && payment_method.is_none() {
            return Err(ApiError::invalid_code(
                "payment_intent_unexpected_state",
                "You cannot confirm this PaymentIntent because it's missing a payment method. \
                 To confirm the PaymentIntent with cus, specify a payment method.",
                None,
            ));
        }

        let id = new_id("pi");
        let mut intent = objects::payment_intent(&NewPaymentIntent {
            id: &id,
            amount,
            currency: &currency,
            customer,
            payment_method: payment_method.as_deref(),
            description: params.str("description"),
            metadata: params.metadata()?,
        });
        let result = match &payment_method {
            Some(pm_id) if confirm => self.attempt_payment(&mut intent, pm_id, off_session, ctx),
            _ => Ok(()),
        };
        self.payment_intents.push(intent.clone());
        result.map(|()| intent)
    }

    /// The PaymentIntent named in the path, if this caller may see it: with the publishable
    /// key only together with its client secret, as Stripe.js calls it.
    fn payment_intent(&self, id: &str, params: &Params, caller: Caller) -> Result<(), ApiError> {
        let intent = self
            .payment_intents
            .iter()
            .find(|pi| pi["id"] == id)
            .ok_or_else(|| ApiError::no_such("payment_intent", id, "intent", true))?;
        client_secret_matches(intent, params, caller, "PaymentIntent")
    }

    /// The card holder, back on-session, pays an intent that an off-session attempt left
    /// unpaid (`stripe.confirmCardPayment` in the browser). A card that wants 3-D Secure moves
    /// the intent to `requires_action` with a `next_action`; confirming an intent that waits
    /// in `requires_action` stands for the holder passing the bank's challenge, and pays it.
    fn confirm_payment_intent(
        &mut self,
        id: &str,
        params: &Params,
        ctx: &mut Ctx,
    ) -> Result<Value, ApiError> {
        let index = self
            .payment_intents
            .iter()
            .position(|pi| pi["id"] == id)
            .expect("checked by the caller");
        let mut intent = self.payment_intents[index].clone();
        let status = intent["status"].as_str().unwrap_or_default().to_owned();
        let result = match status.as_str() {
            "requires_action" => {
                let pm_id = intent["payment_method"]
                    .as_str()
                    .map(str::to_owned)
                    .expect("an intent waiting for authentication has its card");
                intent["status"] = "succeeded".into();
                intent["next_action"] = Value::Null;
                intent["last_payment_error"] = Value::Null;
                intent["amount_received"] = intent["amount"].clone();
                intent["latest_charge"] = self.record_charge(&intent, &pm_id, None).into();
                ctx.emit("payment_intent.succeeded", &intent);
                Ok(())
            }
            "requires_payment_method" | "requires_confirmation" => {
                let customer = intent["customer"].as_str().map(str::to_owned);
                let requested = params
                    .str("payment_method")
                    .map(str::to_owned)
                    .or_else(|| intent["payment_method"].as_str().map(str::to_owned))
                    .ok_or_else(|| {
                        ApiError::invalid_code(
                            "payment_intent_unexpected_state",
                            "You cannot confirm this PaymentIntent because it's missing a \
                             payment method.",
                            None,
                        )
                    })?;
                let pm_id = self.resolve_payment_method(&requested, Some(customer.as_deref()))?;
                intent["payment_method"] = pm_id.clone().into();
                intent["last_payment_error"] = Value::Null;
                self.attempt_payment(&mut intent, &pm_id, false, ctx)
            }
            other => Err(ApiError::invalid_code(
                "payment_intent_unexpected_state",
                format!(
                    "You cannot confirm this PaymentIntent because it has a status of {other}."
                ),
                None,
            )),
        };
        self.payment_intents[index] = intent.clone();
        result.map(|()| intent)
    }

    /// Tries the card for the intent's amount and moves the intent to its next state.
    fn attempt_payment(
        &mut self,
        intent: &mut Value,
        pm_id: &str,
        off_session: bool,
        ctx: &mut Ctx,
    ) -> Result<(), ApiError> {
        let method = &self.payment_methods[pm_id];
        let attempt = if method.set_up {
            method.card.on_payment_after_setup
        } else {
            method.card.on_payment
        };
        let pm_object = method.object.clone();
        let (code, decline_code, charge) = match attempt {
            Attempt::Approve => {
                intent["status"] = "succeeded".into();
                intent["amount_received"] = intent["amount"].clone();
                intent["latest_charge"] = self.record_charge(intent, pm_id, None).into();
                ctx.emit("payment_intent.succeeded", intent);
                return Ok(());
            }
            Attempt::Authenticate if !off_session => {
                intent["status"] = "requires_action".into();
                intent["next_action"] = json!({
                    "type": "use_stripe_sdk",
                    "use_stripe_sdk": {"type": "three_d_secure_redirect",
                                       "stripe_js": "https://hooks.stripe.com/3d_secure_2/hosted"}
                });
                ctx.emit("payment_intent.requires_action", intent);
                return Ok(());
            }
            Attempt::Authenticate => ("authentication_required", "authentication_required", None),
            Attempt::Decline(decline_code) => {
                let failure = ChargeFailure {
                    code: "card_declined",
                    decline_code,
                    message: decline_message("card_declined", decline_code),
                };
                let charge = self.record_charge(intent, pm_id, Some(&failure));
                ("card_declined", decline_code, Some(charge))
            }
        };
        let mut error = card_error_fields(code, decline_code, &pm_object, charge.as_deref());
        intent["status"] = "requires_payment_method".into();
        intent["latest_charge"] = charge.map_or(Value::Null, Value::from);
        intent["last_payment_error"] = Value::Object(error.clone());
        ctx.emit("payment_intent.payment_failed", intent);
        error.insert("payment_intent".into(), intent.clone());
        error.insert(
            "request_log_url".into(),
            request_log_url(ctx.request_id.as_deref()),
        );
        Err(ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "card_error",
            Value::Object(error),
        ))
    }
}

/// Charges and refunds.
impl Store {
    /// Keeps the charge a payment attempt on `intent` made, and returns its id.
    fn record_charge(
        &mut self,
        intent: &Value,
        pm_id: &str,
        failure: Option<&ChargeFailure<'_>>,
    ) -> String {
        let id = new_id("ch");
        let charge = objects::charge(&id, intent, &self.payment_methods[pm_id].object, failure);
        self.charges.insert(id.clone(), charge);
        id
    }

    /// Brings the charge's refund fields up to its refunds; returns the charge.
    fn sync_charge(&mut self, charge_id: &str) -> Value {
        let refunds: Vec<&Value> = self
            .refunds
            .iter()
            .filter(|refund| refund["charge"] == charge_id)
            .collect();
        let charge = objects::with_refunds(self.charges[charge_id].clone(), &refunds);
        self.charges.insert(charge_id.to_owned(), charge.clone());
        charge
    }

    /// `POST /v1/refunds`: gives back all (by default) or part of what is left of a succeeded
    /// payment, named by its PaymentIntent or its charge. Pending refunds count against what
    /// is left, as at Stripe, though the charge shows only those that succeeded.
    fn create_refund(&mut self, params: &Params, ctx: &mut Ctx) -> Result<Value, ApiError> {
        let reason = params.str("reason");
        if let Some(reason) = reason
            && !matches!(reason, "duplicate" | "fraudulent" | "requested_by_customer")
        {
            return Err(ApiError::invalid(
                "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer",
                Some("reason"),
            ));
        }
        let requested_amount = params.int("amount")?;
        let metadata = params.metadata()?;
        let charge_id = self.refundable_charge(params)?;

        let charge = &self.charges[&charge_id];
        let currency = charge["currency"].as_str().unwrap_or_default().to_owned();
        let refunded: i64 = self
            .refunds
            .iter()
            .filter(|refund| refund["charge"] == charge_id.as_str())
            .filter_map(|refund| refund["amount"].as_i64())
            .sum();
        let remaining = charge["amount"].as_i64().unwrap_or_default() - refunded;
        if remaining <= 0 {
            return Err(ApiError::invalid_code(
                "charge_already_refunded",
                format!("Charge {charge_id} has already been refunded."),
                None,
            ));
        }
        let amount = requested_amount.unwrap_or(remaining);
        if amount < 1 {
            return Err(ApiError::invalid(
                "This value must be greater than or equal to 1.",
                Some("amount"),
            ));
        }
        if amount > remaining {
            return Err(ApiError::invalid_code(
                "amount_too_large",
                format!(
                    "Refund amount ({}) is greater than unrefunded amount on charge ({})",
                    money(amount, &currency),
                    money(remaining, &currency)
                ),
                Some("amount"),
            ));
        }
        let card = charge["payment_method"]
            .as_str()
            .and_then(|pm| self.payment_methods.get(pm))
            .map(|method| method.card);
        let pending = card.is_some_and(|card| card.refunds_pending);

        let refund = objects::refund(&NewRefund {
            id: &new_id("re"),
            amount,
            charge,
            reason,
            metadata,
            pending,
        });
        self.refunds.push(refund.clone());
        let charge = self.sync_charge(&charge_id);
        ctx.emit("refund.created", &refund);
        if !pending {
            ctx.emit("charge.refunded", &charge);
        }
        Ok(refund)
    }

    /// The charge a refund request names, if it can be refunded at all.
    fn refundable_charge(&self, params: &Params) -> Result<String, ApiError> {
        match (params.str("payment_intent"), params.str("charge")) {
            (Some(_), Some(_)) => Err(ApiError::invalid(
                "You may only specify one of these parameters: charge, payment_intent.",
                None,
            )),
            (None, None) => Err(ApiError::invalid_code(
                "parameter_missing",
                "One of the following params should be provided for this request: \
                 payment_intent or charge.",
                None,
            )),
            (Some(pi_id), None) => {
                let intent = self
                    .payment_intents
                    .iter()
                    .find(|pi| pi["id"] == pi_id)
                    .ok_or_else(|| {
                        ApiError::no_such("payment_intent", pi_id, "payment_intent", false)
                    })?;
                match intent["latest_charge"].as_str() {
                    Some(charge) if intent["status"] == "succeeded" => Ok(charge.to_owned()),
                    _ => Err(ApiError::invalid_code(
                        "payment_intent_unexpected_state",
                        "This PaymentIntent does not have a successful charge to refund.",
                        Some("payment_intent"),
                    )),
                }
            }
            (None, Some(charge_id)) => {
                let charge = self
                    .charges
                    .get(charge_id)
                    .ok_or_else(|| ApiError::no_such("charge", charge_id, "charge", false))?;
                if charge["status"] != "succeeded" {
                    return Err(ApiError::invalid_code(
                        "charge_not_refundable",
                        format!("Charge {charge_id} cannot be refunded because it failed."),
                        Some("charge"),
                    ));
                }
                Ok(charge_id.to_owned())
            }
        }
    }

    /// `GET /v1/refunds`: newest first, those of one PaymentIntent or charge if asked.
    fn list_refunds(&self, params: &Params) -> Result<Value, ApiError> {
        let payment_intent = params.str("payment_intent");
        if let Some(pi_id) = payment_intent
            && !self.payment_intents.iter().any(|pi| pi["id"] == pi_id)
        {
            return Err(ApiError::no_such(
                "payment_intent",
                pi_id,
                "payment_intent",
                false,
            ));
        }
        let charge = params.str("charge");
        if let Some(charge) = charge
            && !self.charges.contains_key(charge)
        {
            return Err(ApiError::no_such("charge", charge, "charge", false));
        }
        let refunds = self
            .refunds
            .iter()
            .rev()
            .filter(|refund| {
                payment_intent.is_none_or(|pi| refund["payment_intent"] == pi)
                    && charge.is_none_or(|charge| refund["charge"] == charge)
            })
            .cloned()
            .collect();
        page(refunds, params, "/v1/refunds", "refund")
    }

    /// See [`settle_pending_refunds`].
    fn settle_pending_refunds(&mut self, ctx: &mut Ctx) -> usize {
        let pending: Vec<usize> = (0..self.refunds.len())
            .filter(|&index| self.refunds[index]["status"] == "pending")
            .collect();
        for &index in &pending {
            let before = self.refunds[index].clone();
            let refund = &mut self.refunds[index];
            refund["status"] = "succeeded".into();
            refund["pending_reason"] = Value::Null;
            let refund = refund.clone();
            ctx.emit_change("refund.updated", &before, &refund);
            ctx.emit_change("charge.refund.updated", &before, &refund);
            let charge = self.sync_charge(refund["charge"].as_str().unwrap_or_default());
            ctx.emit("charge.refunded", &charge);
        }
        pending.len()
    }
}

/// With the publishable key (Stripe.js), an intent is reached only with its client secret.
fn client_secret_matches(
    intent: &Value,
    params: &Params,
    caller: Caller,
    kind: &str,
) -> Result<(), ApiError> {
    if caller == Caller::Publishable
        && params.str("client_secret") != intent["client_secret"].as_str()
    {
        return Err(ApiError::invalid(
            format!(
                "The client_secret provided does not match the client_secret associated with the {kind}."
            ),
            Some("client_secret"),
        ));
    }
    Ok(())
}

/// The fields of a card error, as in `last_payment_error` and in the 402 body.
fn card_error_fields(
    code: &str,
    decline_code: &str,
    payment_method: &Value,
    charge: Option<&str>,
) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("type".into(), "card_error".into());
    fields.insert("code".into(), code.into());
    fields.insert("decline_code".into(), decline_code.into());
    fields.insert(
        "doc_url".into(),
        format!(
            "https://stripe.com/docs/error-codes/{}",
            code.replace('_', "-")
        )
        .into(),
    );
    fields.insert("message".into(), decline_message(code, decline_code).into());
    fields.insert("payment_method".into(), payment_method.clone());
    if let Some(charge) = charge {
        fields.insert("charge".into(), charge.into());
    }
    fields
}

/// Stripe's words for a card error.
fn decline_message(code: &str, decline_code: &str) -> &'static str {
    match (code, decline_code) {
        ("authentication_required", _) => {
            "Your card was declined. This transaction requires authentication."
        }
        (_, "insufficient_funds") => "Your card has insufficient funds.",
        _ => "Your card was declined.",
    }
}

fn request_log_url(request_id: Option<&str>) -> Value {
    request_id.map_or(Value::Null, |id| {
        format!("https://dashboard.stripe.com/test/logs/{id}").into()
    })
}

impl super::FakeState {
    pub(super) fn record(
        &mut self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        status: StatusCode,
        replayed: bool,
    ) {
        let raw = if *method == Method::GET {
            uri.query().unwrap_or("").as_bytes()
        } else {
            body
        };
        self.requests.push(RequestRecord {
            method: method.to_string(),
            path: uri.path().to_owned(),
            params: form::decode(raw).map_or(Value::Null, Value::Object),
            idempotency_key: headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            status: status.as_u16(),
            replayed,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_as_bearer_or_as_basic_user_name() {
        assert_eq!(api_key("Bearer sk_test_1").as_deref(), Some("sk_test_1"));
        assert_eq!(api_key("bearer  pk_test_2 ").as_deref(), Some("pk_test_2"));
        // `curl -u sk_test_3:` sends the key as the user name with an empty password.
        let basic = base64::engine::general_purpose::STANDARD.encode("sk_test_3:");
        assert_eq!(
            api_key(&format!("Basic {basic}")).as_deref(),
            Some("sk_test_3")
        );
        let no_colon = base64::engine::general_purpose::STANDARD.encode("sk_test_4");
        assert_eq!(
            api_key(&format!("Basic {no_colon}")).as_deref(),
            Some("sk_test_4")
        );
        assert_eq!(api_key("Basic !!!"), None);
        assert_eq!(api_key("Digest sk_test_5"), None);
        assert_eq!(api_key("sk_test_6"), None);
    }
}
