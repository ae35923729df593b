"""Schemathesis against a live server: at least 1,000 requests generated from the OpenAPI schema, no 5xx.

    python benchmarks/serve_fuzz.py [--home /tmp/tagops-serve-bench] [--engine ray] [--min-requests 1000]
                                    [--output benchmarks/results/serve_fuzz.json]

Starts `tagops serve` (Ray Serve by default, the real linear champion) on a free loopback port, loads the
schema from ``/openapi.json`` and draws valid and invalid requests (schemathesis' positive and negative
modes) for every operation, with an admin key so feedback and reload are exercised past authentication.
Counts answers by operation and status; a 5xx is a failure. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from serving_common import DEFAULT_HOME, RESULTS, ensure_models, machine, print_table, serve, write_json
from stamp import stamp

#: Examples per round and operation; operations without inputs yield one example per round.
EXAMPLES = {"POST /v1/predict": 300, "POST /v1/feedback": 150, "POST /v1/admin/reload": 40}


def fuzz_round(
    schema: Any, base_url: str, auth: dict[str, str], statuses: Counter[tuple[str, int]]
) -> list[str]:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode

    server_errors: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        label = operation.label
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
        )

        @given(case=cases)
        @settings(
            max_examples=EXAMPLES.get(label, 5),
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: Any) -> None:
            response = case.call(base_url=base_url, headers=auth, timeout=60)
            statuses[(label, response.status_code)] += 1  # noqa: B023 (runs within this iteration)
            if response.status_code >= 500:
                server_errors.append(f"{label} -> {response.status_code}: {response.text[:300]}")  # noqa: B023

        check()
    return server_errors


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME)
    parser.add_argument("--engine", default="ray", choices=["ray", "uvicorn"])
    parser.add_argument("--min-requests", type=int, default=1000)
    parser.add_argument("--output", type=Path, default=RESULTS / "serve_fuzz.json")
    args = parser.parse_args()

    import schemathesis

    from tagops.config import ServeConfig
    from tagops.predlog.log import PredictionLog
    from tagops.serving.keys import KeyStore
    from tagops.serving.state import ServingState

    versions = ensure_models(args.home)
    workdir = Path(tempfile.mkdtemp(prefix="fuzz-", dir=args.home))
    database = workdir / "predictions.db"
    log = PredictionLog(f"sqlite:///{database}")
    log.create_tables()
    ServingState(log.engine).create_tables()
    _, token = KeyStore(log.engine).create("fuzz", "admin")
    auth = {"Authorization": f"Bearer {token}"}
    config = ServeConfig().model_dump(mode="json", exclude={"database_url"})
    statuses: Counter[tuple[str, int]] = Counter()
    server_errors: list[str] = []
    rounds = 0
    with serve(args.home, args.engine, config, database=database, log=workdir / "server.log") as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        while sum(statuses.values()) < args.min_requests and rounds < 20:
            server_errors += fuzz_round(schema, server.url, auth, statuses)
            rounds += 1
            print(f"round {rounds}: {sum(statuses.values())} requests, {len(server_errors)} 5xx", flush=True)
    rows = [
        {"operation": label, "status": status, "responses": count}
        for (label, status), count in sorted(statuses.items())
    ]
    total = sum(statuses.values())
    print()
    print_table(rows, ["operation", "status", "responses"])
    print(f"\n{total} generated requests, {len(server_errors)} answered 5xx (bar: >= 1000 requests, 0 5xx)")
    write_json(
        args.output,
        {
            "benchmark": "serve_fuzz",
            "engine": args.engine,
            "model_versions": versions,
            "requests": total,
            "server_errors": server_errors,
            "by_operation_and_status": rows,
            "pass": total >= args.min_requests and not server_errors,
            "machine_after": machine(),
            "logs": str(workdir),
            **stamp(),
        },
    )
    print(args.output)


if __name__ == "__main__":
    main()
