"""The fault matrix (issue #5): run every injected fault on the rehearsal stack, print the table.

Runs the tests in tests/faults/ (each injects one real fault and judges the deploy from the
world read back: aliases from AWS, the ledger record, the user-visible error), then prints
fault | boundary | caught at | outcome | alias after | ledger | seconds, and as its last line:
RESULT {"faults": declared rows, "ran", "contained", "stranded", "stranded_s_median",
"stranded_s_max", "lost_records", "secrets_found", "secret_controls_planted",
"secret_controls_found", "valid"}

Run with `make bench` or `.venv/bin/python bench/faults.py [-k EXPR]` (the stack must be up).
Exit code: 0 when the RESULT is valid (every declared row ran, the secret sweep found every
planted control), every row is contained (none stranded beyond STRANDED_LIMIT_S), no record is
lost and no secret found.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from gangway.config import REPO_ROOT, apply_env_file
from rehearsal import fault_matrix


def main(argv: list[str] | None = None) -> int:
    """Run the matrix and print it."""
    parser = argparse.ArgumentParser(prog="bench/faults.py")
    parser.add_argument("-k", default="", help="only the rows whose test matches (pytest -k)")
    args = parser.parse_args(argv)
    apply_env_file()
    started = time.monotonic()
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/faults"]
    if args.k:
        command += ["-k", args.k]
    tests = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    declared = fault_matrix.declared()
    rows = fault_matrix.complete(declared, fault_matrix.load())
    sweep = fault_matrix.load_sweep()
    summary = [line for line in tests.stdout.splitlines() if " passed" in line or " failed" in line]
    print(f"fault matrix: {len(declared)} rows declared, {time.monotonic() - started:.0f}s "
          f"({summary[-1].strip('= ') if summary else 'no pytest summary'})")
    if tests.returncode != 0:
        failed = [line for line in tests.stdout.splitlines() if line.startswith("FAILED")]
        print("\n".join(failed) or tests.stdout[-3000:])
    print(fault_matrix.render_table(rows))
    stranded = fault_matrix.stranded_names(rows)
    if stranded:
        print(f"stranded (traffic left moved beyond {fault_matrix.STRANDED_LIMIT_S:.0f}s): "
              + "; ".join(stranded))
    figures = fault_matrix.result(declared, rows, sweep)
    print(fault_matrix.result_line(declared, rows, sweep))
    return 0 if fault_matrix.clean(figures) and tests.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
