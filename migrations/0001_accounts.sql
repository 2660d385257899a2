-- Accounts and sign-in sessions.
--
-- Emails are stored trimmed and lowercased by the application (`Email::parse`), so the
-- plain unique constraint is the case-insensitive uniqueness the product promises; the
-- check keeps anything else from writing a mixed-case address.
create table users (
    id            uuid primary key,
    email         text not null,
    name          text,
    -- argon2id PHC string: algorithm, parameters and salt travel with the hash, so the
    -- parameters can be raised later without invalidating existing passwords.
    password_hash text not null,
    role          text not null default 'driver',
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    constraint users_email_key unique (email),
    constraint users_email_lowercase check (email = lower(btrim(email))),
    constraint users_role_check check (role in ('driver', 'operator'))
);

-- One row per sign-in. Access tokens carry the session id and every authenticated request
-- checks `revoked_at`, so signing out or changing the password takes effect at once.
create table sessions (
    id         uuid primary key,
    user_id    uuid not null references users (id) on delete cascade,
    created_at timestamptz not null default now(),
    revoked_at timestamptz
);

create index sessions_user_id_idx on sessions (user_id) where revoked_at is null;

-- Refresh tokens are opaque random strings; only their SHA-256 is stored, so a leaked
-- table cannot be replayed. Each is used once: `used_at` marks rotation, and presenting a
-- used token again means it was stolen, which revokes the whole session.
create table refresh_tokens (
    token_hash bytea primary key,
    session_id uuid not null references sessions (id) on delete cascade,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    used_at    timestamptz
);

create index refresh_tokens_session_id_idx on refresh_tokens (session_id);
