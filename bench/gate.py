"""The PR gate on the reference service, warm (build cached), against the seeds' own way.

gangway: `gangway gate --env dev --json` as a CI job runs it (its own process, Prefect
included): build, in-image gate, every environment's configuration contract, the lint of the
added migrations, no push. The seeds' way (bench/baseline.py's first two phases): docker build
of the same service with vendor/ in the context, then one `docker run` per handler importing
it. Both warm: one unmeasured run each first. Prints the medians, the ratio, and last:

RESULT {"gate_s": …, "seeds_s": …, "gate_over_seeds": …, "target_s": 120, "runs": …}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gangway.config import REPO_ROOT, DeployConfig, apply_env_file, load_config

apply_env_file()

from baseline import import_each, prepare_context  # noqa: E402  (a sibling: bench/ is on sys.path)

from tasks.docker_engine import docker_client  # noqa: E402

ENV = "dev"
TARGET_S = 120  # the seeds' target for a PR gate


def gangway_gate() -> float:
    """Seconds of one `gangway gate` process; fails loudly unless it passed."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "cli", "gate", "--env", ENV, "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ),
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"gangway gate failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    json.loads(done.stdout)
    return seconds


def seeds_gate(config: DeployConfig, context: Path) -> float:
    """Seconds of the seeds' gate: docker build (cached), one docker run per handler."""
    engine = docker_client()
    started = time.monotonic()
    image, _ = engine.images.build(
        path=str(context),
        dockerfile=config.service.build.dockerfile,
        tag="gangway-bench/seeds-gate:warm",
        rm=True,
    )
    import_each(engine, image.id, config)
    return time.monotonic() - started


def main() -> int:
    """Measure both ways, print the medians and the RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="measured runs of each (default 5)")
    args = parser.parse_args()
    config = load_config(ENV)
    gate, seeds = [], []
    with tempfile.TemporaryDirectory(prefix="gangway-bench-gate-") as tmp:
        context = prepare_context(config, Path(tmp))
        gangway_gate(), seeds_gate(config, context)  # warm both: caches, image layers
        for _ in range(args.runs):
            gate.append(gangway_gate())
            seeds.append(seeds_gate(config, context))
    gate_s, seeds_s = round(statistics.median(gate), 2), round(statistics.median(seeds), 2)
    print(
        f"PR gate on the reference service ({len(config.functions)} functions), warm, "
        f"{args.runs} runs"
    )
    print(
        f"  gangway gate (build, in-image gate, contract, lint; process + Prefect): "
        f"median {gate_s}s  (runs {', '.join(f'{s:.2f}' for s in gate)})"
    )
    print(
        f"  seeds' way (docker build, one docker run per handler):               "
        f"median {seeds_s}s  (runs {', '.join(f'{s:.2f}' for s in seeds)})"
    )
    print(f"  ratio gangway / seeds = {gate_s / seeds_s:.2f}; target {TARGET_S}s")
    result = {
        "gate_s": gate_s,
        "seeds_s": seeds_s,
        "gate_over_seeds": round(gate_s / seeds_s, 3),
        "target_s": TARGET_S,
        "runs": args.runs,
    }
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
