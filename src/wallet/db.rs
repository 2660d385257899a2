//! The wallet's queries: an account's Stripe customer and what Stripe said of its cards.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::payments::{Card, CustomerId, PaymentMethodId};

pub async fn customer_of(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> sqlx::Result<Option<CustomerId>> {
    sqlx::query_scalar!(
        r#"select stripe_customer_id as "stripe_customer_id: CustomerId" from users where id = $1"#,
        user_id
    )
    .fetch_one(conn)
    .await
}

/// Keeps the first customer recorded for the user; returns the one that is kept.
pub async fn keep_customer(
    conn: &mut PgConnection,
    user_id: Uuid,
    customer_id: &CustomerId,
) -> sqlx::Result<CustomerId> {
    sqlx::query_scalar!(
        r#"update users set stripe_customer_id = coalesce(stripe_customer_id, $2) where id = $1
           returning stripe_customer_id as "stripe_customer_id!: CustomerId""#,
        user_id,
        customer_id as &CustomerId,
    )
    .fetch_one(conn)
    .await
}

/// The driver's card if Stripe reported it on their customer since `since` and it was not
/// removed.
pub async fn recently_verified(
    conn: &mut PgConnection,
    user_id: Uuid,
    payment_method_id: &PaymentMethodId,
    since: DateTime<Utc>,
) -> sqlx::Result<Option<Card>> {
    sqlx::query_as!(
        Card,
        r#"select payment_method_id as "id: PaymentMethodId", brand, last4, exp_month, exp_year,
                  customer_id as "customer_id?: CustomerId"
           from saved_cards
           where payment_method_id = $1 and user_id = $2 and removed_at is null
             and verified_at > $3"#,
        payment_method_id as &PaymentMethodId,
        user_id,
        since,
    )
    .fetch_optional(conn)
    .await
}

/// Records that Stripe reports `card` on the driver's customer now. False if the card was
/// removed through Curbside: it stays removed.
pub async fn record_verified(
    conn: &mut PgConnection,
    user_id: Uuid,
    customer: &CustomerId,
    card: &Card,
) -> sqlx::Result<bool> {
    let live = sqlx::query_scalar!(
        r#"insert into saved_cards (payment_method_id, user_id, customer_id, brand, last4,
                                    exp_month, exp_year, verified_at)
           values ($1, $2, $3, $4, $5, $6, $7, now())
           on conflict (payment_method_id) do update
               set brand = excluded.brand, last4 = excluded.last4,
                   exp_month = excluded.exp_month, exp_year = excluded.exp_year,
                   verified_at = excluded.verified_at
               where saved_cards.user_id = excluded.user_id and saved_cards.removed_at is null
           returning true as "live!""#,
        &card.id as &PaymentMethodId,
        user_id,
        customer as &CustomerId,
        card.brand,
        card.last4,
        card.exp_month,
        card.exp_year,
    )
    .fetch_optional(conn)
    .await?;
    Ok(live.is_some())
}

/// Records the cards Stripe lists on the driver's customer, marks the ones it no longer
/// lists as removed (detached elsewhere), and returns those of the list that were removed
/// through Curbside and are not to be shown (Stripe may still list a card whose detaching
/// has not reached it yet).
pub async fn record_listed(
    conn: &mut PgConnection,
    user_id: Uuid,
    customer: &CustomerId,
    cards: &[Card],
) -> sqlx::Result<Vec<PaymentMethodId>> {
    let ids: Vec<String> = cards.iter().map(|c| c.id.as_str().to_owned()).collect();
    let brands: Vec<String> = cards.iter().map(|c| c.brand.clone()).collect();
    let last4s: Vec<String> = cards.iter().map(|c| c.last4.clone()).collect();
    let months: Vec<i16> = cards.iter().map(|c| c.exp_month).collect();
    let years: Vec<i16> = cards.iter().map(|c| c.exp_year).collect();
    sqlx::query!(
        "insert into saved_cards (payment_method_id, user_id, customer_id, brand, last4,
                                  exp_month, exp_year, verified_at)
         select id, $2, $3, brand, last4, exp_month, exp_year, now()
         from unnest($1::text[], $4::text[], $5::text[], $6::smallint[], $7::smallint[])
              as listed (id, brand, last4, exp_month, exp_year)
         on conflict (payment_method_id) do update
             set brand = excluded.brand, last4 = excluded.last4,
                 exp_month = excluded.exp_month, exp_year = excluded.exp_year,
                 verified_at = excluded.verified_at
             where saved_cards.user_id = excluded.user_id and saved_cards.removed_at is null",
        &ids,
        user_id,
        customer as &CustomerId,
        &brands,
        &last4s,
        &months,
        &years,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "update saved_cards set removed_at = now()
         where user_id = $1 and removed_at is null and payment_method_id <> all($2)",
        user_id,
        &ids,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query_scalar!(
        r#"select payment_method_id as "id: PaymentMethodId" from saved_cards
           where payment_method_id = any($1) and (user_id <> $2 or removed_at is not null)"#,
        &ids,
        user_id,
    )
    .fetch_all(conn)
    .await
}

/// `Some(already_removed)` if Curbside knows the card as the driver's. `for update`: in a
/// transaction the card stays locked for its removal until the transaction ends.
pub async fn removal_state(
    conn: &mut PgConnection,
    user_id: Uuid,
    payment_method_id: &PaymentMethodId,
) -> sqlx::Result<Option<bool>> {
    sqlx::query_scalar!(
        r#"select removed_at is not null as "removed!" from saved_cards
           where payment_method_id = $1 and user_id = $2
           for update"#,
        payment_method_id as &PaymentMethodId,
        user_id,
    )
    .fetch_optional(conn)
    .await
}

/// A reservation of the driver's that relies on the card: a current booking (its final
/// charge will use it), or a bill being charged or waiting for authentication with it.
pub async fn relying_reservation(
    conn: &mut PgConnection,
    user_id: Uuid,
    payment_method_id: &PaymentMethodId,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        "select id from reservations
         where stripe_payment_method_id = $1 and user_id = $2
           and (status in ('held', 'confirmed')
                or payment_status in ('charge_pending', 'requires_action'))
         limit 1",
        payment_method_id as &PaymentMethodId,
        user_id,
    )
    .fetch_optional(conn)
    .await
}

/// From now on no booking uses the card. Returns whether a row was marked.
pub async fn mark_removed(
    conn: &mut PgConnection,
    payment_method_id: &PaymentMethodId,
) -> sqlx::Result<bool> {
    let marked = sqlx::query!(
        "update saved_cards set removed_at = now()
         where payment_method_id = $1 and removed_at is null",
        payment_method_id as &PaymentMethodId,
    )
    .execute(conn)
    .await?;
    Ok(marked.rows_affected() == 1)
}
