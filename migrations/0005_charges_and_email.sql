-- What ending, charging and emailing need.

alter table reservations
    -- Off-session charge attempts that could not reach Stripe (for backoff and alerting).
    add column charge_attempts integer not null default 0,
    -- Stripe's word on a failed charge, for the driver's email and support.
    add column payment_error text,
    -- Shown on receipts; read from Stripe when the charge is made.
    add column card_last4 text,
    add column completed_at timestamptz;

create index reservations_stripe_payment_intent_idx on reservations (stripe_payment_intent_id)
    where stripe_payment_intent_id is not null;

-- The reconciler's work lists, kept small by their predicates.
create index reservations_due_to_end_idx on reservations (ends_at) where status = 'confirmed';
create index reservations_due_to_expire_idx on reservations (hold_expires_at) where status = 'held';
create index reservations_charge_pending_idx on reservations (updated_at)
    where payment_status = 'charge_pending';

-- Emails are written here in the same transaction as the change they announce, so a change
-- that rolls back sends nothing, and one that commits is never forgotten: a job (or the
-- reconciler) delivers each row and marks it sent.
create table email_outbox (
    id              uuid primary key,
    reservation_id  uuid references reservations (id) on delete set null,
    kind            text not null,
    to_address      text not null,
    subject         text not null,
    body            text not null,
    created_at      timestamptz not null default now(),
    attempts        integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    last_error      text,
    sent_at         timestamptz
);

create index email_outbox_unsent_idx on email_outbox (next_attempt_at) where sent_at is null;
create index email_outbox_reservation_idx on email_outbox (reservation_id) where sent_at is null;
