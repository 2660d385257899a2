-- The server's own writes no longer announce their changes with `NOTIFY`: a transaction
-- that notifies takes a cluster-wide lock from its commit until the commit is on disk, so
-- every such transaction commits alone, each waiting for its own WAL flush, and bookings
-- stop sharing flushes (the booking benchmark's bare transaction: 2,585 tps with the log
-- row alone, 1,576 with the notification too; BENCHMARKS.md). The server's connections
-- say so with the setting `curbside.announce_changes = off`, and every `serve` replica
-- reads the log every 20 ms instead (`spots::feed`). Any other writer (psql, an operator's
-- script) still announces its changes, which every replica still hears.
-- PL/pgSQL, not SQL: its plan is kept for the session, where a SQL function called from
-- a trigger is parsed again on every call.
create function announce_spot_changes() returns void
language plpgsql as $$
begin
    if current_setting('curbside.announce_changes', true) is distinct from 'off' then
        perform pg_notify('spot_changes', '');
    end if;
end
$$;

create or replace function note_reservation_insert_or_delete() returns trigger
language plpgsql as $$
begin
    insert into spot_changes (spot_id) select distinct spot_id from changed;
    if found then
        perform announce_spot_changes();
    end if;
    return null;
end
$$;

create or replace function note_reservation_update() returns trigger
language plpgsql as $$
begin
    insert into spot_changes (spot_id)
    select distinct n.spot_id
    from changed_new n join changed_old o on o.id = n.id
    where (n.status, n.starts_at, n.ends_at, n.hold_expires_at, n.spot_id)
          is distinct from (o.status, o.starts_at, o.ends_at, o.hold_expires_at, o.spot_id);
    if found then
        perform announce_spot_changes();
    end if;
    return null;
end
$$;

create or replace function note_spot_insert_or_delete() returns trigger
language plpgsql as $$
begin
    insert into spot_changes (spot_id) select id from changed;
    if found then
        perform announce_spot_changes();
    end if;
    return null;
end
$$;

create or replace function note_spot_update() returns trigger
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
        perform announce_spot_changes();
    end if;
    return null;
end
$$;
