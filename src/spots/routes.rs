//! Spot search and detail for everyone; create and change for operators.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use uuid::Uuid;

use super::db;
use super::model::{NewSpot, SearchQuery, Spot, SpotChanges, SpotDetail, SpotMatch};
use crate::auth::Operator;
use crate::error::{AppError, AppResult};
use crate::extract::{Json, Path, Query};
use crate::pagination::{Page, encode_cursor};
use crate::state::AppState;

fn no_such_spot() -> AppError {
    AppError::NotFound("no such spot".into())
}

/// Search spots: nearest first within a radius, or all by id; free (by default), taken or
/// either for a time window. Answered from the replica's picture of the curb while it is
/// current (milliseconds behind PostgreSQL), else by PostgreSQL; the answers are the same.
#[utoipa::path(
    get, path = "/v1/spots", tag = "spots",
    params(SearchQuery),
    responses(
        (status = 200, description = "A page of spots", body = Page<SpotMatch>),
        (status = 422, description = "`validation_failed`: a parameter out of range, `lat`, `lng` and `radius` not given together, a window that is empty or longer than 31 days, or a cursor of another search; `errors` names each parameter"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn search(
    State(state): State<AppState>,
    Query(query): Query<SearchQuery>,
) -> AppResult<axum::Json<Page<SpotMatch>>> {
    let now = Utc::now();
    let search = query.validate(now, state.config.min_reservation_length())?;
    if state.config.search_from_memory
        && let Some((items, next)) = state.curb.search(&search, now)
    {
        return Ok(axum::Json(Page {
            items,
            next_cursor: next.map(|cursor| encode_cursor(&cursor)),
        }));
    }
    let _permit = state
        .search_permits
        .acquire()
        .await
        .map_err(|error| AppError::Internal(error.into()))?;
    let (items, next) = db::search(&state.db_read, &search).await?;
    Ok(axum::Json(Page {
        items,
        next_cursor: next.map(|cursor| encode_cursor(&cursor)),
    }))
}

/// A spot, with the times it is taken in the next 24 hours.
#[utoipa::path(
    get, path = "/v1/spots/{id}", tag = "spots",
    params(("id" = Uuid, Path, description = "Spot id")),
    responses(
        (status = 200, description = "The spot", body = SpotDetail),
        (status = 404, description = "`not_found`: no such spot"),
    )
)]
pub async fn detail(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> AppResult<axum::Json<SpotDetail>> {
    let mut conn = state.db_read.acquire().await?;
    let spot = db::find(&mut conn, id).await?.ok_or_else(no_such_spot)?;
    let busy = db::busy_next_day(&mut conn, id).await?;
    Ok(axum::Json(SpotDetail { spot, busy }))
}

/// Create a spot (operators).
#[utoipa::path(
    post, path = "/v1/spots", tag = "spots",
    security(("bearer" = [])),
    request_body = NewSpot,
    responses(
        (status = 201, description = "Created", body = Spot),
        (status = 403, description = "`forbidden`: the caller is not an operator"),
        (status = 409, description = "`meter_number_taken`: a spot has this meter number"),
        (status = 422, description = "`validation_failed`: a field out of range or blank; `errors` names each"),
    )
)]
#[tracing::instrument(skip_all, fields(user.id = %operator.user_id))]
pub async fn create(
    State(state): State<AppState>,
    Operator(operator): Operator,
    Json(spot): Json<NewSpot>,
) -> AppResult<(StatusCode, axum::Json<Spot>)> {
    spot.validate()?;
    let created = db::insert(&mut *state.db.acquire().await?, &spot).await?;
    tracing::info!(spot.id = %created.id, "spot created");
    Ok((StatusCode::CREATED, axum::Json(created)))
}

/// Change a spot's rate, rule, maximum stay or active flag (operators). Existing bookings
/// keep the rate they were made at.
#[utoipa::path(
    patch, path = "/v1/spots/{id}", tag = "spots",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Spot id")),
    request_body = SpotChanges,
    responses(
        (status = 200, description = "The changed spot", body = Spot),
        (status = 403, description = "`forbidden`: the caller is not an operator"),
        (status = 404, description = "`not_found`: no such spot"),
        (status = 422, description = "`validation_failed`: a field out of range; `errors` names each"),
    )
)]
#[tracing::instrument(skip_all, fields(user.id = %operator.user_id, spot.id = %id))]
pub async fn update(
    State(state): State<AppState>,
    Operator(operator): Operator,
    Path(id): Path<Uuid>,
    Json(changes): Json<SpotChanges>,
) -> AppResult<axum::Json<Spot>> {
    changes.validate()?;
    let spot = db::update(&mut *state.db.acquire().await?, id, &changes)
        .await?
        .ok_or_else(no_such_spot)?;
    tracing::info!("spot changed");
    Ok(axum::Json(spot))
}
