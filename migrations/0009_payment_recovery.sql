-- Nobody is stuck: a bill that failed or needs 3-D Secure can be paid, guests can regain
-- access, and receipts name the card.

-- Every attempt at a reservation's final charge, one PaymentIntent each, under its own
-- idempotency key (`reservation:{id}:charge` for the first, `…:charge:{n}` after). A
-- reservation is paid by at most one attempt, whatever the interleaving of the charge job,
-- Stripe's webhooks and the driver's retries: the partial unique index refuses a second
-- succeeded attempt.
create table charge_attempts (
    reservation_id    uuid not null references reservations (id),
    attempt           integer not null,
    payment_intent_id text not null,
    payment_method_id text not null,
    amount_cents      bigint not null,
    status            text not null,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    primary key (reservation_id, attempt),
    constraint charge_attempts_payment_intent_key unique (payment_intent_id),
    constraint charge_attempts_status_check
        check (status in ('processing', 'succeeded', 'failed', 'requires_action', 'canceled'))
);

create unique index charge_attempts_one_success on charge_attempts (reservation_id)
    where status = 'succeeded';

create trigger charge_attempts_set_updated_at before update on charge_attempts
    for each row execute function set_updated_at();

alter table reservations
    -- The attempt the charge job makes next (1, then one more per retry by the driver).
    add column charge_attempt integer not null default 1,
    -- Shown on receipts beside the last four digits.
    add column card_brand text;

-- "You have an unpaid bill": looked up by email (guests and drivers alike) at each booking.
create index reservations_unpaid_by_email_idx on reservations (email)
    where payment_status in ('failed', 'requires_action');

-- A guest who lost the guest token asks for a link by email; the link's code, single-use
-- and short-lived, is exchanged for a new token. Only its SHA-256 is stored.
create table guest_access_codes (
    code_hash      bytea primary key,
    reservation_id uuid not null references reservations (id) on delete cascade,
    expires_at     timestamptz not null,
    used_at        timestamptz,
    created_at     timestamptz not null default now()
);

create index guest_access_codes_reservation_idx on guest_access_codes (reservation_id);
