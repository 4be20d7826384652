"""The official base image contract in the rehearsal: FROM public.ecr.aws/lambda/python:3.11
builds unchanged, and `pip install -r requirements.txt` inside the build installs real wheels
from the stack's local package index (fed from the host); a build argument no Dockerfile
declares is refused before any build.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import docker as docker_sdk
import httpx
import pytest

from gangway.config import DeployConfig, load_config
from gangway.dockerfile import base_images, declared_args
from gangway.errors import ConfigError, DockerError, StackError
from rehearsal import package_index
from rehearsal.base_image import BASE_IMAGE, OFFICIAL_IMAGE
from tasks.image_build import build_image, check_build_args
from tasks.source import SourceRevision

# A compiled wheel (a C extension): proves the platform's wheel, not a pure-Python one.
ORJSON = "orjson==3.11.4"

OFFICIAL_DOCKERFILE = """\
FROM public.ecr.aws/lambda/python:3.11
COPY requirements.txt .
RUN pip install -r requirements.txt -t .
COPY app.py .
CMD ["app.handler"]
"""
APP = """\
import orjson


def handler(event, context):
    return orjson.loads(orjson.dumps({"ok": True, "event": event}))
"""


def write_service(
    root: Path,
    *,
    dockerfile: str = OFFICIAL_DOCKERFILE,
    requirements: str = f"{ORJSON}\n",
    build_extra: str = 'network = "host"\n',
) -> DeployConfig:
    """A one-function service in root/svc described by root/deployments/{service,dev}.toml."""
    service = root / "svc"
    service.mkdir(parents=True, exist_ok=True)
    (service / "Dockerfile").write_text(dockerfile)
    (service / "requirements.txt").write_text(requirements)
    (service / "app.py").write_text(APP)
    deployments = root / "deployments"
    deployments.mkdir(exist_ok=True)
    name = f"pip-{uuid.uuid4().hex[:8]}"
    (deployments / "service.toml").write_text(
        f'[service]\nname = "{name}"\n\n'
        f'[service.build]\ncontext = "svc"\nrepository = "{name}"\n{build_extra}\n'
        '[functions.fn]\nhandler = "app.handler"\n'
    )
    # The database and bucket are placeholders: the schema still requires them.
    (deployments / "dev.toml").write_text(
        '[environment]\nname = "dev"\nregistry = "127.0.0.1:5000"\nbucket = "unused"\n\n'
        '[environment.database]\nhost = "127.0.0.1"\nname = "unused"\nuser = "unused"\n'
        'password_env = "GANGWAY_DEV_DB_PASSWORD"\n'
    )
    return load_config("dev", directory=deployments, root=root)


REVISION = SourceRevision(sha="0" * 40, dirty=False)


@pytest.fixture
def images(docker: docker_sdk.DockerClient) -> Iterator[list[str]]:
    """Tags to remove after the test."""
    made: list[str] = []
    yield made
    for tag in made:
        try:
            docker.images.remove(tag, force=True)
        except docker_sdk.errors.DockerException:
            pass


def run_python(docker: docker_sdk.DockerClient, image: str, code: str) -> str:
    """Run python3.11 -c CODE in the image (host network), return its output."""
    out = docker.containers.run(
        image, entrypoint=["python3.11", "-c", code], network_mode="host", remove=True
    )
    return out.decode()


def test_official_dockerfile_pip_installs_a_compiled_wheel(
    docker: docker_sdk.DockerClient, tmp_path: Path, images: list[str]
) -> None:
    config = write_service(tmp_path)
    filled = package_index.fill_for_service(config)
    assert filled.wheels >= 1
    assert filled.requirements == ((tmp_path / "svc" / "requirements.txt").resolve(),)
    tag = f"t{uuid.uuid4().hex[:10]}"
    built = build_image(docker, config, REVISION, tag=tag)
    images.append(built.reference)
    out = run_python(
        docker,
        built.reference,
        "import orjson, app, os; print(orjson.__file__, app.handler({'a': None}, None), "
        "os.getcwd(), os.environ['LAMBDA_TASK_ROOT'])",
    )
    # Installed by `pip install -t .` into the task root, a compiled extension that loads.
    assert out.startswith("/var/task/orjson/"), out
    assert "{'ok': True, 'event': {'a': None}} /var/task /var/task" in out
    image = docker.images.get(built.reference)
    assert image.attrs["Config"]["Entrypoint"] == ["/lambda-entrypoint.sh"]
    assert image.attrs["Config"]["Cmd"] == ["app.handler"]


def test_the_target_form_installs_into_the_task_root(
    docker: docker_sdk.DockerClient, tmp_path: Path, images: list[str]
) -> None:
    dockerfile = (
        "FROM public.ecr.aws/lambda/python:3.11\n"
        "COPY requirements.txt ${LAMBDA_TASK_ROOT}\n"
        'RUN python3.11 -m pip install -r requirements.txt --target "${LAMBDA_TASK_ROOT}"\n'
        "COPY app.py ${LAMBDA_TASK_ROOT}\n"
        'CMD ["app.handler"]\n'
    )
    config = write_service(tmp_path, dockerfile=dockerfile)
    assert package_index.service_requirements(config) == [
        (tmp_path / "svc" / "requirements.txt").resolve()
    ]
    package_index.fill_for_service(config)
    built = build_image(docker, config, REVISION, tag=f"t{uuid.uuid4().hex[:10]}")
    images.append(built.reference)
    assert run_python(docker, built.reference, "import orjson; print(orjson.__file__)").startswith(
        "/var/task/orjson/"
    )


def test_a_package_missing_from_the_index_fails_the_build_clearly(
    docker: docker_sdk.DockerClient, tmp_path: Path, images: list[str]
) -> None:
    absent = f"gangway-absent-{uuid.uuid4().hex[:8]}"
    config = write_service(tmp_path, requirements=f"{absent}==1.0\n")
    tag = f"t{uuid.uuid4().hex[:10]}"
    images.append(f"{config.image_repository}:{tag}")
    with pytest.raises(DockerError) as caught:
        build_image(docker, config, REVISION, tag=tag)
    text = str(caught.value)
    assert caught.value.boundary == "docker"
    assert "did not build" in text
    assert f"No matching distribution found for {absent}" in text
    assert "Traceback" not in text


def test_the_host_cannot_get_a_wheel_is_a_stack_error_naming_it(tmp_path: Path) -> None:
    absent = f"gangway-absent-{uuid.uuid4().hex[:8]}"
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"{absent}==1.0\n")
    with pytest.raises(StackError) as caught:
        package_index.fill_for_requirements([requirements], "3.11", "x86_64")
    assert f"wheel of {absent}" in caught.value.message
    assert caught.value.expected and caught.value.found and caught.value.remedy


def test_an_undeclared_build_arg_is_refused_before_any_build(
    docker: docker_sdk.DockerClient, tmp_path: Path
) -> None:
    config = write_service(
        tmp_path, build_extra='[service.build.build_args]\nBASE_IMAGE = "some/base:1"\n'
    )
    tag = f"t{uuid.uuid4().hex[:10]}"
    with pytest.raises(ConfigError) as caught:
        build_image(docker, config, REVISION, tag=tag)
    error = caught.value
    assert "BASE_IMAGE" in error.message
    assert str(tmp_path / "svc" / "Dockerfile") in error.found
    assert "ARG BASE_IMAGE" in error.remedy and "drop BASE_IMAGE" in error.remedy
    with pytest.raises(docker_sdk.errors.ImageNotFound):
        docker.images.get(f"{config.image_repository}:{tag}")


def test_a_declared_build_arg_passes_in_either_dockerfile(tmp_path: Path) -> None:
    args = '[service.build.build_args]\nBASE_IMAGE = "some/base:1"\n'
    declared = "ARG BASE_IMAGE=public.ecr.aws/lambda/python:3.11\nFROM ${BASE_IMAGE}\n"
    check_build_args(write_service(tmp_path / "a", dockerfile=declared, build_extra=args))
    config = write_service(
        tmp_path / "b", build_extra='deps_dockerfile = "Dockerfile.deps"\n' + args
    )
    (tmp_path / "b" / "svc" / "Dockerfile.deps").write_text(declared)
    check_build_args(config)
    # The proxy variables are the engine's own: accepted without an ARG line.
    check_build_args(
        write_service(tmp_path / "c", build_extra='[service.build.build_args]\nHTTP_PROXY = "x"\n')
    )


def test_the_index_serves_a_pep503_page_the_containers_pip_accepts(
    docker: docker_sdk.DockerClient, stack: object, tmp_path: Path
) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"{ORJSON}\n")
    package_index.fill_for_requirements([requirements], "3.11", "x86_64")
    page = httpx.get(package_index.index_url() + "orjson/", timeout=5, trust_env=False)
    assert page.status_code == 200
    assert 'name="pypi:repository-version" content="1.0"' in page.text
    assert "orjson-3.11.4-cp311-cp311-manylinux" in page.text and "#sha256=" in page.text
    renamed = httpx.get(package_index.index_url() + "OrJson/", timeout=5, trust_env=False)
    assert renamed.status_code == 301 and renamed.headers["location"] == "/simple/orjson/"
    # The image's own pip, its own /etc/pip.conf: only the stack's index is configured.
    out = docker.containers.run(
        OFFICIAL_IMAGE,
        entrypoint=["sh", "-c", "pip config list && cd /tmp && "
                    f"python3.11 -m pip download --no-deps {ORJSON} -d wheels && ls wheels"],
        network_mode="host",
        remove=True,
    ).decode()
    assert f"global.index-url='{package_index.index_url()}'" in out
    assert "orjson-3.11.4-cp311-cp311-manylinux" in out


def test_the_official_name_is_the_rehearsal_base(
    docker: docker_sdk.DockerClient, stack: object
) -> None:
    assert docker.images.get(OFFICIAL_IMAGE).id == docker.images.get(BASE_IMAGE).id
    out = docker.containers.run(
        OFFICIAL_IMAGE,
        entrypoint=["sh", "-c", 'echo "$LAMBDA_TASK_ROOT $(pwd) $(command -v python3.11) '
                    '$(command -v pip)"'],
        remove=True,
    ).decode()
    assert out.split() == ["/var/task", "/var/task", "/var/lang/bin/python3.11",
                           "/var/lang/bin/pip"]


def test_the_reference_service_needs_no_build_arg() -> None:
    for env in ("dev", "staging", "prod"):
        config = load_config(env)
        assert config.service.build.build_args == {}
        assert config.service.build.network == "host"
        check_build_args(config)
    deps = (load_config("dev").build_context / "Dockerfile.deps").read_text()
    assert base_images(deps, {}) == [OFFICIAL_IMAGE]


def test_dockerfile_reading() -> None:
    text = (
        "# syntax comment\nARG A=1 B\nARG C=\"x y\"\nFROM ${A:-z}/img:${B:-t} AS build\n"
        "RUN echo \\\n  # a comment inside\n  done\nFROM build\nFROM scratch\n"
    )
    assert declared_args(text) == {"A": "1", "B": None, "C": "x y"}
    assert base_images(text, {"B": "9"}) == ["1/img:9", "scratch"]


def test_requirements_found_from_pip_install_lines(tmp_path: Path) -> None:
    dockerfile = (
        "FROM public.ecr.aws/lambda/python:3.11\n"
        "COPY requirements.txt requirements-extra.txt ./\n"
        "RUN pip install --no-cache-dir -r requirements.txt -t . \\\n"
        "    && python3.11 -m pip install orjson==3.11.4 --target ${LAMBDA_TASK_ROOT}\n"
    )
    config = write_service(tmp_path / "a", dockerfile=dockerfile)
    (tmp_path / "a" / "svc" / "requirements-extra.txt").write_text("\n")
    found = package_index.service_requirements(config)
    assert found[0] == (tmp_path / "a" / "svc" / "requirements.txt").resolve()
    assert found[1].read_text() == "orjson==3.11.4\n"  # the package named on the line
    assert len(found) == 2
    # A file the context does not hold (a variable): every requirements*.txt instead.
    unknown = "FROM x\nRUN pip install -r ${REQS}\n"
    config = write_service(tmp_path / "b", dockerfile=unknown)
    (tmp_path / "b" / "svc" / "requirements-dev.txt").write_text("\n")
    assert [p.name for p in package_index.service_requirements(config)] == [
        "requirements-dev.txt", "requirements.txt"]
    # No pip install at all (dependencies vendored on the host): nothing to fill.
    config = write_service(tmp_path / "c", dockerfile="FROM x\nCOPY vendor/ /var/task/\n")
    assert package_index.service_requirements(config) == []
    assert package_index.fill_for_service(config).wheels == 0


def test_the_index_daemon_is_started_and_stopped_like_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from rehearsal import system

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    monkeypatch.setenv(package_index.PORT_VAR, str(free))
    started = package_index.ensure_index(home=tmp_path)
    assert started.state == "started" and started.pid
    assert package_index.ready()
    assert package_index.ensure_index(home=tmp_path).state == "running"
    assert system.stop_all(home=tmp_path) == [package_index.NAME]
    assert not package_index.ready()
