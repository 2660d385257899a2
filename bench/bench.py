#!/usr/bin/env python3
"""Curbside benchmarks: run them on a quiet machine, read medians and ratios.

    bench/bench.py auth      sign-in throughput, and /healthz p99 while sign-ins saturate the CPU
    bench/bench.py search    GET /v1/spots around Times Square vs the same SQL in pgbench,
                             at 13k spots and at 1,000,000 synthetic spots
    bench/bench.py booking   POST /v1/reservations on random spots (Stripe imitation on
                             loopback) by drivers with a saved card (one step) and by guests
                             (a SetupIntent each) vs the same insert transaction in pgbench,
                             and 50 clients fighting over 10 spots
    bench/bench.py endings   10,000 reservations ending in the same minute: lateness, charges
                             per second, peak RSS, and spot search meanwhile; workers in the
                             API process, then in a separate `curbside worker` process
    bench/bench.py curb      the live curb: GET /v1/spots from the picture vs pgbench running
                             the plain PostGIS nearest-neighbour query, at 13k and 1,000,000
                             spots (RSS and load time too); staleness from a booking on one
                             replica to the other's search and stream; 10,000 open streams
                             (`--only search|staleness|fanout` for one part)

Every figure is the median of --runs runs (default 3), each --seconds long (default 10),
and each comparison is against a baseline measured in the same run. Needs wrk and pgbench
(installed with apt-get when missing), PostgreSQL with PostGIS and Redis (scripts/services.sh).
"""

import argparse
import json
import os
import asyncio
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The bundled snapshot; `import-meters` reads .csv.gz as well as .csv.
NYC_CSV = os.path.join(ROOT, "data", "nyc-parking-meters.csv.gz")
PORT = 18080
BASE = f"http://127.0.0.1:{PORT}"
TIMES_SQUARE = (40.7580, -73.9855)
SEARCH_PATH = f"/v1/spots?lat={TIMES_SQUARE[0]}&lng={TIMES_SQUARE[1]}&radius=1"


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run(cmd, **kwargs):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kwargs).stdout


def ensure_tools():
    missing = [pkg for tool, pkg in [("wrk", "wrk"), ("pgbench", "postgresql-contrib")] if not shutil.which(tool)]
    if missing:
        log(f"installing {' '.join(missing)}")
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "install", "-y", "-qq", *missing])


def services_env():
    out = run([os.path.join(ROOT, "scripts", "services.sh"), "--env"])
    env = dict(re.findall(r"(\w+)='([^']*)'", out))
    return env["DATABASE_ADMIN_URL"], env["REDIS_URL"]


def fresh_database(admin_url, name):
    run(["psql", admin_url, "-qc", f'drop database if exists "{name}" with (force)'])
    run(["psql", admin_url, "-qc", f'create database "{name}"'])
    return admin_url.rsplit("/", 1)[0] + "/" + name


def release_binary(name):
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", name)


def build():
    log("building the release binaries (the API and the Stripe imitation)")
    run(["cargo", "build", "--release", "--locked", "--workspace"], cwd=ROOT)
    return release_binary("curbside")


