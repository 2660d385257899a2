#!/usr/bin/env bash
# The first Let's Encrypt certificate for the deployment of docker-compose.deploy.yml.
#
#   nginx/init-letsencrypt.sh [--staging] [--force] [--domain api.example.com] [--email you@example.com]
#
# Nginx cannot start without the certificate its configuration names, and Let's Encrypt
# cannot issue one without Nginx serving the HTTP-01 challenge on port 80. So: a throwaway
# self-signed certificate lets Nginx start; it is deleted; Certbot asks for the real one
# through the webroot Nginx serves; Nginx reloads. Renewal is automatic afterwards (the
# certbot service), so this runs once per host name.
#
# The domain and email default to SERVER_NAME and CERTBOT_EMAIL in .env. The DNS record of
# the domain must point at this machine and port 80 must be open. --staging asks Let's
# Encrypt's staging service (untrusted certificates, generous rate limits) to rehearse;
# run again with --force and without --staging for the real one. COMPOSE overrides the
# Compose command (default `docker compose`).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '4p' "$0" | sed 's/^#   /usage: /' >&2; exit 2; }
die() { echo "init-letsencrypt: $*" >&2; exit 1; }
log() { echo "init-letsencrypt: $*" >&2; }

staging=false
force=false
domain=""
email=""
while [ $# -gt 0 ]; do
    case "$1" in
        --staging) staging=true ;;
        --force) force=true ;;
        --domain) [ $# -ge 2 ] || usage; domain=$2; shift ;;
        --email) [ $# -ge 2 ] || usage; email=$2; shift ;;
        -h | --help) usage ;;
        *) echo "init-letsencrypt: unknown argument $1" >&2; usage ;;
    esac
    shift
done

[ -f .env ] || die "no .env beside docker-compose.deploy.yml; copy .env.example and fill it in first"
# The last assignment of a variable in .env, without surrounding quotes.
env_value() {
    sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" .env | tail -n 1 \
        | sed -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'$/\1/"
}
domain=${domain:-$(env_value SERVER_NAME)}
email=${email:-$(env_value CERTBOT_EMAIL)}
[ -n "$domain" ] || die "set SERVER_NAME (the API's host name) in .env, or pass --domain"
[ -n "$email" ] || die "set CERTBOT_EMAIL (Let's Encrypt's expiry notices) in .env, or pass --email"
case "$domain" in
    *[!A-Za-z0-9.-]* | "" | .* | *..*) die "'$domain' is not a host name" ;;
esac

read -r -a compose <<<"${COMPOSE:-docker compose}"
compose+=(-f docker-compose.deploy.yml)
live=/etc/letsencrypt/live/$domain

# Runs a shell command in a one-off certbot container (which has the letsencrypt volume).
in_certbot() { "${compose[@]}" run --rm --no-deps --entrypoint /bin/sh certbot -c "$1"; }

dummy_certificate() {
    log "creating a throwaway self-signed certificate for $domain"
    in_certbot "rm -rf '$live' '/etc/letsencrypt/archive/$domain' '/etc/letsencrypt/renewal/$domain.conf' \
        && mkdir -p '$live' \
        && openssl req -x509 -nodes -newkey rsa:2048 -days 1 -subj '/CN=localhost' \
            -keyout '$live/privkey.pem' -out '$live/fullchain.pem' 2>/dev/null"
}

if in_certbot "test -f '/etc/letsencrypt/renewal/$domain.conf'" && ! $force; then
    log "Certbot already manages a certificate for $domain, and renews it by itself."
    log "Run with --force to replace it (e.g. a staging certificate by a real one)."
    exit 0
fi

dummy_certificate

log "starting Nginx"
"${compose[@]}" up -d --no-deps nginx
ready=false
for _ in $(seq 60); do
    if "${compose[@]}" exec -T nginx bash -c 'exec 3<>/dev/tcp/127.0.0.1/80' 2>/dev/null; then
        ready=true
        break
    fi
    sleep 0.5
done
$ready || die "Nginx did not start within 30 s; see: ${compose[*]} logs nginx"
# A running Nginx keeps the dummy loaded; reloading it now also covers a second run.
"${compose[@]}" exec -T nginx nginx -s reload

log "deleting the throwaway certificate"
in_certbot "rm -rf '$live' '/etc/letsencrypt/archive/$domain' '/etc/letsencrypt/renewal/$domain.conf'"

certbot_args=(certonly --webroot -w /var/www/certbot -d "$domain" --email "$email"
    --agree-tos --no-eff-email --non-interactive)
if $staging; then
    certbot_args+=(--staging)
    log "asking Let's Encrypt's STAGING service for a certificate for $domain"
else
    log "asking Let's Encrypt for a certificate for $domain"
fi
if ! "${compose[@]}" run --rm --no-deps --entrypoint certbot certbot "${certbot_args[@]}"; then
    # Put the dummy back, so that Nginx can still (re)start while the cause is fixed.
    dummy_certificate
    "${compose[@]}" exec -T nginx nginx -s reload
    die "Certbot failed: check that $domain resolves to this machine and that port 80 is open"
fi

log "reloading Nginx with the new certificate"
"${compose[@]}" exec -T nginx nginx -s reload
log "done: https://$domain/healthz should answer now; Certbot renews the certificate by itself."
