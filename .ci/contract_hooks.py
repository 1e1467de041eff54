"""schemathesis hooks for .ci/contract.

A long poll (`GET /events?wait=N`) is held up to N seconds (at most 30) by design when no event
follows; the contract run caps `wait` at 1 s so generated long polls do not hit the client's
read timeout. The parameter's parsing and bounds are still exercised (30 < N and non-numbers
get 400 at once).
"""
import schemathesis


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if case.query and "wait" in case.query:
        try:
            if 1 < int(case.query["wait"]) <= 30:
                case.query["wait"] = 1
        except (TypeError, ValueError):
            pass