def most_descriptors():
    """Raises this process's open file limit to its hard limit (streams are connections)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Server:
    """The release server on `port` (PORT), with limits high enough not to meet."""

    def __init__(self, binary, database_url, redis_url, extra_env=None, serve_args=(), port=PORT):
        self.base = f"http://127.0.0.1:{port}"
        self.redis_url = redis_url
        self.prefix = (extra_env or {}).get("REDIS_KEY_PREFIX", f"bench-{os.getpid()}")
        env = {**os.environ, "DATABASE_URL": database_url + "?sslmode=disable", "REDIS_URL": redis_url, "BIND_ADDR": f"127.0.0.1:{port}",
               "RATE_LIMIT_PER_MINUTE": "1000000000", "AUTH_RATE_LIMIT_PER_MINUTE": "1000000000",
               "REDIS_KEY_PREFIX": self.prefix, "RUST_LOG": "warn", **(extra_env or {})}
        # Warnings and errors (RUST_LOG=warn) go to bench-server.log, to read after a run.
        self.log = open(os.path.join(tempfile.gettempdir(), "bench-server.log"), "a")
        self.process = subprocess.Popen([binary, "serve", *serve_args], env=env, stdout=subprocess.DEVNULL,
                                        stderr=self.log, preexec_fn=most_descriptors)
        for _ in range(200):
            try:
                urllib.request.urlopen(self.base + "/readyz", timeout=1)
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the server did not become ready")

    def peak_rss_mb(self):
        return peak_rss_mb(self.process.pid)

    def rss_mb(self):
        with open(f"/proc/{self.process.pid}/status") as status:
            return int(re.search(r"VmRSS:\s+(\d+) kB", status.read()).group(1)) / 1024

    def metric(self, name):
        with urllib.request.urlopen(self.base + "/metrics", timeout=5) as response:
            return float(re.search(rf"^{name} (\S+)$", response.read().decode(), re.M).group(1))

    def wait_for_picture(self, timeout=600):
        """Seconds until the picture of the curb is loaded and current."""
        started = time.monotonic()
        while self.metric("curbside_curb_current") != 1:
            if time.monotonic() - started > timeout:
                raise RuntimeError("the picture of the curb did not load")
            time.sleep(0.05)
        return time.monotonic() - started

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=40)
        forget_jobs(self.redis_url, self.prefix)


def forget_jobs(redis_url, prefix):
    """Deletes the jobs a benchmark left in Redis. apalis keeps finished jobs, and a booking
    run schedules hundreds of thousands of end and reminder jobs: left behind, they slow
    every later scan of the keyspace (the API tests' Redis-loss test flushes by SCAN)."""
    keys = run(["redis-cli", "-u", redis_url, "--scan", "--pattern", prefix + ":*"]).split()
    for start in range(0, len(keys), 1000):
        run(["redis-cli", "-u", redis_url, "del", *keys[start:start + 1000]])


def parse_wrk(output):
    def ms(text):
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", output, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": ms(latency["50"]),
        "p99_ms": ms(latency["99"]),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def wrk(path, connections, seconds, script=None, threads=2):
    cmd = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", script]
    return subprocess.Popen(cmd + [BASE + path], stdout=subprocess.PIPE, text=True)


def wrk_result(process):
    output, _ = process.communicate()
    return parse_wrk(output)


def median(rows, key):
    return statistics.median(row[key] for row in rows)


def api_summary(runs):
    """The medians of wrk's runs against the API, and its non-2xx answers in all."""
    return {"api_rps": median(runs, "rps"), "api_p50_ms": median(runs, "p50_ms"),
            "api_p99_ms": median(runs, "p99_ms"), "api_non_2xx": sum(r["non_2xx"] for r in runs)}


def post_json(path, body):
    request = urllib.request.Request(BASE + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    return urllib.request.urlopen(request, timeout=10).status


def bench_auth(args, admin_url, redis_url, binary):
    database_url = fresh_database(admin_url, "curbside_bench_auth")
    server = Server(binary, database_url, redis_url)
    try:
        body = {"email": "bench@example.com", "password": "benchmark password"}
        post_json("/v1/auth/sign-up", body)
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        script.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                     f"wrk.body = '{json.dumps(body)}'\n")
        script.close()
        idle, loaded, signins = [], [], []
        for i in range(args.runs):
            # Baseline: /healthz alone, one connection.
            idle.append(wrk_result(wrk("/healthz", 1, args.seconds, threads=1)))
            # The same probe while 32 connections sign in as fast as they can.
            signin = wrk("/v1/auth/sign-in", 32, args.seconds, script=script.name, threads=1)
            probe = wrk("/healthz", 1, args.seconds, threads=1)
            loaded.append(wrk_result(probe))
            signins.append(wrk_result(signin))
            log(f"run {i + 1}: sign-ins {signins[-1]['rps']:.1f}/s (non-2xx {signins[-1]['non_2xx']}), "
                f"healthz p99 idle {idle[-1]['p99_ms']:.2f} ms, under sign-ins {loaded[-1]['p99_ms']:.2f} ms")
        rss = server.peak_rss_mb()
    finally:
        server.stop()
    print(json.dumps({
        "sign_in_per_s": median(signins, "rps"),
        "sign_in_p50_ms": median(signins, "p50_ms"),
        "sign_in_p99_ms": median(signins, "p99_ms"),
        "sign_in_non_2xx": sum(r["non_2xx"] for r in signins),
        "healthz_p99_idle_ms": median(idle, "p99_ms"),
        "healthz_p99_under_sign_in_ms": median(loaded, "p99_ms"),
        "healthz_p50_under_sign_in_ms": median(loaded, "p50_ms"),
        "peak_rss_mb": rss,
    }, indent=2))


def import_nyc(binary, database_url):
    run([binary, "import-meters", NYC_CSV], env=dict(os.environ, DATABASE_URL=database_url, RUST_LOG="warn"))


SYNTHETIC_SQL = """
insert into spots (id, meter_number, lat, lng, borough, max_stay_minutes, rate_cents_per_hour)
select gen_random_uuid(), 'synthetic-' || g,
       40.50 + random() * 0.40, -74.25 + random() * 0.55, 'Synthetic', 120, 250
from generate_series(1, {count}) as g;
analyze spots;
"""


def pgbench_sql():
    """The server's own nearest-neighbour query (`curbside::spots::NEAREST_SQL`), with this
    search's values in place of the parameters the server binds."""
    sql = run(["cargo", "run", "--release", "--locked", "--quiet", "--example", "nearest_sql"], cwd=ROOT)
    values = {"$1": ":lat", "$2": ":lng", "$3": "1000", "$4": "now()", "$5": "(now() + interval '5 minutes')",
              "$6": "-1", "$7": "'00000000-0000-0000-0000-000000000000'::uuid", "$8": "true", "$9": "51"}
    return re.sub(r"\$\d", lambda m: values[m.group(0)], sql)


def pgbench(database_url, seconds, sql=None):
    script = tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False)
    script.write(f"\\set lat {TIMES_SQUARE[0]}\n\\set lng {TIMES_SQUARE[1]}\n{sql or pgbench_sql()};\n")
    script.close()
    # The server's own session settings (src/db.rs), so the ceiling runs the same plan.
    env = dict(os.environ, PGOPTIONS="-c plan_cache_mode=force_generic_plan -c jit=off")
    out = run(["pgbench", "-n", "-M", "prepared", "-c", "50", "-j", "2", "-T", str(seconds), "-f", script.name,
               database_url], env=env)
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


# The two sizes search is measured at: the NYC snapshot, and a million spots.
SEARCH_SIZES = [("13k", 0), ("1m", 1_000_000 - 13_415)]


