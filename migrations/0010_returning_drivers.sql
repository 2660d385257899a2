-- Drivers come back: cards saved earlier, quotes that bind, and refunds by an operator.

-- The cards of a driver's Stripe customer that Curbside has checked with Stripe. Stripe
-- stays the record (listing the cards asks it); a row says that Stripe reported the card on
-- the driver's customer at `verified_at`, which lets a one-step booking skip asking again
-- for a while. A booking with the card takes its row `for share` and a removal takes it
-- `for update`, so a card is never detached under a booking that was just made with it, and
-- `removed_at` is set before Stripe is asked to detach: from then on nothing uses the card.
create table saved_cards (
    payment_method_id text primary key,
    user_id           uuid not null references users (id) on delete cascade,
    customer_id       text not null,
    brand             text not null,
    last4             text not null,
    exp_month         smallint not null,
    exp_year          smallint not null,
    verified_at       timestamptz not null,
    removed_at        timestamptz,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now()
);
create index saved_cards_user_idx on saved_cards (user_id);
create trigger saved_cards_set_updated_at before update on saved_cards
    for each row execute function set_updated_at();

-- A reservation that relies on its card: a current booking, or a bill still being charged
-- or authenticated. A card with one of these cannot be removed.
create index reservations_payment_method_idx on reservations (stripe_payment_method_id)
    where stripe_payment_method_id is not null;

-- A price given for one spot and window, binding for a few minutes: a booking that names
-- it gets its window, rate and amount, even if an operator changed the rate since. A quote
-- "for the next N minutes" (`starts_on_booking`) is booked from the moment of booking for
-- the same length, so for the same amount; any other quote books exactly its window.
-- A quote books once: `reservation_id` is set in the booking's transaction, under the
-- quote's row lock; a booking that is discarded (its card setup failed) frees it again.
create table quotes (
    id                  uuid primary key,
    spot_id             uuid not null references spots (id),
    starts_at           timestamptz not null,
    ends_at             timestamptz not null,
    starts_on_booking   boolean not null,
    rate_cents_per_hour integer not null,
    amount_cents        bigint not null,
    currency            text not null,
    expires_at          timestamptz not null,
    reservation_id      uuid unique references reservations (id) on delete set null,
    created_at          timestamptz not null default now(),
    constraint quotes_window_check check (ends_at > starts_at)
);
-- The reconciler deletes quotes a day after they expired.
create index quotes_expires_at_idx on quotes (expires_at);

-- Refunds of a paid reservation, each a Stripe Refund under the idempotency key
-- `refund:{id}`. `refunded_cents` on the reservation is the sum of its refunds that are
-- pending or succeeded, kept by the trigger below in the same statement that writes a
-- refund: with the check constraint, PostgreSQL itself refuses any refund, or any two
-- concurrent refunds, that would give back more than was paid (concurrent inserts queue on
-- the reservation's row, and the second is checked against the first's sum).
alter table reservations
    add column refunded_cents bigint not null default 0,
    add constraint reservations_refund_within_payment check (
        refunded_cents >= 0
        and (refunded_cents = 0 or (payment_status = 'paid' and refunded_cents <= amount_cents))
    );

create table refunds (
    id                uuid primary key,
    reservation_id    uuid not null references reservations (id),
    amount_cents      bigint not null,
    -- The operator's words, kept for support and sent to Stripe as metadata.
    reason            text not null,
    requested_by      uuid references users (id) on delete set null,
    payment_intent_id text not null,
    -- Stripe's `re_…`, once Stripe has answered.
    stripe_refund_id  text unique,
    status            text not null default 'pending',
    failure_reason    text,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    constraint refunds_amount_check check (amount_cents > 0),
    constraint refunds_status_check
        check (status in ('pending', 'succeeded', 'failed', 'canceled'))
);
create index refunds_reservation_idx on refunds (reservation_id, created_at);
-- The reconciler's list: refunds Stripe has not settled a minute after they were made.
create index refunds_pending_idx on refunds (created_at) where status = 'pending';
create trigger refunds_set_updated_at before update on refunds
    for each row execute function set_updated_at();

-- A refund counts against the payment while it is pending or succeeded; one that failed or
-- was canceled gives its amount back. Its amount and reservation never change.
create function refunds_count_against_payment() returns trigger
language plpgsql as $$
declare
    counted_before bigint := 0;
    counted_now    bigint := 0;
begin
    if tg_op = 'UPDATE' then
        if new.amount_cents <> old.amount_cents or new.reservation_id <> old.reservation_id then
            raise exception 'a refund''s amount and reservation never change';
        end if;
        if old.status in ('pending', 'succeeded') then
            counted_before := old.amount_cents;
        end if;
    end if;
    if new.status in ('pending', 'succeeded') then
        counted_now := new.amount_cents;
    end if;
    if counted_now <> counted_before then
        update reservations set refunded_cents = refunded_cents + counted_now - counted_before
        where id = new.reservation_id;
    end if;
    return new;
end
$$;
create trigger refunds_count_against_payment after insert or update on refunds
    for each row execute function refunds_count_against_payment();
