-- Reminders before time runs out: the version of the reservation whose reminder was
-- written. A reminder job (or the reconciler) writes one only for the current version,
-- and only once for it; a change bumps the version, so the new end is reminded anew.
-- Setting it does not bump `version`: the end job of this version must stay valid.
alter table reservations add column reminded_version integer;
