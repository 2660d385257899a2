#!/bin/sh
# Run by the nginx image's entrypoint before Nginx starts (mounted into /docker-entrypoint.d/):
# leaves a loop behind that reloads Nginx every 6 hours, so certificates Certbot renewed are
# picked up without cron on the host or a Docker socket in the Certbot container. A reload
# re-reads the files and replaces the workers gracefully; no request is dropped. A reload
# that fails (say, a broken certificate) keeps the running configuration and is logged.
set -eu
(
    while :; do
        sleep 6h
        nginx -s reload || echo "$0: nginx -s reload failed; still serving the previous configuration" >&2
    done
) </dev/null &
echo "$0: reloading Nginx every 6 hours to pick up renewed certificates"
