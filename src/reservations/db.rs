//! Reservation queries. Every change bumps `version`, so a delayed job that carries an
//! older version knows it is stale.
//!
//! Each is checked against the schema at compile time, so each is one literal: the states
//! it sets or tests are written out (`'held'`, …) in the words of `sql_status!`, which the
//! partial indexes' predicates must match word for word; the schema's check constraints
//! refuse any other word.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::access::Caller;
use super::billing::Bill;
use super::model::{PaymentStatus, Reservation, Scope, Status};
use crate::error::{AppError, AppResult, ResultExt as _};
use crate::money::Cents;
use crate::payments::{Card, CustomerId, PaymentIntentId, PaymentMethodId, SetupIntentId};
use crate::time_window::TimeWindow;

/// `query_as!` for a [`Reservation`]: the SQL before its columns and the SQL after them.
macro_rules! query_reservation {
    ($before:literal, $after:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            Reservation,
            $before
                + r#" id, spot_id, user_id, email, vehicle_plate, starts_at, ends_at,
                      status as "status: Status", payment_status as "payment_status: PaymentStatus",
                      rate_cents_per_hour, amount_cents as "amount_cents: Cents", currency,
                      version, hold_expires_at,
                      stripe_customer_id as "stripe_customer_id: CustomerId",
                      stripe_setup_intent_id as "stripe_setup_intent_id: SetupIntentId",
                      stripe_payment_method_id as "stripe_payment_method_id: PaymentMethodId",
                      stripe_payment_intent_id as "stripe_payment_intent_id: PaymentIntentId",
                      card_brand, card_last4, payment_error, charge_attempt,
                      refunded_cents as "refunded_cents: Cents", created_at, updated_at "#
                + $after
            $(, $arg)*
        )
    };
}
pub(super) use query_reservation;

fn spot_unavailable() -> AppError {
    AppError::conflict(
        "spot_unavailable",
        "the spot is already booked for part of that time",
    )
}

/// Takes the spot's booking lock for the rest of the transaction.
///
/// The exclusion constraint alone keeps bookings apart, but two transactions that insert
/// or move overlapping rows at once each wait for the other's row and PostgreSQL breaks the
/// tie with a deadlock error a second later. Queueing on the spot first turns every such
/// race into a prompt, clean 23P01 for the loser. Always taken before any reservation row.
pub async fn lock_spot(conn: &mut PgConnection, spot_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "select 1 as locked from spots where id = $1 for no key update",
        spot_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(())
}

/// Expires the lapsed holds of the spot that overlap the window, so they stop blocking it.
/// A lapsed hold never blocks anyone, even before the job that expires it has run.
pub async fn expire_lapsed_holds(
    conn: &mut PgConnection,
    spot_id: Uuid,
    window: &TimeWindow,
) -> sqlx::Result<Vec<Reservation>> {
    query_reservation!(
        "update reservations set status = 'expired', payment_status = 'not_required',
                version = version + 1
         where spot_id = $1 and status = 'held' and hold_expires_at <= now()
           and tstzrange(starts_at, ends_at, '[)') && tstzrange($2, $3, '[)')
         returning",
        "",
        spot_id,
        window.starts_at,
        window.ends_at,
    )
    .fetch_all(conn)
    .await
}

pub struct NewReservation<'a> {
    pub id: Uuid,
    pub spot_id: Uuid,
    pub user_id: Option<Uuid>,
    pub email: &'a str,
    pub vehicle_plate: Option<&'a str>,
    pub window: TimeWindow,
    pub rate_cents_per_hour: i32,
    pub bill: Bill,
    /// When a hold lapses; unused for a booking with a saved card.
    pub hold_expires_at: DateTime<Utc>,
    pub guest_token_hash: Option<Vec<u8>>,
    /// A saved card of the payer's customer: the booking is confirmed at once.
    pub paid_with: Option<(&'a Card, &'a CustomerId)>,
}

