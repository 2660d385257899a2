-- An email is tried a bounded number of times (or once, when the address or the server
-- refuses it for good), then marked failed: it stays for operators to see (the
-- `curbside_outbox_emails_failed` metric counts these rows) instead of being retried for ever.
alter table email_outbox add column failed_at timestamptz;

-- The reconciler's list of unsent emails no longer includes those given up on.
drop index email_outbox_unsent_idx;
create index email_outbox_unsent_idx on email_outbox (next_attempt_at)
    where sent_at is null and failed_at is null;

create index email_outbox_failed_idx on email_outbox (failed_at) where failed_at is not null;
