-- The change feed: one row per change to a spot's availability or public fields, written
-- by triggers in the transaction that makes the change, and announced on the channel
-- `spot_changes` when it commits. Every `serve` replica keeps its picture of the curb and
-- its event streams current from it (`spots::feed`); a replica that was away reads what
-- it missed from here. The reconciler deletes rows after an hour.
--
-- Ids come from a sequence, so they are allocated in one order and committed in another:
-- a reader that has seen id 11 may yet see 10. `txid` lets it tell a gap that is still
-- in flight from one that never will be (see `spots::feed`). The triggers below run after
-- their statement's write, so the transaction has its id before it takes a change's id.
create table spot_changes (
    txid    xid8 not null default pg_current_xact_id(),
    id      bigserial primary key,
    spot_id uuid not null,
    at      timestamptz not null default now()
);

-- Retention deletes by age; rows arrive in nearly the order of `at`.
create index spot_changes_at_idx on spot_changes using brin (at);

-- A reservation changes availability when it is made or deleted, and when its status,
-- window or hold changes. Statement triggers: one notification per transaction however
-- many rows it changes (PostgreSQL folds identical notifications).
create function note_reservation_insert_or_delete() returns trigger
language plpgsql as $$
begin
    insert into spot_changes (spot_id) select distinct spot_id from changed;
    if found then
        perform pg_notify('spot_changes', '');
    end if;
    return null;
end
$$;

create trigger reservations_feed_insert after insert on reservations
    referencing new table as changed
    for each statement execute function note_reservation_insert_or_delete();
create trigger reservations_feed_delete after delete on reservations
    referencing old table as changed
    for each statement execute function note_reservation_insert_or_delete();

-- An update is noted only when it touches what availability depends on: payments,
-- versions and reminders change reservations far more often than their windows do.
create function note_reservation_update() returns trigger
language plpgsql as $$
begin
    insert into spot_changes (spot_id)
    select distinct n.spot_id
    from changed_new n join changed_old o on o.id = n.id
    where (n.status, n.starts_at, n.ends_at, n.hold_expires_at, n.spot_id)
          is distinct from (o.status, o.starts_at, o.ends_at, o.hold_expires_at, o.spot_id);
    if found then
        perform pg_notify('spot_changes', '');
    end if;
    return null;
end
$$;

create trigger reservations_feed_update after update on reservations
    referencing old table as changed_old new table as changed_new
    for each statement execute function note_reservation_update();

-- Spots: created, deleted, or changed in a field the API shows (not `updated_at`, which
-- every update sets).
create function note_spot_insert_or_delete() returns trigger
language plpgsql as $$
begin
    insert into spot_changes (spot_id) select id from changed;
    if found then
        perform pg_notify('spot_changes', '');
    end if;
    return null;
end
$$;

create trigger spots_feed_insert after insert on spots
    referencing new table as changed
    for each statement execute function note_spot_insert_or_delete();
create trigger spots_feed_delete after delete on spots
    referencing old table as changed
    for each statement execute function note_spot_insert_or_delete();

create function note_spot_update() returns trigger
language plpgsql as $$
begin
    insert into spot_changes (spot_id)
    select n.id
    from changed_new n join changed_old o on o.id = n.id
    where (n.meter_number, n.lat, n.lng, n.borough, n.street, n.side, n.from_street,
           n.to_street, n.facility, n.rule, n.max_stay_minutes, n.rate_cents_per_hour,
           n.currency, n.active)
          is distinct from
          (o.meter_number, o.lat, o.lng, o.borough, o.street, o.side, o.from_street,
           o.to_street, o.facility, o.rule, o.max_stay_minutes, o.rate_cents_per_hour,
           o.currency, o.active);
    if found then
        perform pg_notify('spot_changes', '');
    end if;
    return null;
end
$$;

create trigger spots_feed_update after update on spots
    referencing old table as changed_old new table as changed_new
    for each statement execute function note_spot_update();