def spots_database(binary, admin_url, name, synthetic=0):
    """A fresh, migrated database with the NYC snapshot and `synthetic` spots more."""
    database_url = fresh_database(admin_url, name)
    run([binary, "migrate"], env=dict(os.environ, DATABASE_URL=database_url, RUST_LOG="warn"))
    import_nyc(binary, database_url)
    if synthetic:
        log(f"adding {synthetic} synthetic spots")
        run(["psql", database_url, "-qc", SYNTHETIC_SQL.format(count=synthetic)])
    run(["psql", database_url, "-qc", "vacuum analyze spots"])
    return database_url


def bench_search(args, admin_url, redis_url, binary):
    results = {}
    for label, synthetic in SEARCH_SIZES:
        database_url = spots_database(binary, admin_url, f"curbside_bench_search_{label}", synthetic)
        server = Server(binary, database_url, redis_url)
        try:
            api, ceiling = [], []
            for i in range(args.runs):
                ceiling.append(pgbench(database_url, args.seconds))
                api.append(wrk_result(wrk(SEARCH_PATH, 50, args.seconds)))
                log(f"{label} run {i + 1}: api {api[-1]['rps']:.0f} req/s p99 {api[-1]['p99_ms']:.2f} ms, "
                    f"pgbench {ceiling[-1]:.0f} tps")
            rss = server.peak_rss_mb()
        finally:
            server.stop()
        results[label] = {
            **api_summary(api),
            "pgbench_tps": statistics.median(ceiling),
            "ratio": median(api, "rps") / statistics.median(ceiling),
            "peak_rss_mb": rss,
        }
    print(json.dumps(results, indent=2))


STRIPE_PORT = 12112
SMTP_PORT = 2526


def start_stripe():
    """The Stripe imitation on STRIPE_PORT, and the server settings that point at it."""
    stripe = subprocess.Popen([release_binary("fake-stripe"), "--bind", f"127.0.0.1:{STRIPE_PORT}"],
                              env=dict(os.environ, RUST_LOG="warn"), stdout=subprocess.DEVNULL)
    return stripe, {"STRIPE_API_BASE": f"http://127.0.0.1:{STRIPE_PORT}/", "STRIPE_SECRET_KEY": "sk_test_bench",
                    "STRIPE_WEBHOOK_SECRET": "whsec_bench"}


def booking_script(spot_ids, windows, drivers=None):
    """A wrk script: each request books a random spot for one of `windows` 30-minute slots,
    as a guest, or with `drivers` ([(access token, saved card)]) as a random driver in one step."""
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    ids = ",".join(f'"{spot}"' for spot in spot_ids)
    tokens = ",".join(f'"{token}"' for token, _ in drivers or [])
    cards = ",".join(f'"{card}"' for _, card in drivers or [])
    script.write(f"""
local spots = {{{ids}}}
local tokens = {{{tokens}}}
local cards = {{{cards}}}
local base = os.time() + 3600
math.randomseed(os.time() + math.floor(os.clock() * 1000000))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local spot = spots[math.random(#spots)]
  local slot = math.random({windows}) - 1
  local starts = os.date("!%Y-%m-%dT%H:%M:%SZ", base + slot * 1800)
  local window = '{{"spot_id":"' .. spot .. '","starts_at":"' .. starts .. '","duration_minutes":30'
  if #tokens == 0 then
    return wrk.format(nil, "/v1/reservations", nil, window .. ',"email":"bench@example.com"}}')
  end
  local n = math.random(#tokens)
  local headers = {{["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. tokens[n]}}
  return wrk.format(nil, "/v1/reservations", headers, window .. ',"payment_method_id":"' .. cards[n] .. '"}}')
end
""")
    script.close()
    return script.name


def call(method, url, body=None, token=None, form=None):
    """One JSON (or, for the imitation, form) request; the answer's JSON."""
    headers = {"content-type": "application/json"}
    data = json.dumps(body).encode() if body is not None else None
    if form is not None:
        headers = {"content-type": "application/x-www-form-urlencoded", "authorization": "Bearer sk_test_bench"}
        data = urllib.parse.urlencode(form).encode()
    if token:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"{method} {url}: {error.code} {error.read().decode()}") from None


def seed_drivers(count, spot):
    """`count` drivers who each booked once (a month ahead, on `spot`) and saved a card, as
    the web app does: the card is saved at the imitation, the booking confirmed, and the
    driver's cards listed (which records them as checked)."""
    drivers = []
    for n in range(count):
        session = call("POST", BASE + "/v1/auth/sign-up",
                       {"email": f"driver{n}@bench.example", "password": "bench password 123", "name": "Bench"})
        token = session["access_token"]
        starts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 20 * 86400 + n * 1800))
        booked = call("POST", BASE + "/v1/reservations",
                      {"spot_id": spot, "starts_at": starts, "duration_minutes": 30}, token)
        setup_intent = booked["payment"]["client_secret"].split("_secret_")[0]
        call("POST", f"http://127.0.0.1:{STRIPE_PORT}/v1/setup_intents/{setup_intent}/confirm",
             form={"payment_method": "pm_card_visa"})
        call("POST", BASE + f"/v1/reservations/{booked['reservation']['id']}/confirm", {}, token)
        card = call("GET", BASE + "/v1/me/payment-methods", token=token)["items"][0]["id"]
        drivers.append((token, card))
    return drivers


