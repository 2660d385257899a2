-- Reservations of a spot for a half-open window [starts_at, ends_at).
--
-- The exclusion constraint is what makes double booking impossible: two live (`held` or
-- `confirmed`) rows of one spot can never overlap, whatever the application does, and the
-- loser of a race gets SQLSTATE 23P01, answered as 409 `spot_unavailable`.
create extension if not exists btree_gist;

create table reservations (
    id                       uuid primary key,
    spot_id                  uuid not null references spots (id),
    -- Null for guest bookings, which are opened by a token instead.
    user_id                  uuid references users (id) on delete set null,
    email                    text not null,
    vehicle_plate            text,
    starts_at                timestamptz not null,
    ends_at                  timestamptz not null,
    status                   text not null default 'held',
    payment_status           text not null default 'setup_pending',
    -- Copied from the spot at booking, so a later price change never alters a booking.
    rate_cents_per_hour      integer not null,
    -- The quote, then the final bill.
    amount_cents             bigint not null,
    currency                 text not null default 'usd',
    -- Bumped on every change; delayed jobs carry it and do nothing when it is stale.
    version                  integer not null default 1,
    -- A `held` row stops blocking the spot at this time, even before a job expires it.
    hold_expires_at          timestamptz,
    -- SHA-256 of the guest token; the token itself is shown once.
    guest_token_hash         bytea,
    stripe_customer_id       text,
    stripe_setup_intent_id   text,
    stripe_payment_method_id text,
    stripe_payment_intent_id text,
    created_at               timestamptz not null default now(),
    updated_at               timestamptz not null default now(),
    constraint reservations_window_check check (ends_at > starts_at),
    constraint reservations_status_check
        check (status in ('held', 'confirmed', 'completed', 'expired', 'cancelled')),
    constraint reservations_payment_status_check
        check (payment_status in ('setup_pending', 'card_saved', 'charge_pending', 'paid',
                                  'failed', 'requires_action', 'not_required')),
    constraint reservations_held_expiry_check
        check (status <> 'held' or hold_expires_at is not null),
    constraint reservations_no_overlap exclude using gist (
        spot_id with =,
        tstzrange(starts_at, ends_at, '[)') with &&
    ) where (status in ('held', 'confirmed'))
);

create index reservations_user_id_idx on reservations (user_id, starts_at desc)
    where user_id is not null;
