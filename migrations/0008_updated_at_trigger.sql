-- `updated_at` is kept by PostgreSQL: every update of a row sets it, so no statement can
-- forget to. (The reconciler's list of charges stuck pending keys on it: a row touched by
-- a charge attempt, such as recording the card's last digits or counting an attempt that
-- could not reach Stripe, waits its minute again before the reconciler retries it.)
create function set_updated_at() returns trigger language plpgsql as $$
begin
    new.updated_at := now();
    return new;
end
$$;

create trigger users_set_updated_at before update on users
    for each row execute function set_updated_at();
create trigger spots_set_updated_at before update on spots
    for each row execute function set_updated_at();
create trigger reservations_set_updated_at before update on reservations
    for each row execute function set_updated_at();