# A month of history: 20,000 past, paid reservations over the spots, most of them the bench
# drivers'. A live database has it, and PostgreSQL plans for it: on an empty table (and this
# machine's PostgreSQL runs without autovacuum) the cached plans would scan the table.
HISTORY = """
insert into reservations (id, spot_id, user_id, email, starts_at, ends_at, status, payment_status,
                          rate_cents_per_hour, amount_cents, completed_at)
select gen_random_uuid(), s.id, u.id, coalesce(u.email, 'past@example.com'),
       now() - interval '1 day' - g * interval '2 minutes',
       now() - interval '1 day' - g * interval '2 minutes' + interval '30 minutes',
       'completed', 'paid', 450, 225, now()
from generate_series(1, 20000) g
join bench_spot_ids s on s.n = 1 + (g * 7919) % 13414
left join users u on u.email = 'driver' || (g % 60) || '@bench.example'
"""


# The API's booking transaction (src/reservations/routes.rs `hold_spot`) on a random spot.
BOOKING_TRANSACTION = """
\\set n random(1, 13415)
\\set slot random(0, 1439)
begin;
select 1 from spots where id = (select id from bench_spot_ids where n = :n) for no key update;
update reservations set status = 'expired', version = version + 1
 where spot_id = (select id from bench_spot_ids where n = :n) and status = 'held' and hold_expires_at <= now()
   and tstzrange(starts_at, ends_at, '[)') && tstzrange(now() + interval '1 hour' + :slot * interval '30 minutes',
                                                       now() + interval '90 minutes' + :slot * interval '30 minutes', '[)');
insert into reservations (id, spot_id, email, starts_at, ends_at, rate_cents_per_hour, amount_cents, hold_expires_at)
values (gen_random_uuid(), (select id from bench_spot_ids where n = :n), 'bench@example.com',
        now() + interval '1 hour' + :slot * interval '30 minutes', now() + interval '90 minutes' + :slot * interval '30 minutes',
        450, 225, now() + interval '15 minutes')
on conflict do nothing;
commit;
"""


