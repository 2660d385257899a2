"""Schemathesis hooks for scripts/check-openapi.sh.

Random UUIDs name no spot and no reservation, so a fuzzer left to itself stops at the
lookups (404, 422 "no such spot") and never reaches the booking rules, the billing or
Stripe behind them. These hooks let about half of the generated requests name objects that
exist instead: the check's spots (New York's meters) and the fuzzing driver's reservations,
listed by the script in CURBSIDE_FUZZ_SPOTS and CURBSIDE_FUZZ_RESERVATIONS
(comma-separated). The choice is drawn through Hypothesis, so a seed replays it and a
failure shrinks as usual.
"""

import os

import schemathesis
from hypothesis import strategies as st


def _ids(variable):
    return [value for value in os.environ.get(variable, "").split(",") if value]


SPOTS = _ids("CURBSIDE_FUZZ_SPOTS")
RESERVATIONS = _ids("CURBSIDE_FUZZ_RESERVATIONS")


def _maybe_known(value, known, replace):
    """The generated value as it is, or with one of the known ids put in."""
    if not known:
        return st.just(value)
    return st.just(value) | st.sampled_from(known).map(lambda id_: replace(value, id_))


@schemathesis.hook
def flatmap_body(context, body):
    if isinstance(body, dict) and "spot_id" in body:
        return _maybe_known(body, SPOTS, lambda b, id_: {**b, "spot_id": id_})
    return st.just(body)


@schemathesis.hook
def flatmap_path_parameters(context, path_parameters):
    path = context.operation.path if context.operation else ""
    if not isinstance(path_parameters, dict) or "id" not in path_parameters:
        return st.just(path_parameters)
    known = SPOTS if path.startswith("/v1/spots/") else RESERVATIONS
    return _maybe_known(path_parameters, known, lambda p, id_: {**p, "id": id_})