/// Inserts the booking: `held` while its card is saved, or `confirmed` with a saved card,
/// which the same statement holds against its removal (`for share`, the lock a removal's
/// `for update` waits for). `None` when that card was removed meanwhile. An overlap with a
/// live booking is 409 `spot_unavailable`.
pub async fn insert(
    conn: &mut PgConnection,
    new: &NewReservation<'_>,
) -> AppResult<Option<Reservation>> {
    let (status, payment_status, hold_expires_at) = match new.paid_with {
        None => (
            Status::Held,
            PaymentStatus::SetupPending,
            Some(new.hold_expires_at),
        ),
        Some(_) => (Status::Confirmed, PaymentStatus::CardSaved, None),
    };
    let (card, customer) = new.paid_with.unzip();
    query_reservation!(
        "with card as (select from saved_cards
                       where payment_method_id = $15 and user_id = $3 and removed_at is null
                       for share)
         insert into reservations (id, spot_id, user_id, email, vehicle_plate, starts_at, ends_at,
                                   rate_cents_per_hour, amount_cents, hold_expires_at, guest_token_hash,
                                   status, payment_status, stripe_customer_id,
                                   stripe_payment_method_id, card_brand, card_last4)
         select $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17
         where $15::text is null or exists (select from card)
         returning",
        "",
        new.id,
        new.spot_id,
        new.user_id,
        new.email,
        new.vehicle_plate,
        new.window.starts_at,
        new.window.ends_at,
        new.rate_cents_per_hour,
        new.bill.amount_cents as Cents,
        hold_expires_at,
        new.guest_token_hash.as_deref(),
        status as Status,
        payment_status as PaymentStatus,
        customer as Option<&CustomerId>,
        card.map(|card| &card.id) as Option<&PaymentMethodId>,
        card.map(|card| card.brand.as_str()),
        card.map(|card| card.last4.as_str()),
    )
    .fetch_optional(conn)
    .await
    .on_constraint("reservations_no_overlap", spot_unavailable)
}