def bench_booking(args, admin_url, redis_url, binary):
    database_url = fresh_database(admin_url, "curbside_bench_booking")
    run([binary, "migrate"], env=dict(os.environ, DATABASE_URL=database_url, RUST_LOG="warn"))
    import_nyc(binary, database_url)
    spot_ids = run(["psql", database_url, "-qtAc", "select id from spots order by id"]).split()
    run(["psql", database_url, "-qc", "create table bench_spot_ids (n serial primary key, id uuid not null); "
         "insert into bench_spot_ids (id) select id from spots order by id"])
    stripe, stripe_env = start_stripe()
    # Confirmed bookings email their driver: a mail server that accepts and discards.
    smtp = subprocess.Popen([sys.executable, "-W", "ignore", "-m", "smtpd", "-n", "-c", "DebuggingServer",
                             f"127.0.0.1:{SMTP_PORT}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stripe_env["SMTP_URL"] = f"smtp://127.0.0.1:{SMTP_PORT}"
    server = Server(binary, database_url, redis_url, stripe_env)
    try:
        # The drivers' first bookings are all on the last spot, which the runs leave alone.
        drivers = seed_drivers(50, spot_ids[-1])
        run(["psql", database_url, "-qc", HISTORY])
        free, saved, fight, ceiling = [], [], [], []
        for i in range(args.runs):
            # What the runs booked (all of it ahead); the history and the drivers' first
            # bookings stay.
            clear = f"delete from email_outbox; delete from reservations where spot_id <> '{spot_ids[-1]}' and starts_at > now()"
            run(["psql", database_url, "-qc", clear])
            script = tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False)
            script.write(BOOKING_TRANSACTION)
            script.close()
            # With the server's session settings (src/db.rs): its writes do not `NOTIFY`.
            env = dict(os.environ, PGOPTIONS="-c curbside.announce_changes=off")
            ceiling.append(float(re.search(r"tps = ([\d.]+)", run(
                ["pgbench", "-n", "-c", "50", "-j", "2", "-T", str(args.seconds), "-f", script.name,
                 database_url], env=env)).group(1)))
            run(["psql", database_url, "-qc", clear, "-c", "vacuum analyze reservations"])
            saved.append(wrk_result(wrk("/", 50, args.seconds, script=booking_script(spot_ids[:-1], 1380, drivers))))
            run(["psql", database_url, "-qc", clear, "-c", "vacuum analyze reservations"])
            free.append(wrk_result(wrk("/", 50, args.seconds, script=booking_script(spot_ids[:-1], 1380))))
            run(["psql", database_url, "-qc", clear])
            fight.append(wrk_result(wrk("/", 50, args.seconds, script=booking_script(spot_ids[:10], 4))))
            winners = int(run(["psql", database_url, "-qtAc", "select count(*) from reservations where status = 'held' and spot_id = any(%s)"
                                   % ("array[" + ",".join(f"'{spot}'::uuid" for spot in spot_ids[:10]) + "]")]).strip())
            overlaps = int(run(["psql", database_url, "-qtAc",
                                "select count(*) from reservations a join reservations b on a.spot_id = b.spot_id "
                                "and a.id < b.id and tstzrange(a.starts_at, a.ends_at) && tstzrange(b.starts_at, b.ends_at)"]).strip())
            fight[-1].update(winners=winners, overlaps=overlaps)
            log(f"run {i + 1}: saved cards {saved[-1]['rps']:.0f}/s p99 {saved[-1]['p99_ms']:.1f} ms; "
                f"guests {free[-1]['rps']:.0f}/s p99 {free[-1]['p99_ms']:.1f} ms; pgbench {ceiling[-1]:.0f} tps; "
                f"fight {fight[-1]['rps']:.0f}/s, {winners} winners of 40 windows, {overlaps} overlaps")
        rss = server.peak_rss_mb()
    finally:
        server.stop()
        stripe.terminate()
        smtp.terminate()
        smtp.wait()
    print(json.dumps({
        "saved_card_bookings_per_s": median(saved, "rps"),
        "saved_card_p50_ms": median(saved, "p50_ms"),
        "saved_card_p99_ms": median(saved, "p99_ms"),
        "saved_card_non_2xx": sum(r["non_2xx"] for r in saved),
        "free_bookings_per_s": median(free, "rps"),
        "free_p50_ms": median(free, "p50_ms"),
        "free_p99_ms": median(free, "p99_ms"),
        "free_non_2xx": sum(r["non_2xx"] for r in free),
        "pgbench_insert_tps": statistics.median(ceiling),
        "fight_requests_per_s": median(fight, "rps"),
        "fight_p99_ms": median(fight, "p99_ms"),
        "fight_winners_per_run": [r["winners"] for r in fight],
        "fight_overlaps": sum(r["overlaps"] for r in fight),
        "peak_rss_mb": rss,
    }, indent=2))


def percentile_sql(database_url, expression, where):
    out = run(["psql", database_url, "-qtAc",
               f"select percentile_cont(0.5) within group (order by {expression}), "
               f"percentile_cont(0.99) within group (order by {expression}), max({expression}), count(*) "
               f"from reservations where {where}"])
    p50, p99, worst, count = out.strip().split("|")
    return float(p50 or 0), float(p99 or 0), float(worst or 0), int(count)


def patch_all(requests):
    """PATCHes every (path, token, body) with 32 threads; returns the statuses."""
    from concurrent.futures import ThreadPoolExecutor

    def patch(item):
        path, token, body = item
        request = urllib.request.Request(BASE + path, data=json.dumps(body).encode(), method="PATCH",
                                         headers={"content-type": "application/json", "authorization": f"Bearer {token}"})
        try:
            return urllib.request.urlopen(request, timeout=30).status
        except urllib.error.HTTPError as error:
            return error.code

    with ThreadPoolExecutor(32) as pool:
        return list(pool.map(patch, requests))


ENDINGS = 10_000


def seed_endings(binary, database_url):
    """One card saved through the API, then ENDINGS confirmed reservations on distinct spots
    that use it, each with a guest token the benchmark knows."""
    import hashlib
    spot = run(["psql", database_url, "-qtAc", "select id from spots order by id limit 1"]).strip()
    request = urllib.request.Request(BASE + "/v1/reservations", method="POST", headers={"content-type": "application/json"},
                                     data=json.dumps({"spot_id": spot, "duration_minutes": 30, "email": "seed@example.com"}).encode())
    booked = json.load(urllib.request.urlopen(request, timeout=10))
    secret = booked["payment"]["client_secret"]
    setup_id = secret.split("_secret_")[0]
    confirm = urllib.request.Request(f"http://127.0.0.1:{STRIPE_PORT}/v1/setup_intents/{setup_id}/confirm", method="POST",
                                     data=b"payment_method=pm_card_visa", headers={"authorization": "Bearer sk_test_bench"})
    urllib.request.urlopen(confirm, timeout=10)
    urllib.request.urlopen(urllib.request.Request(f"{BASE}/v1/reservations/{booked['reservation']['id']}/confirm", method="POST",
                                                  headers={"authorization": f"Bearer {booked['guest_token']}"}), timeout=10)
    rows = tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False)
    tokens = []
    for i in range(ENDINGS):
        token = f"cg_bench_{i}"
        tokens.append(token)
        rows.write(f"{i},\\x{hashlib.sha256(token.encode()).hexdigest()}\n")
    rows.close()
    run(["psql", database_url, "-q", "-v", "ON_ERROR_STOP=1"], input=f"""
        create temp table seed (n int, token_hash bytea);
        \\copy seed from '{rows.name}' csv
        insert into reservations (id, spot_id, email, starts_at, ends_at, status, payment_status, rate_cents_per_hour,
                                  amount_cents, version, guest_token_hash, stripe_customer_id, stripe_payment_method_id)
        select gen_random_uuid(), s.id, 'bench' || seed.n || '@example.com', now(), now() + interval '30 minutes',
               'confirmed', 'card_saved', 450, 225, 2, seed.token_hash, r.stripe_customer_id, r.stripe_payment_method_id
        from seed
        join (select id, row_number() over (order by id) as n from spots where id <> '{spot}') s on s.n = seed.n + 1
        cross join (select stripe_customer_id, stripe_payment_method_id from reservations where status = 'confirmed') r;
    """)
    # Statistics, as autovacuum would gather on a live database (it is off on this machine
    # kind's PostgreSQL): without them the search's cached generic plan probed availability
    # through the exclusion constraint's GiST index, several times slower.
    run(["psql", database_url, "-qc", "vacuum analyze"])
    ids = run(["psql", database_url, "-qtAc", "select id, email from reservations where email like 'bench%' order by email"]).split()
    by_n = {}
    for line in ids:
        rid, email = line.split("|")
        by_n[int(email[5:].split("@")[0])] = rid
    return [(by_n[i], tokens[i]) for i in range(ENDINGS)]


