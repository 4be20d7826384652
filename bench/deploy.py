"""Deploy benchmarks on the rehearsal stack, measured side by side in one run.

1. Warm deploy of the reference service vs the BASELINE (bench/baseline.py: the seeds'
   workflow as a plain sequential script, same tools, service and stack), interleaved, each
   iteration of both deploying a NEW digest: the pipeline deploys a new scratch commit
   (rehearsal/scratch_commits.py: the working tree plus a unique stamp file, committed
   outside the repository's refs and objects) by SHA as CI does; the baseline builds a
   scratch copy of the build context with the same kind of stamp. Neither can win by
   skipping work. Per-step medians, the orchestration overhead (wall time minus the sum of
   the steps' own durations), both medians and their ratio.
2. The in-image gate as ONE container for every handler vs one container per handler, for
   the seven handlers, and the one-container gate for 60 generated handlers vs 7.
3. Trigger → alias verified restored: a deploy whose smoke test fails, timed by the rollback.

1 and 3 run twice: with the rehearsal's Lambda fidelity switches OFF (instant updates, logs
readable at once, a fresh container per invoke, the stack's key: the old rehearsal, where the
targets were set) and ON (rehearsal/fidelity.py's DEFAULT: InProgress after each update, log
ingestion delay, stale alias reads, warm environments, execution-role credentials), where the
baseline too waits for its invokes' log lines as gangway does.

Run with `make bench` (the stack must be up). The last line is machine-readable:
RESULT {"warm_deploy_s": …, "baseline_s": …, "deploy_over_baseline": …,
"overhead_fraction": …, "import_gate_ratio": …, "import_gate_60_over_7": …, "rollback_s": …,
"fidelity_on": {"warm_deploy_s": …, "baseline_s": …, "deploy_over_baseline": …,
"overhead_fraction": …, "rollback_s": …}} (the top-level figures: switches off)
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
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gangway.config import REPO_ROOT, DeployConfig, apply_env_file, load_config

apply_env_file()

from baseline import BaselineRun, baseline_deploy, prepare_context  # noqa: E402  (a sibling: bench/ is on sys.path)

from flows.deploy import DeployFailed, deploy  # noqa: E402  (Prefect reads the env at import)
from gangway.record import DeployRecord  # noqa: E402
from gangway.render import table  # noqa: E402
from rehearsal import fidelity  # noqa: E402
from rehearsal.scratch_commits import ScratchCommits  # noqa: E402
from tasks.docker_engine import docker_client  # noqa: E402
from tasks.image_build import build_image  # noqa: E402
from tasks.image_gate import run_probe  # noqa: E402
from tasks.source import source_revision  # noqa: E402

ENV = "dev"
MODES = {"off": fidelity.OFF, "on": fidelity.DEFAULT}


@contextmanager
def fidelity_mode(settings: fidelity.Fidelity) -> Iterator[None]:
    """The bridge's default fidelity set to settings for the block, then put back."""
    default, functions = fidelity.read()
    fidelity.write(settings, functions)
    try:
        yield
    finally:
        fidelity.write(default, functions)


def median(values: list[float]) -> float:
    """The median, rounded for printing."""
    return round(statistics.median(values), 3)


@dataclass
class SideBySide:
    """Wall seconds of the pipeline's and the baseline's deploys, and where the time went."""

    walls: list[float] = field(default_factory=list)
    overheads: list[float] = field(default_factory=list)
    per_step: dict[str, list[float]] = field(default_factory=dict)
    baseline: list[float] = field(default_factory=list)
    baseline_phases: dict[str, list[float]] = field(default_factory=dict)
    digests: list[str] = field(default_factory=list)


def _pipeline_once(sha: str, out: SideBySide) -> None:
    started = time.monotonic()
    record = deploy(env=ENV, sha=sha)
    wall = time.monotonic() - started
    assert isinstance(record, DeployRecord)
    assert record.commit_sha == sha and not record.dirty, (record.commit_sha, record.dirty)
    out.walls.append(wall)
    out.overheads.append(wall - sum(s.seconds for s in record.steps))
    for s in record.steps:
        out.per_step.setdefault(s.name, []).append(s.seconds)
    out.digests.append(str(record.image_digest))


