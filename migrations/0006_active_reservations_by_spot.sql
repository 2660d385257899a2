-- Availability in spot search: one probe per spot read ("is this spot held or confirmed
-- during the window?"). The exclusion constraint's GiST index answers it too, but several
-- times slower, and without an index of its own PostgreSQL hashed every active reservation
-- of the city on each search. The included columns make the probe an index-only scan.
create index reservations_active_by_spot_idx
    on reservations (spot_id, ends_at)
    include (starts_at, status, hold_expires_at)
    where status in ('held', 'confirmed');