def bench_endings(args, admin_url, redis_url, binary):
    results = {}
    for mode in ["in_process", "separate_worker"]:
        database_url = fresh_database(admin_url, f"curbside_bench_endings_{mode}")
        run([binary, "migrate"], env=dict(os.environ, DATABASE_URL=database_url, RUST_LOG="warn"))
        import_nyc(binary, database_url)
        stripe = subprocess.Popen([release_binary("fake-stripe"), "--bind", f"127.0.0.1:{STRIPE_PORT}", "--webhook-url",
                                   f"{BASE}/v1/webhooks/stripe", "--webhook-secret", "whsec_bench"],
                                  env=dict(os.environ, RUST_LOG="warn"), stdout=subprocess.DEVNULL)
        env = {"STRIPE_API_BASE": f"http://127.0.0.1:{STRIPE_PORT}/", "STRIPE_SECRET_KEY": "sk_test_bench",
               "STRIPE_WEBHOOK_SECRET": "whsec_bench", "SMTP_URL": f"smtp://127.0.0.1:{SMTP_PORT}",
               "REDIS_KEY_PREFIX": f"bench-endings-{mode}-{os.getpid()}"}
        # A mail server that accepts and discards (Python's own), so receipts are really sent.
        smtp = subprocess.Popen([sys.executable, "-W", "ignore", "-m", "smtpd", "-n", "-c", "DebuggingServer",
                                 f"127.0.0.1:{SMTP_PORT}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = Server(binary, database_url, redis_url, env)
        worker = None
        try:
            if mode == "separate_worker":
                server.stop()
                server = Server(binary, database_url, redis_url, env, serve_args=["--no-worker"])
                worker_env = dict(os.environ, DATABASE_URL=database_url + "?sslmode=disable", REDIS_URL=redis_url,
                                  RUST_LOG="warn", **env)
                worker = subprocess.Popen([binary, "worker"], env=worker_env, stdout=subprocess.DEVNULL)
            bookings = seed_endings(binary, database_url)
            log(f"{mode}: {len(bookings)} reservations seeded; scheduling their ends")
            first_end = time.time() + 75
            patches = []
            for i, (rid, token) in enumerate(bookings):
                ends_at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(first_end + i % 60)) + f".{(i * 7919) % 1000:03d}Z"
                patches.append((f"/v1/reservations/{rid}", token, {"ends_at": ends_at}))
            statuses = patch_all(patches)
            assert all(s == 200 for s in statuses), f"PATCH failures: {[s for s in statuses if s != 200][:5]}"
            # What autovacuum would have done after 10,000 updates (it is off here; nothing
            # vacuums during the burst), then the baseline: the same search over the same
            # reservations, just before the burst.
            run(["psql", database_url, "-qc", "vacuum analyze reservations"])
            before = wrk_result(wrk(SEARCH_PATH, 50, 10))
            wait = first_end - time.time()
            assert wait > 0, "scheduling took longer than the lead time"
            time.sleep(wait)
            search = wrk(SEARCH_PATH, 50, 60)
            deadline = time.time() + 600
            while time.time() < deadline:
                done = int(run(["psql", database_url, "-qtAc",
                                "select count(*) from reservations where email like 'bench%' and payment_status = 'paid'"]).strip())
                if done == ENDINGS:
                    break
                time.sleep(1)
            search_result = wrk_result(search)
            lateness = percentile_sql(database_url, "extract(epoch from completed_at - ends_at)", "email like 'bench%'")
            span = run(["psql", database_url, "-qtAc",
                        "select extract(epoch from max(updated_at) - min(completed_at)) from reservations "
                        "where email like 'bench%' and payment_status = 'paid'"]).strip()
            charges = int(run(["psql", database_url, "-qtAc",
                               "select count(*) from reservations where email like 'bench%' and payment_status = 'paid'"]).strip())
            results[mode] = {
                "completed": lateness[3],
                "paid": charges,
                "lateness_p50_s": lateness[0],
                "lateness_p99_s": lateness[1],
                "lateness_max_s": lateness[2],
                "charges_per_s": charges / float(span) if span else None,
                "search_before_rps": before["rps"],
                "search_before_p99_ms": before["p99_ms"],
                "search_during_rps": search_result["rps"],
                "search_during_p99_ms": search_result["p99_ms"],
                "server_peak_rss_mb": server.peak_rss_mb(),
                "worker_peak_rss_mb": peak_rss_mb(worker.pid) if worker else None,
            }
            log(f"{mode}: {results[mode]}")
        finally:
            if worker:
                worker.terminate()
                worker.wait()
            server.stop()
            stripe.terminate()
            stripe.wait()
            smtp.terminate()
            smtp.wait()
    print(json.dumps(results, indent=2))


# The plain PostGIS nearest-neighbour query: the 50 nearest spots with their columns, no
# radius, no availability, no paging. What the picture of the curb is measured against.
KNN_SQL = ("select id, meter_number, lat, lng, borough, street, side, from_street, to_street, facility, rule, "
           "max_stay_minutes, rate_cents_per_hour, currency, active, "
           "geog <-> st_setsrid(st_makepoint(:lng, :lat), 4326)::geography as distance_m "
           "from spots order by geog <-> st_setsrid(st_makepoint(:lng, :lat), 4326)::geography limit 50")

STREAM_LIMITS = {"MAX_STREAMS": "15000", "MAX_STREAMS_PER_CLIENT": "15000", "MAX_CONNECTIONS": "19000"}


def percentiles(values):
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return {"p50": round(pick(0.50), 2), "p99": round(pick(0.99), 2), "max": round(ordered[-1], 2), "n": len(ordered)}


def curb_search(args, database_url, redis_url, binary, label):
    """GET /v1/spots from the picture against pgbench's plain nearest-neighbour query."""
    started = time.monotonic()
    server = Server(binary, database_url, redis_url, STREAM_LIMITS)
    try:
        server.wait_for_picture()
        load_s = time.monotonic() - started
        rss_loaded = server.rss_mb()
        api, ceiling = [], []
        for i in range(args.runs):
            ceiling.append(pgbench(database_url, args.seconds, KNN_SQL))
            api.append(wrk_result(wrk(SEARCH_PATH, 50, args.seconds)))
            log(f"{label} run {i + 1}: api {api[-1]['rps']:.0f} req/s p99 {api[-1]['p99_ms']:.2f} ms, "
                f"pgbench knn {ceiling[-1]:.0f} tps")
        spots = server.metric("curbside_curb_spots")
        rss_peak = server.peak_rss_mb()
    finally:
        server.stop()
    return {
        "spots": int(spots),
        "start_until_picture_current_s": round(load_s, 2),
        **api_summary(api),
        "pgbench_knn_tps": statistics.median(ceiling),
        "ratio": median(api, "rps") / statistics.median(ceiling),
        "rss_after_load_mb": round(rss_loaded, 1),
        "peak_rss_mb": round(rss_peak, 1),
    }


class StreamReader(threading.Thread):
    """One SSE stream read on a thread: when each spot's `spot` event arrived."""

    def __init__(self, base, query):
        super().__init__(daemon=True)
        host, port = base.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)))
        self.sock.sendall(f"GET /v1/spots/events?{query} HTTP/1.1\r\nhost: {host}\r\n\r\n".encode())
        self.arrived = {}
        self.snapshot = threading.Event()
        self.start()

    def run(self):
        buffer = b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return
            now = time.monotonic()
            buffer += chunk
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                if b"event: snapshot" in block:
                    self.snapshot.set()
                elif b"event: spot" in block:
                    spot = re.search(rb'"id":"([0-9a-f-]{36})"', block).group(1).decode()
                    self.arrived.setdefault(spot, now)


