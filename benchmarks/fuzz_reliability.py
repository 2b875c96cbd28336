"""Run the reliability fuzz at scale and print the counts table of docs/reliability.md.

    PYTHONPATH=. .venv/bin/python benchmarks/fuzz_reliability.py                 # default sample
    PYTHONPATH=. .venv/bin/python benchmarks/fuzz_reliability.py --all           # every case
    PYTHONPATH=. .venv/bin/python benchmarks/fuzz_reliability.py --only ID       # rerun one case

The cases, outcomes and their definitions live in ``tests/fuzz/harness.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzz.harness import (  # noqa: E402 - after the path fix above
    CATEGORIES,
    FAILURES,
    Fixtures,
    Runner,
    all_cases,
    counts_table,
    failure_report,
    sample_cases,
)

#: Cases per category of a default run (thousands in all; CLI subprocesses are the slow ones).
DEFAULT_COUNTS = {"audio-api": 1200, "model-regression": 800, "model-diffusion": 800,
                  "model-a2e": 400, "options-api": 500, "options-cli": 250, "cli": 60}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--all", action="store_true", help="every enumerated case")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the default counts")
    parser.add_argument("--category", action="append", choices=CATEGORIES, help="only these")
    parser.add_argument("--only", action="append", metavar="ID", help="rerun these case ids")
    parser.add_argument("--timeout", type=float, default=60.0, help="per in-process case (s)")
    parser.add_argument("--cli-timeout", type=float, default=150.0, help="per CLI case (s)")
    parser.add_argument("--jsonl", type=Path, help="also write every outcome here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="a2x-fuzz-fixtures-") as root:
        fixtures = Fixtures(Path(root)).build()
        everything = all_cases(fixtures)
        categories = args.category or list(CATEGORIES)
        if args.only:
            by_id = {c.ident: c for cases in everything.values() for c in cases}
            unknown = [i for i in args.only if i not in by_id]
            if unknown:
                parser.error(f"unknown case id(s): {', '.join(unknown)}")
            cases = [by_id[i] for i in args.only]
        else:
            scale = 10**9 if args.all else args.scale
            counts = {c: int(DEFAULT_COUNTS[c] * scale) for c in categories}
            cases = sample_cases(fixtures, counts, args.seed)
        print(f"{len(cases)} cases, seed {args.seed}", file=sys.stderr)
        out = args.jsonl.open("w") if args.jsonl else None

        def report(outcome):  # noqa: ANN001 - a callback
            if out is not None:
                row = {"id": outcome.case.ident, "outcome": outcome.outcome,
                       "detail": outcome.detail, "seconds": round(outcome.seconds, 3)}
                out.write(json.dumps(row) + "\n")
            if outcome.outcome in FAILURES or args.only:
                print(f"{outcome.outcome:8s} {outcome.case.ident}\n         {outcome.detail}",
                      file=sys.stderr, flush=True)

        with Runner(fixtures, timeout_s=args.timeout, cli_timeout_s=args.cli_timeout) as runner:
            outcomes = runner.run_all(cases, report)
        if out is not None:
            out.close()
    print(counts_table(outcomes))
    if not args.only:
        print("\nfailures:\n" + (failure_report(outcomes) or "none"))
    return 1 if any(o.outcome in FAILURES for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
