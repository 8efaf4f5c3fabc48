"""Schemathesis over every operation in the app's own /openapi.json: no input, from any
role or from nobody, may get a server error (a 500, or an exception out of the app).

The operations come from the schema the app publishes, so routes added later (arena,
submissions, objections) are fuzzed without touching this file. Examples are bounded and
derandomised (the same cases every run); ``KAI_FUZZ_EXAMPLES`` raises the count locally.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from web_helpers import PATH_VALUES, Web  # type: ignore[import-not-found]

from kaieval.web import committee as cm
from kaieval.web.accounts import PUBLIC
from kaieval.web.security import Allow

EXAMPLES = int(os.environ.get("KAI_FUZZ_EXAMPLES", "8"))
REFUSED_EXAMPLES = 2  # a caller whose role the route refuses stops at 401/403: a few suffice
CALLERS = {None: PUBLIC, "office": "admin", "kim": "expert", "user1": "user",
           "alpha-team": "team"}  # anonymous, then one account of each role
REAL_PATH = PATH_VALUES
"""Path parameters by name, with values that exist in the fixture (kim is assigned to beta)."""


def _operations(web: Web) -> list[Any]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", web.app)
    ops = [result.ok() for result in schema.get_all_operations()]
    assert ops, "the app publishes no operations"
    return ops


def _rules(routes: list[Any]) -> dict[tuple[str, str], frozenset[str]]:
    """(method, path) -> the roles its ``Allow`` rule lets in (routers opened)."""
    out: dict[tuple[str, str], frozenset[str]] = {}
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            out.update(_rules(inner.routes))
        elif isinstance(route, APIRoute):
            deps = [*route.dependant.dependencies,
                    *(d for sub in route.dependant.dependencies for d in sub.dependencies)]
            allow = next(d.call for d in deps if isinstance(d.call, Allow))
            out.update({(m, route.path): allow.roles for m in route.methods})
    return out


def _fuzz(op: Any, headers: dict[str, str], mode: GenerationMode,
          path: dict[str, str] | None, examples: int) -> None:
    strategy = op.as_strategy(generation_mode=mode, path_parameters=path)

    @given(case=strategy)
    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), print_blob=False)
    def run(case: Any) -> None:
        response = case.call(headers=headers)
        case.validate_response(response, checks=[not_a_server_error])

    run()


def _path_values(op: Any) -> dict[str, str] | None:
    """Real values for the operation's path parameters (to reach past the 404s), or None
    when it has none or one this file does not know (then only generated values)."""
    names = [p.name for p in op.iter_parameters() if p.location == "path"]
    if not names or any(n not in REAL_PATH for n in names):
        return None
    return {n: REAL_PATH[n] for n in names}


def test_no_server_errors_for_any_role(web_any: Web) -> None:
    web = web_any
    cm.auto_assign(web.ctx, "s1", per_team=3, actor="office")  # sheets exist to reach
    rules = _rules(web.app.routes)
    failures = []
    for op in _operations(web):
        allowed = rules[(op.method.upper(), op.path)]
        real = _path_values(op)
        passes = [(GenerationMode.POSITIVE, None), (GenerationMode.NEGATIVE, None)]
        if real is not None:
            passes.append((GenerationMode.POSITIVE, real))
        for who, role in CALLERS.items():
            let_in = PUBLIC in allowed or role in allowed
            headers = {} if who is None else {"Authorization": f"Bearer {web.tokens[who]}"}
            for mode, path in passes if let_in else passes[:1]:
                try:
                    _fuzz(op, headers, mode, path, EXAMPLES if let_in else REFUSED_EXAMPLES)
                except Unsatisfiable:  # nothing to make invalid (negative mode)
                    continue
                except Exception as exc:  # collect them all, then fail once with the list
                    first = str(exc).strip().splitlines()[:12]
                    failures.append(f"{op.label} as {who or 'anonymous'} ({mode.value}"
                                    f"{', real path' if path else ''}):\n  "
                                    + "\n  ".join(first))
    assert not failures, "\n".join(failures)


def test_an_assignment_to_no_committee_component_is_refused(web: Web) -> None:
    """Found while fuzzing: the office could assign a component the stage does not have,
    and the evaluator's sheet page then failed with a 500."""
    office, kim = web.client("office"), web.client("kim")
    res = office.post("/api/v1/office/committee/s1/assignments", json={
        "component_id": "bogus", "team_id": "beta", "evaluator": "kim", "action": "add"})
    assert res.status_code == 422 and "no committee component" in res.json()["detail"]
    web.ctx.store.put_objects({"assignment/s1/bogus/beta/kim": {"by": "old"}}, actor="x")
    assert kim.get("/committee/s1/bogus/beta").status_code == 403  # an old one: closed
    assert kim.get("/committee").status_code == 200