def search_shows_taken(base, spot):
    """Polls the replica's search until it shows `spot` taken; when it first did."""
    path = f"/v1/spots?lat={spot['lat']}&lng={spot['lng']}&radius=0.001&available=false"
    while True:
        with urllib.request.urlopen(base + path, timeout=5) as response:
            if any(item["id"] == spot["id"] for item in json.loads(response.read())["items"]):
                return time.monotonic()


def curb_staleness(args, database_url, redis_url, binary, stripe_env):
    """Bookings through replica A (one at a time, while wrk searches replica B): how long
    until B's search and a stream held on B show each one."""
    one = Server(binary, database_url, redis_url, {**stripe_env, **STREAM_LIMITS})
    two = Server(binary, database_url, redis_url, {**stripe_env, **STREAM_LIMITS}, port=PORT + 1)
    try:
        one.wait_for_picture()
        two.wait_for_picture()
        around = f"lat={TIMES_SQUARE[0]}&lng={TIMES_SQUARE[1]}&radius=1&available=true&limit=200"
        with urllib.request.urlopen(two.base + "/v1/spots?" + around, timeout=5) as response:
            spots = json.loads(response.read())["items"]
        stream = StreamReader(two.base, f"lat={TIMES_SQUARE[0]}&lng={TIMES_SQUARE[1]}&radius=1")
        stream.snapshot.wait(10)
        load = subprocess.Popen(["wrk", "-t2", "-c50", f"-d{args.seconds * 3}s", two.base + SEARCH_PATH],
                                stdout=subprocess.DEVNULL)
        time.sleep(1)
        to_search, to_stream, from_send = [], [], []
        for spot in spots[:150]:
            sent = time.monotonic()
            call("POST", one.base + "/v1/reservations",
                 {"spot_id": spot["id"], "duration_minutes": 30, "email": "stale@bench.example"})
            answered = time.monotonic()
            searched = search_shows_taken(two.base, spot)
            while spot["id"] not in stream.arrived:
                time.sleep(0.0005)
            streamed = stream.arrived[spot["id"]]
            to_search.append((searched - answered) * 1000)
            to_stream.append((streamed - answered) * 1000)
            from_send.append((max(searched, streamed) - sent) * 1000)
        load.wait()
    finally:
        one.stop()
        two.stop()
    return {
        "booking_answered_to_other_replicas_search_ms": percentiles(to_search),
        "booking_answered_to_other_replicas_stream_ms": percentiles(to_stream),
        "booking_sent_to_both_ms": percentiles(from_send),
    }


async def open_streams(base, centres, radius_km):
    """Opens a stream per centre; returns, per stream, the spot ids of its snapshot and a
    dict that fills with when each spot's event arrived."""
    host, port = base.removeprefix("http://").split(":")
    streams = [None] * len(centres)

    async def one(n, lat, lng):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET /v1/spots/events?lat={lat}&lng={lng}&radius={radius_km} HTTP/1.1\r\nhost: {host}\r\n\r\n".encode())
        await writer.drain()
        arrived, buffer, snapshot = {}, b"", None
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            now = time.monotonic()
            buffer += chunk
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                if snapshot is None and b"event: snapshot" in block:
                    snapshot = set(re.findall(rb'"id":"([0-9a-f-]{36})"', block))
                    streams[n] = (snapshot, arrived)
                elif b"event: spot" in block:
                    arrived.setdefault(re.search(rb'"id":"([0-9a-f-]{36})"', block).group(1), now)

    tasks = []
    for n, (lat, lng) in enumerate(centres):
        tasks.append(asyncio.create_task(one(n, lat, lng)))
        if n % 200 == 199:
            await asyncio.sleep(0.05)
    return streams, tasks