def _baseline_once(config: DeployConfig, context: Path, out: SideBySide) -> None:
    engine = docker_client()
    started = time.monotonic()
    wait_s = config.environment.deploy.log_ingestion_s
    run: BaselineRun = baseline_deploy(engine, config, context, uuid.uuid4().hex, wait_s)
    out.baseline.append(time.monotonic() - started)
    for name, seconds in run.phases.items():
        out.baseline_phases.setdefault(name, []).append(seconds)
    out.digests.append(run.digest)


def side_by_side(config: DeployConfig, runs: int) -> SideBySide:
    """runs interleaved deploys of each side, each of a new digest, after one warm-up each."""
    context = config.build_context.relative_to(REPO_ROOT)
    paths = [str(context), str(config.migrations_dir.relative_to(REPO_ROOT))]
    out, warm_up = SideBySide(), SideBySide()
    with ScratchCommits(REPO_ROOT, paths, str(context / "app" / "build_stamp.py")) as commits:
        with tempfile.TemporaryDirectory(prefix="gangway-baseline-") as tmp:
            scratch = prepare_context(config, Path(tmp))
            # Warm-up: the vendor cache, the engine's layer cache and the runtime containers.
            _pipeline_once(commits.commit(), warm_up)
            _baseline_once(config, scratch, warm_up)
            for i in range(runs):
                # Alternate who goes first, so a drift of the machine hits both sides alike.
                if i % 2 == 0:
                    _pipeline_once(commits.commit(), out)
                    _baseline_once(config, scratch, out)
                else:
                    _baseline_once(config, scratch, out)
                    _pipeline_once(commits.commit(), out)
    every = warm_up.digests + out.digests
    assert len(set(every)) == len(every), f"an iteration reused a digest: {every}"
    return out


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


def _report(mode: str, runs: int, measured: SideBySide, rollbacks: list[float]) -> dict[str, float]:
    """Print one mode's side-by-side tables; its figures for the RESULT line."""
    print(f"\n== fidelity switches {mode.upper()}")
    print(f"\nwarm deploy of {ENV}, a new commit each run, {runs} runs (medians)")
    print(table(("step", "median s"), [(k, median(v)) for k, v in measured.per_step.items()]))
    warm = median(measured.walls)
    overhead = median(measured.overheads)
    print(
        f"\nwall {warm}s; steps' own time {round(warm - overhead, 3)}s; "
        f"orchestration overhead {overhead}s ({overhead / warm:.1%})"
    )
    print(f"\nbaseline (sequential script of the seeds' steps), {runs} runs (medians)")
    print(
        table(
            ("phase", "median s"),
            [(k, median(v)) for k, v in measured.baseline_phases.items()],
        )
    )
    baseline = median(measured.baseline)
    print(
        f"\ndeploy median {warm}s; baseline median {baseline}s; "
        f"deploy / baseline = {warm / baseline:.3f}"
    )
    print(f"\ntrigger → alias verified restored (median of {len(rollbacks)}): {median(rollbacks)}s")
    return {
        "warm_deploy_s": warm,
        "baseline_s": baseline,
        "deploy_over_baseline": round(warm / baseline, 3),
        "overhead_fraction": round(overhead / warm, 3),
        "rollback_s": median(rollbacks),
    }


def main() -> int:
    """Run every benchmark and print medians, ratios and the RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", type=int, default=3, help="measured iterations of each benchmark (default 3)"
    )
    args = parser.parse_args()
    config = load_config(ENV)

    figures: dict[str, dict[str, float]] = {}
    for mode, settings in MODES.items():
        with fidelity_mode(settings):
            measured = side_by_side(config, args.runs)
            rollbacks = rollback_timings(args.runs)
        figures[mode] = _report(mode, args.runs, measured, rollbacks)
    gates = gate_timings(config, args.runs)
    deploy(env=ENV)  # leave dev healthy on the reference image

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
    result: dict[str, object] = {
        **figures["off"],
        "import_gate_ratio": round(one / per, 3),
        "import_gate_60_over_7": round(big / one, 3),
        "fidelity_on": figures["on"],
    }
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
