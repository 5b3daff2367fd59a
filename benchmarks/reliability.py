"""Run the reliability campaign (issue 14) and print its counts as a Markdown table.

    python benchmarks/reliability.py [--examples N] [--json FILE]

Runs the fuzz, fault, GUI-fault and load tests (tests/e2e/test_fuzz_inputs.py,
tests/e2e/test_faults.py, tests/widgets/test_gui_faults.py, tests/io/test_load.py) with
pytest; each case records its outcome (clear error, accepted, crash, hang, partial file,
code execution; ``tests/helpers.record_case``). The GUI tests run under ``xvfb-run``
when there is no display. ``--examples`` sets the generated cases per fuzz strategy
(N2S_FUZZ_EXAMPLES; the test suite's default is 25).
Exits with pytest's status.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/e2e/test_fuzz_inputs.py", "tests/e2e/test_faults.py",
         "tests/widgets/test_gui_faults.py", "tests/io/test_load.py"]
BAD = ("crash", "hang", "partial file", "code execution")
COLUMNS = ("clear error", "accepted", *BAD)


def table(counts: dict[str, dict[str, int]]) -> str:
    """The counts per category, with a total row."""
    head = "| what was tried | cases | " + " | ".join(COLUMNS) + " |"
    rows = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    totals = dict.fromkeys(COLUMNS, 0)
    for name in sorted(counts):
        row = counts[name]
        for c in COLUMNS:
            totals[c] += row.get(c, 0)
        rows.append(f"| {name} | {sum(row.values())} | "
                    + " | ".join(str(row.get(c, 0)) for c in COLUMNS) + " |")
    rows.append(f"| **all** | **{sum(totals.values())}** | "
                + " | ".join(f"**{totals[c]}**" for c in COLUMNS) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=25,
                        help="generated cases per fuzz strategy (default: 25)")
    parser.add_argument("--json", type=Path, help="also write the counts here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "campaign.json"
        env = {**os.environ, "N2S_FUZZ_EXAMPLES": str(args.examples),
               "N2S_CAMPAIGN_REPORT": str(report), "PYTHONPATH": os.pathsep.join(
                   [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        command = [sys.executable, "-m", "pytest", *TESTS, "-q", "-p", "no:warnings",
                   "-p", "no:cacheprovider"]
        if not os.environ.get("DISPLAY") and shutil.which("xvfb-run"):
            command = ["xvfb-run", "-a", *command]
        start = time.perf_counter()
        status = subprocess.run(command, cwd=ROOT, env=env).returncode
        seconds = time.perf_counter() - start
        counts = json.loads(report.read_text()) if report.exists() else {}
    bad_inputs = sum(sum(row.values()) for name, row in counts.items()
                     if name.split(":")[0] in ("mutated bytes", "random bytes",
                                               "huge claimed size", "odd contents",
                                               "unicode path", "mutated model file",
                                               "damaged model payload", "pickle payload"))
    print(table(counts))
    print(f"\n{bad_inputs} generated bad inputs; {len(counts)} categories; pytest exit "
          f"{status}; {seconds:.0f} s ({args.examples} examples per fuzz strategy)")
    if args.json:
        args.json.write_text(json.dumps(counts, indent=1, sort_keys=True))
    return status


if __name__ == "__main__":
    sys.exit(main())