async def curb_fanout_async(server, spots, count):
    most_descriptors()
    rss_before = server.rss_mb()
    centres = [(spot["lat"], spot["lng"]) for spot in spots[:count]]
    streams, tasks = await open_streams(server.base, centres, 0.2)
    started = time.monotonic()
    while sum(stream is not None for stream in streams) < count:
        if time.monotonic() - started > 300:
            raise RuntimeError(f"only {sum(s is not None for s in streams)} streams opened")
        await asyncio.sleep(0.2)
    opened_s = time.monotonic() - started
    await asyncio.sleep(2)
    rss_open = server.rss_mb()
    open_count = server.metric("curbside_streams_open")
    watched = {}
    for snapshot, arrived in streams:
        for spot in snapshot:
            watched.setdefault(spot, []).append(arrived)
    targets = sorted(watched, key=lambda spot: -len(watched[spot]))[:60]
    last, each, last_from_sent = [], [], []
    loop = asyncio.get_running_loop()
    for spot in targets:
        body = {"spot_id": spot.decode(), "duration_minutes": 30, "email": "fanout@bench.example"}
        sent = time.monotonic()
        await loop.run_in_executor(None, call, "POST", server.base + "/v1/reservations", body)
        answered = time.monotonic()
        concerned = watched[spot]
        deadline = answered + 10
        while any(spot not in arrived for arrived in concerned) and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        missing = sum(spot not in arrived for arrived in concerned)
        if missing:
            raise RuntimeError(f"{missing} of {len(concerned)} streams never heard of a booking")
        delays = [(arrived[spot] - answered) * 1000 for arrived in concerned]
        each.extend(delays)
        last.append(max(delays))
        last_from_sent.append(max(arrived[spot] - sent for arrived in concerned) * 1000)
        await asyncio.sleep(0.2)
    for task in tasks:
        task.cancel()
    return {
        "streams": int(open_count),
        "opening_all_s": round(opened_s, 1),
        "rss_before_mb": round(rss_before, 1),
        "rss_with_streams_mb": round(rss_open, 1),
        "kib_per_stream": round((rss_open - rss_before) * 1024 / count, 1),
        "streams_per_booking": percentiles([len(watched[spot]) for spot in targets]),
        "booking_answered_to_last_concerned_stream_ms": percentiles(last),
        "booking_answered_to_each_concerned_stream_ms": percentiles(each),
        "booking_sent_to_last_concerned_stream_ms": percentiles(last_from_sent),
    }


def curb_fanout(args, database_url, redis_url, binary, stripe_env, count=10_000):
    """10,000 streams of 200 m circles around random spots; bookings of the spots most
    watched: from each booking's answer to the last concerned stream's event."""
    server = Server(binary, database_url, redis_url, {**stripe_env, **STREAM_LIMITS})
    try:
        server.wait_for_picture()
        ids = run(["psql", database_url, "-qtAc",
                   f"select id || ',' || lat || ',' || lng from spots order by md5(id::text) limit {count}"]).split()
        spots = [dict(zip(["id", "lat", "lng"], row.split(","))) for row in ids]
        return asyncio.run(curb_fanout_async(server, spots, count))
    finally:
        server.stop()


def bench_curb(args, admin_url, redis_url, binary):
    results = {}
    sizes = SEARCH_SIZES if args.only in (None, "search") else []
    for label, synthetic in sizes:
        database_url = spots_database(binary, admin_url, f"curbside_bench_curb_{label}", synthetic)
        results[f"search_{label}"] = curb_search(args, database_url, redis_url, binary, label)
        log(f"search {label}: {results[f'search_{label}']}")
    database_url = spots_database(binary, admin_url, "curbside_bench_curb_live")
    stripe, stripe_env = start_stripe()
    stripe_env["MAIL_DIR"] = tempfile.mkdtemp(prefix="bench-mail-")
    try:
        if args.only in (None, "staleness"):
            results["staleness"] = curb_staleness(args, database_url, redis_url, binary, stripe_env)
            log(f"staleness: {results['staleness']}")
        if args.only in (None, "fanout"):
            results["fanout"] = curb_fanout(args, database_url, redis_url, binary, stripe_env)
    finally:
        stripe.terminate()
    print(json.dumps(results, indent=2))


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmHWM:\s+(\d+) kB", status.read()).group(1)) / 1024


def main():
    # Everything runs on one host: PostgreSQL over loopback without TLS, for the server,
    # pgbench and psql alike (as on a compose network).
    os.environ["PGSSLMODE"] = "disable"
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", choices=["auth", "search", "booking", "endings", "curb"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--only", choices=["search", "staleness", "fanout"],
                        help="curb: one of its three parts")
    args = parser.parse_args()
    ensure_tools()
    admin_url, redis_url = services_env()
    binary = build()
    {"auth": bench_auth, "search": bench_search, "booking": bench_booking, "endings": bench_endings,
     "curb": bench_curb}[args.workload](
        args, admin_url, redis_url, binary)


if __name__ == "__main__":
    main()
