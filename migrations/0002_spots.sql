-- Parking spots: one per meter, imported from NYC Open Data or created by operators.
--
-- Search is "nearest first within a radius". PostGIS answers it from a GiST index on a
-- geography column with a nearest-neighbour scan (`geog <-> point`); measured against a
-- B-tree bounding box (1.9x slower) and cube/earthdistance (23x slower), see BENCHMARKS.md.
create extension if not exists postgis;

create table spots (
    id                  uuid primary key,
    -- The city's meter number: the key the importer upserts by.
    meter_number        text not null,
    lat                 double precision not null,
    lng                 double precision not null,
    -- Derived from lat/lng so the two can never disagree.
    geog                geography(point, 4326) not null
                        generated always as (st_setsrid(st_makepoint(lng, lat), 4326)::geography) stored,
    borough             text not null,
    street              text,
    side                text,
    from_street         text,
    to_street           text,
    facility            text not null default 'on_street',
    -- The posted rule exactly as the city wrote it; `max_stay_minutes` is parsed from it.
    rule                text,
    max_stay_minutes    integer not null,
    rate_cents_per_hour integer not null,
    currency            text not null default 'usd',
    active              boolean not null default true,
    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now(),
    constraint spots_meter_number_key unique (meter_number),
    constraint spots_lat_check check (lat between -90 and 90),
    constraint spots_lng_check check (lng between -180 and 180),
    constraint spots_facility_check check (facility in ('on_street', 'off_street')),
    constraint spots_max_stay_check check (max_stay_minutes between 1 and 1440),
    constraint spots_rate_check check (rate_cents_per_hour between 0 and 100000),
    constraint spots_currency_check check (currency = 'usd')
);

create index spots_geog_idx on spots using gist (geog);