/// Records the Stripe objects made for a new booking.
pub async fn attach_setup_intent(
    conn: &mut PgConnection,
    id: Uuid,
    customer_id: &CustomerId,
    setup_intent_id: &SetupIntentId,
) -> sqlx::Result<()> {
    sqlx::query!(
        "update reservations set stripe_customer_id = $2, stripe_setup_intent_id = $3
         where id = $1",
        id,
        customer_id as &CustomerId,
        setup_intent_id as &SetupIntentId,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes a booking whose card setup could not even be started, so a failed request
/// leaves nothing behind and can be retried.
pub async fn discard_unstarted(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "delete from reservations where id = $1 and status = 'held'
           and stripe_setup_intent_id is null",
        id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The reservation if the caller may see it: its user, or the holder of its guest token.
/// Anyone else is told it does not exist.
pub async fn find_for(
    conn: &mut PgConnection,
    id: Uuid,
    caller: &Caller,
) -> sqlx::Result<Option<Reservation>> {
    let (user_id, token_hash) = caller.keys();
    query_reservation!(
        "select",
        "from reservations
         where id = $1 and ((user_id is not null and user_id = $2)
                            or (guest_token_hash is not null and guest_token_hash = $3))",
        id,
        user_id,
        token_hash,
    )
    .fetch_optional(conn)
    .await
}

/// Locks the reservation for a change in this transaction (`None` if it is gone: a booking
/// whose card setup failed is deleted).
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Reservation>> {
    query_reservation!("select", "from reservations where id = $1 for update", id)
        .fetch_optional(conn)
        .await
}

pub async fn find_by_setup_intent(
    conn: &mut PgConnection,
    setup_intent_id: &SetupIntentId,
) -> sqlx::Result<Option<Reservation>> {
    query_reservation!(
        "select",
        "from reservations where stripe_setup_intent_id = $1",
        setup_intent_id as &SetupIntentId,
    )
    .fetch_optional(conn)
    .await
}

/// `held` → `confirmed` with the saved card, on a row the caller locked and checked.
pub async fn confirm(
    conn: &mut PgConnection,
    id: Uuid,
    payment_method_id: &PaymentMethodId,
) -> sqlx::Result<Reservation> {
    query_reservation!(
        "update reservations set status = 'confirmed', payment_status = 'card_saved',
                stripe_payment_method_id = $2, hold_expires_at = null, version = version + 1
         where id = $1
         returning",
        "",
        id,
        payment_method_id as &PaymentMethodId,
    )
    .fetch_one(conn)
    .await
}

/// Moves the end; an overlap with another live booking is 409 `spot_unavailable`.
pub async fn change_end(
    conn: &mut PgConnection,
    id: Uuid,
    ends_at: DateTime<Utc>,
    bill: Bill,
) -> AppResult<Reservation> {
    query_reservation!(
        "update reservations set ends_at = $2, amount_cents = $3, version = version + 1
         where id = $1
         returning",
        "",
        id,
        ends_at,
        bill.amount_cents as Cents,
    )
    .fetch_one(conn)
    .await
    .on_constraint("reservations_no_overlap", spot_unavailable)
}

pub async fn cancel(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Reservation> {
    query_reservation!(
        "update reservations set status = 'cancelled', payment_status = 'not_required',
                amount_cents = 0, version = version + 1
         where id = $1
         returning",
        "",
        id,
    )
    .fetch_one(conn)
    .await
}

/// A user's reservations: current ones soonest first, past ones latest first.
pub async fn list(
    conn: &mut PgConnection,
    user_id: Uuid,
    scope: Scope,
    after: Option<(DateTime<Utc>, Uuid)>,
    rows: i64,
) -> sqlx::Result<Vec<Reservation>> {
    // Current: not over, and live (`live_sql!("")` written out); past: the rest.
    let (after_start, after_id) = after.unzip();
    match scope {
        Scope::Current => {
            query_reservation!(
                "select",
                "from reservations where user_id = $1
                   and (ends_at > now() and (status in ('held', 'confirmed')
                        and (status = 'confirmed' or hold_expires_at > now())))
                   and ($2::timestamptz is null or (starts_at, id) > ($2, $3))
                 order by starts_at, id limit $4",
                user_id,
                after_start,
                after_id,
                rows,
            )
            .fetch_all(conn)
            .await
        }
        Scope::Past => {
            query_reservation!(
                "select",
                "from reservations where user_id = $1
                   and not (ends_at > now() and (status in ('held', 'confirmed')
                            and (status = 'confirmed' or hold_expires_at > now())))
                   and ($2::timestamptz is null or (starts_at, id) < ($2, $3))
                 order by starts_at desc, id desc limit $4",
                user_id,
                after_start,
                after_id,
                rows,
            )
            .fetch_all(conn)
            .await
        }
    }
}

/// Whether a webhook event id was handled before.
pub async fn event_seen(conn: &mut PgConnection, id: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"select exists (select 1 from stripe_events where id = $1) as "seen!""#,
        id,
    )
    .fetch_one(conn)
    .await
}

/// Records a webhook event id; false if it was seen before.
pub async fn record_event(conn: &mut PgConnection, id: &str, kind: &str) -> sqlx::Result<bool> {
    let inserted = sqlx::query!(
        "insert into stripe_events (id, type) values ($1, $2) on conflict do nothing",
        id,
        kind,
    )
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Records that this version's reminder is written; false if it was already.
pub async fn mark_reminded(conn: &mut PgConnection, id: Uuid, version: i32) -> sqlx::Result<bool> {
    let marked = sqlx::query!(
        "update reservations set reminded_version = $2
         where id = $1 and reminded_version is distinct from $2",
        id,
        version,
    )
    .execute(conn)
    .await?;
    Ok(marked.rows_affected() == 1)
}

/// Confirmed reservations whose reminder is due and not written, for the reconciler: (id,
/// version). The rule of `reminders::remind_at` (booked or changed long enough before).
pub async fn due_reminders(
    conn: &mut PgConnection,
    lead: chrono::Duration,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, i32)>> {
    let rows = sqlx::query!(
        "select id, version from reservations
         where status = 'confirmed' and ends_at > now() and ends_at - $1::interval <= now()
           and ends_at - $1::interval > created_at
           and reminded_version is distinct from version
         order by ends_at limit $2",
        lead as chrono::Duration,
        limit,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|row| (row.id, row.version)).collect())
}

/// The reservation if it exists, read without a lock.
pub async fn get_optional(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Reservation>> {
    query_reservation!("select", "from reservations where id = $1", id)
        .fetch_optional(conn)
        .await
}

/// The reservation, read without a lock (the step that acts on it locks it).
pub async fn get(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Reservation> {
    get_optional(conn, id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)
}

/// `confirmed` → `completed` at `ends_at` with its final bill; the charge is pending unless
/// nothing is owed.
pub async fn complete(
    conn: &mut PgConnection,
    id: Uuid,
    ends_at: DateTime<Utc>,
    bill: Bill,
) -> sqlx::Result<Reservation> {
    query_reservation!(
        "update reservations set status = 'completed', completed_at = now(), ends_at = $2,
                amount_cents = $3,
                payment_status = case when $3::bigint = 0 then 'not_required' else 'charge_pending' end,
                version = version + 1
         where id = $1
         returning",
        "",
        id,
        ends_at,
        bill.amount_cents as Cents,
    )
    .fetch_one(conn)
    .await
}

pub async fn expire(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Reservation> {
    query_reservation!(
        "update reservations set status = 'expired', payment_status = 'not_required',
                version = version + 1
         where id = $1
         returning",
        "",
        id,
    )
    .fetch_one(conn)
    .await
}

pub async fn count_charge_attempt(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "update reservations set charge_attempts = charge_attempts + 1 where id = $1",
        id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the outcome of the final charge.
pub async fn record_payment(
    conn: &mut PgConnection,
    id: Uuid,
    status: PaymentStatus,
    payment_intent_id: Option<&PaymentIntentId>,
    error: Option<&str>,
) -> sqlx::Result<Reservation> {
    query_reservation!(
        "update reservations set payment_status = $2,
                stripe_payment_intent_id = coalesce($3, stripe_payment_intent_id),
                payment_error = $4
         where id = $1
         returning",
        "",
        id,
        status as PaymentStatus,
        payment_intent_id as Option<&PaymentIntentId>,
        error,
    )
    .fetch_one(conn)
    .await
}

/// The reservation a PaymentIntent, as Stripe reports it, charges: the one its metadata
/// names, for that reservation's customer and bill, and not a PaymentIntent other than the
/// one the current attempt recorded (an earlier attempt's result changes nothing).
pub async fn find_charged_by(
    conn: &mut PgConnection,
    intent: &crate::payments::PaymentIntent,
) -> sqlx::Result<Option<Uuid>> {
    let Some(reservation_id) = intent.reservation_id else {
        return Ok(None);
    };
    sqlx::query_scalar!(
        "select r.id from reservations r
         where r.id = $1 and r.stripe_customer_id = $2 and r.amount_cents = $3
           and (r.stripe_payment_intent_id is null or r.stripe_payment_intent_id = $4)
           and not exists (select 1 from charge_attempts a
                           where a.payment_intent_id = $4 and a.attempt <> r.charge_attempt)",
        reservation_id,
        intent.customer_id.as_ref() as Option<&CustomerId>,
        intent.amount_cents as Cents,
        &intent.id as &PaymentIntentId,
    )
    .fetch_optional(conn)
    .await
}

/// Unsent emails about the reservation, for their delivery jobs.
pub async fn unsent_emails(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        "select id from email_outbox
         where reservation_id = $1 and sent_at is null and failed_at is null",
        id,
    )
    .fetch_all(conn)
    .await
}

/// Work a lost job would have done, for the reconciler: (ended, lapsed, charges stuck).
pub async fn overdue(
    conn: &mut PgConnection,
    limit: i64,
) -> sqlx::Result<(Vec<Uuid>, Vec<Uuid>, Vec<Uuid>)> {
    let ended = sqlx::query_scalar!(
        "select id from reservations where status = 'confirmed'
           and ends_at <= now() - interval '5 seconds' order by ends_at limit $1",
        limit,
    )
    .fetch_all(&mut *conn)
    .await?;
    let lapsed = sqlx::query_scalar!(
        "select id from reservations where status = 'held'
           and hold_expires_at <= now() - interval '5 seconds' order by hold_expires_at limit $1",
        limit,
    )
    .fetch_all(&mut *conn)
    .await?;
    let charges = sqlx::query_scalar!(
        "select id from reservations where payment_status = 'charge_pending'
           and updated_at <= now() - interval '60 seconds' order by updated_at limit $1",
        limit,
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok((ended, lapsed, charges))
}
