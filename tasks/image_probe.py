"""Runs INSIDE the built image (stdlib only): import every handler as Lambda would, and report.

gangway passes this file's source to ``python3 -c`` in one container and reads the JSON line it
prints. Each handler is imported with exactly its function's environment, its app modules
purged before the next, so third-party packages load once for all; then forked children
import each again without that environment, to see start-up validation fail cleanly.
"""

import importlib
import json
import os
import platform
import signal
import sys
import traceback

MARKER = "GANGWAY_PROBE_RESULT "


def _alarm(_signum, _frame):  # noqa: ANN001, ANN202 - signal handler signature
    raise TimeoutError("import did not finish in time (does the module do I/O at import?)")


def _import(handler, timeout):  # noqa: ANN001, ANN202 - runs on any Python 3 in the image
    module_name, attribute = handler.rsplit(".", 1)
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    try:
        module = importlib.import_module(module_name)
        target = getattr(module, attribute, None)
        return {
            "imported": True,
            "module_file": getattr(module, "__file__", None),
            "attribute": target is not None,
            "callable": callable(target),
        }
    except BaseException as exc:  # every failure is data for the gate, including SystemExit
        return {
            "imported": False,
            "error_type": type(exc).__name__,
            "error": str(exc)[:2000],
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[
                -2000:
            ],
        }
    finally:
        signal.alarm(0)


def _purge(tops):  # noqa: ANN001, ANN202
    for name in list(sys.modules):
        if name.split(".")[0] in tops:
            del sys.modules[name]


def _fork_check(handler, env, tops, timeout):  # noqa: ANN001, ANN202
    """Start a child that imports handler with exactly env; returns (pid, read end)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        os.environ.clear()
        os.environ.update(env)
        _purge(tops)
        outcome = _import(handler, timeout)
        with os.fdopen(write_fd, "w") as pipe:
            pipe.write(json.dumps(outcome))
        os._exit(0)
    os.close(write_fd)
    return pid, read_fd


def _collect(pid, read_fd):  # noqa: ANN001, ANN202
    with os.fdopen(read_fd) as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        return {
            "imported": False,
            "error_type": "Crashed",
            "error": f"the import process died (exit status {status})",
            "traceback": "",
        }
    return json.loads(data)


def main():  # noqa: ANN201
    spec = json.loads(os.environ.pop("GANGWAY_PROBE"))
    timeout = int(spec.get("timeout", 10))
    image_env = dict(os.environ)
    tops = {h["handler"].split(".")[0] for h in spec["handlers"]}
    sys.path.insert(0, os.getcwd())

    # With its environment: each handler in turn, its app modules purged before the next, so
    # every import is fresh while third-party packages load once for all of them.
    functions = {}
    for h in spec["handlers"]:
        os.environ.update(h["env"])
        functions[h["key"]] = {"with_env": _import(h["handler"], timeout)}
        os.environ.clear()
        os.environ.update(image_env)
        _purge(tops)
    # Without it: forked children, all at once, each from the same clean state.
    children = {
        h["key"]: _fork_check(h["handler"], image_env, tops, timeout) for h in spec["handlers"]
    }
    for key, (pid, read_fd) in children.items():
        functions[key]["without_env"] = _collect(pid, read_fd)
    result = {
        "cwd": os.getcwd(),
        "task_root": image_env.get("LAMBDA_TASK_ROOT"),
        "python": ".".join(str(n) for n in sys.version_info[:3]),
        "machine": platform.machine(),
        "functions": functions,
    }
    sys.stdout.write(MARKER + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
