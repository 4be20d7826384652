"""Deploy benchmarks on the rehearsal stack, measured side by side in one run.

1. Warm deploy of the reference service with no source change: per-step medians and the
   orchestration overhead (wall time minus the sum of the steps' own durations).
2. The in-image gate as ONE container for every handler vs one container per handler, for
   the seven handlers, and the one-container gate for 60 generated handlers vs 7.
3. Trigger → alias verified restored: a deploy whose smoke test fails, timed by the rollback.

Run with `make bench` (the stack must be up). The last line is machine-readable:
RESULT {"warm_deploy_s": …, "overhead_fraction": …, "import_gate_ratio": …,
"import_gate_60_over_7": …, "rollback_s": …}
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gangway.config import REPO_ROOT, DeployConfig, apply_env_file, load_config

apply_env_file()

from flows.deploy import DeployFailed, deploy  # noqa: E402  (Prefect reads the env at import)
from gangway.render import table  # noqa: E402
from tasks.docker_engine import docker_client  # noqa: E402
from tasks.image_build import build_image  # noqa: E402
from tasks.image_gate import run_probe  # noqa: E402
from tasks.ledger import DeployRecord  # noqa: E402
from tasks.source import source_revision  # noqa: E402

ENV = "dev"


def median(values: list[float]) -> float:
    """The median, rounded for printing."""
    return round(statistics.median(values), 3)


def warm_deploys(runs: int) -> tuple[list[float], list[float], dict[str, list[float]]]:
    """(wall seconds, overhead seconds, step → seconds) over runs warm deploys."""
    walls, overheads, per_step = [], [], {}
    deploy(env=ENV)  # warm-up: the image, vendor cache and versions exist afterwards
    for _ in range(runs):
        started = time.monotonic()
        record = deploy(env=ENV)
        wall = time.monotonic() - started
        assert isinstance(record, DeployRecord)
        steps = sum(s.seconds for s in record.steps)
        walls.append(wall)
        overheads.append(wall - steps)
        for s in record.steps:
            per_step.setdefault(s.name, []).append(s.seconds)
    return walls, overheads, per_step


def generated_image(config: DeployConfig, count: int) -> tuple[str, DeployConfig]:
    """An image with count-7 extra handler modules (copies of ticker_fetcher) and its config."""
    client = docker_client()
    revision = source_revision(config.root, [config.build_context])
    base = build_image(client, config, revision)
    source = (config.build_context / "app" / "ticker_fetcher.py").read_bytes()
    encoded = base64.b64encode(source).decode()
    extra = count - len(config.functions)
    with tempfile.TemporaryDirectory() as tmp:
        dockerfile = Path(tmp) / "Dockerfile"
        dockerfile.write_text(
            f"FROM {base.reference}\n"
            f"RUN for i in $(seq -w 1 {extra}); do echo {encoded} | base64 -d "
            "> ${LAMBDA_TASK_ROOT}/app/gen_$i.py; done\n"
        )
        image, _ = client.images.build(
            path=tmp, dockerfile=str(dockerfile), tag="gangway-bench/generated:latest", rm=True
        )
    template = config.functions["ticker_fetcher"]
    functions = dict(config.functions)
    width = len(str(extra))
    for n in range(1, extra + 1):
        key = f"gen_{n:0{width}d}"
        spec = template.spec.model_copy(update={"handler": f"app.{key}.handler"})
        functions[key] = template.model_copy(update={"key": key, "spec": spec})
    return image.id, config.model_copy(update={"functions": functions})


def gate_timings(config: DeployConfig, runs: int) -> dict[str, list[float]]:
    """Seconds for: one container / 7 handlers, one container per handler, one / 60."""
    client = docker_client()
    revision = source_revision(config.root, [config.build_context])
    image = build_image(client, config, revision).reference
    functions = list(config.functions.values())
    big_image, big_config = generated_image(config, 60)
    big = list(big_config.functions.values())
    out: dict[str, list[float]] = {
        "one_container_7": [],
        "per_handler_7": [],
        "one_container_60": [],
    }
    for _ in range(runs):
        t = time.monotonic()
        run_probe(client, image, functions)
        out["one_container_7"].append(time.monotonic() - t)
        t = time.monotonic()
        for fn in functions:
            run_probe(client, image, [fn])
        out["per_handler_7"].append(time.monotonic() - t)
        t = time.monotonic()
        report = run_probe(client, big_image, big)
        out["one_container_60"].append(time.monotonic() - t)
        assert all(r["with_env"]["imported"] for r in report["functions"].values())
    return out


def rollback_timings(runs: int) -> list[float]:
    """Seconds from the trigger to the alias read back on the previous version."""
    snippet = base64.b64encode(
        b'\ndef handler(event, context):\n    raise RuntimeError("bench: broken on purpose")\n'
    ).decode()
    original = (REPO_ROOT / "service" / "Dockerfile").read_text()
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        dockerfile = Path(tmp) / "Dockerfile"
        dockerfile.write_text(
            original
            + f"\nRUN echo {snippet} | base64 -d >> ${{LAMBDA_TASK_ROOT}}/app/ticker_fetcher.py\n"
        )
        os.environ["GANGWAY_SERVICE__BUILD__DOCKERFILE"] = str(dockerfile)
        try:
            for _ in range(runs):
                try:
                    deploy(env=ENV)
                except DeployFailed as exc:
                    rollback = exc.record.rollback or {}
                    assert rollback.get("result") == "verified", rollback
                    seconds.append(float(rollback["seconds"]))
                else:
                    raise AssertionError("the broken variant deployed")
        finally:
            del os.environ["GANGWAY_SERVICE__BUILD__DOCKERFILE"]
    return seconds


def main() -> int:
    """Run every benchmark and print medians, ratios and the RESULT line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    config = load_config(ENV)

    walls, overheads, per_step = warm_deploys(args.runs)
    gates = gate_timings(config, args.runs)
    rollbacks = rollback_timings(args.runs)
    deploy(env=ENV)  # leave dev healthy on the reference image

    print(f"\nwarm deploy of {ENV}, no source change, {args.runs} runs (medians)")
    print(table(("step", "median s"), [(k, median(v)) for k, v in per_step.items()]))
    warm = median(walls)
    overhead = median(overheads)
    print(
        f"\nwall {warm}s; steps' own time {round(warm - overhead, 3)}s; "
        f"orchestration overhead {overhead}s ({overhead / warm:.1%})"
    )
    one, per, big = (
        median(gates[k]) for k in ("one_container_7", "per_handler_7", "one_container_60")
    )
    print("\nin-image gate (medians)")
    print(
        table(
            ("variant", "s"),
            [
                ("one container, 7 handlers", one),
                ("one container per handler, 7", per),
                ("one container, 60 handlers", big),
            ],
        )
    )
    print(f"ratio one/per-handler = {one / per:.3f}; 60 over 7 = {big / one:.2f}")
    print(f"\ntrigger → alias verified restored (median of {len(rollbacks)}): {median(rollbacks)}s")
    result = {
        "warm_deploy_s": warm,
        "overhead_fraction": round(overhead / warm, 3),
        "import_gate_ratio": round(one / per, 3),
        "import_gate_60_over_7": round(big / one, 3),
        "rollback_s": median(rollbacks),
    }
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
