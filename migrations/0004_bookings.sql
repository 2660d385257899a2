-- What booking and paying need beside the reservations table.

-- One Stripe Customer per account, created at its first booking and reused after.
alter table users add column stripe_customer_id text;

-- The SetupIntent webhook finds its reservation by this id.
create unique index reservations_setup_intent_idx on reservations (stripe_setup_intent_id)
    where stripe_setup_intent_id is not null;

-- Stripe delivers a webhook at least once: an event id seen before has no second effect.
create table stripe_events (
    id          text primary key,
    type        text not null,
    received_at timestamptz not null default now()
);

-- `Idempotency-Key` on POST and PATCH: the first response to a (caller, key) is kept for
-- 24 hours and replayed for the same request; the request fingerprint catches a key reused
-- for another request. `response_status` is null while the first request is in flight.
create table idempotency_keys (
    caller               text not null,
    key                  text not null,
    request_fingerprint  bytea not null,
    response_status      smallint,
    response_content_type text,
    response_body        bytea,
    created_at           timestamptz not null default now(),
    primary key (caller, key)
);

create index idempotency_keys_created_at_idx on idempotency_keys (created_at);
