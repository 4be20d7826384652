"""Configuration is validated completely, before any side effect, with errors that name the key."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gangway.config import REPO_ROOT, load_config
from gangway.errors import ConfigError

SECRETS = {
    "GANGWAY_DEV_DB_PASSWORD": "pw-for-tests-1",
    "GANGWAY_DEV_TELEGRAM_TOKEN": "tg-for-tests-1",
    "GANGWAY_DEV_LINE_SECRET": "line-for-tests-1",
}


@pytest.fixture
def deployments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "deployments"
    shutil.copytree(REPO_ROOT / "deployments", target)
    monkeypatch.setenv("GANGWAY_HOME", str(tmp_path / "home"))
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    return target


def test_dev_resolves_seven_functions_with_their_secrets(deployments: Path) -> None:
    config = load_config("dev", deployments)
    assert len(config.functions) == 7
    webhook = config.functions["line_webhook"]
    assert webhook.spec.handler == "app.line_webhook.handle_webhook"
    assert webhook.name == "daily-report-dev-line-webhook"
    assert webhook.env_plain()["LINE_CHANNEL_SECRET"] == "line-for-tests-1"
    assert "LINE_CHANNEL_SECRET" not in config.functions["api"].env
    # Secrets are values to scrub, and never part of a rendered model.
    assert set(SECRETS.values()) <= set(config.secret_values())
    assert "pw-for-tests-1" not in repr(config)


def test_every_function_env_covers_its_declared_requirements(deployments: Path) -> None:
    config = load_config("dev", deployments)
    for fn in config.functions.values():
        assert set(fn.spec.required_env) <= set(fn.env), fn.key


def test_env_file_overrides_single_keys_of_service(deployments: Path) -> None:
    (deployments / "dev.toml").write_text(
        (deployments / "dev.toml").read_text() + "\n[functions.api]\nclient_deadline_s = 29\n"
    )
    config = load_config("dev", deployments)
    # (memory is terraform/'s to declare for this service: an override here is refused)
    assert config.functions["api"].spec.client_deadline_s == 29
    assert config.functions["api"].spec.handler == "app.api.handler"


def test_environment_variable_overrides_nested_key(
    deployments: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GANGWAY_ENVIRONMENT__DATABASE__HOST", "aurora.example.internal")
    assert load_config("dev", deployments).environment.database.host == "aurora.example.internal"


def test_unknown_environment_names_the_known_ones(deployments: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config("uat", deployments)
    assert "uat.toml" in err.value.expected
    assert "dev, prod, qa, staging" in err.value.remedy


def test_missing_secret_variable_is_named_before_anything_runs(
    deployments: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GANGWAY_DEV_TELEGRAM_TOKEN")
    with pytest.raises(ConfigError) as err:
        load_config("dev", deployments)
    assert "GANGWAY_DEV_TELEGRAM_TOKEN" in str(err.value)
    assert "functions.telegram.env.TELEGRAM_BOT_TOKEN" in str(err.value)


def test_malformed_toml_names_the_file(deployments: Path) -> None:
    (deployments / "dev.toml").write_text("[environment\nname = 'dev'\n")
    with pytest.raises(ConfigError) as err:
        load_config("dev", deployments)
    assert "dev.toml is not valid TOML" in str(err.value)


def test_typo_in_a_key_is_an_error_not_a_silent_default(deployments: Path) -> None:
    (deployments / "dev.toml").write_text(
        (deployments / "dev.toml").read_text() + "\n[functions.api]\nmemroy = 2048\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config("dev", deployments)
    assert "functions.api.memroy" in err.value.found


@pytest.mark.parametrize(
    "table", ["precomputed_reports; DROP TABLE x", "reports`", "a-b", "1abc", "x" * 65]
)
def test_injection_in_table_names_is_refused(deployments: Path, table: str) -> None:
    service = (deployments / "service.toml").read_text()
    (deployments / "service.toml").write_text(
        service.replace('name = "precomputed_reports"', f"name = {table!r}".replace("'", '"'))
    )
    with pytest.raises(ConfigError) as err:
        load_config("dev", deployments)
    assert "not a plain SQL identifier" in err.value.found


def test_injection_in_column_names_is_refused(deployments: Path) -> None:
    service = (deployments / "service.toml").read_text()
    (deployments / "service.toml").write_text(
        service.replace("symbol = {", '"symbol`, (SELECT 1)" = {')
    )
    with pytest.raises(ConfigError) as err:
        load_config("dev", deployments)
    assert "column name" in err.value.found


def test_invalid_environment_name_is_refused(deployments: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config("../etc/passwd", deployments)
    assert "not valid" in err.value.message


# ----------------------------------------------------------- strict types (issue 9, input)
def _append(deployments: Path, text: str, file: str = "dev.toml") -> None:
    path = deployments / file
    path.write_text(path.read_text() + "\n" + text + "\n")


@pytest.mark.parametrize(
    ("toml", "key", "says"),
    [
        ("[functions.api]\ntimeout = true", "functions.api.timeout", "found a boolean true"),
        ('[functions.api]\nmemory = "512"', "functions.api.memory", "found a string '512'"),
        ("[functions.api]\ntimeout = 30.0", "functions.api.timeout", "expected an integer"),
        (
            "[functions.api]\nhandler = 12",
            "functions.api.handler",
            "Input should be a valid string",
        ),
        ('[environment.deploy]\nlock_timeout_s = "5"', "environment.deploy.lock_timeout_s", "'5'"),
        (
            "[environment.deploy]\nerror_rate_threshold = true",
            "environment.deploy.error_rate_threshold",
            "expected a number, found a boolean",
        ),
    ],
)
def test_no_silent_coercion_to_numbers(deployments: Path, toml: str, key: str, says: str) -> None:
    _append(deployments, toml)
    with pytest.raises(ConfigError) as err:
        load_config("dev", deployments)
    assert f"{key}: " in err.value.found and says in err.value.found, err.value.render()


def test_a_boolean_port_is_refused(deployments: Path) -> None:
    env = (deployments / "dev.toml").read_text()
    (deployments / "dev.toml").write_text(env.replace("port = 3306", "port = false", 1))
    with pytest.raises(ConfigError) as err:
        load_config("dev", deployments)
    assert "environment.database.port: " in err.value.found
    assert "expected an integer, found a boolean false" in err.value.found


def test_no_silent_coercion_to_booleans(deployments: Path) -> None:
    service = (deployments / "service.toml").read_text()
    (deployments / "service.toml").write_text(
        service.replace(
            'symbol = { type = "varchar", nullable = false }',
            'symbol = { type = "varchar", nullable = 0 }',
        )
    )
    with pytest.raises(ConfigError) as err:
        load_config("dev", deployments)
    assert "tables.0.columns.symbol.nullable" in err.value.found
    assert "expected a boolean" in err.value.found


def test_integers_are_numbers_where_a_float_is_expected(deployments: Path) -> None:
    _append(deployments, "[environment.deploy]\nbake_invoke_interval_s = 3")
    assert load_config("dev", deployments).environment.deploy.bake_invoke_interval_s == 3.0


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[environment.deploy]\nbake_invoke_interval_s = inf", "bake_invoke_interval_s = inf"),
        ("[environment.deploy]\nerror_rate_threshold = nan", "error_rate_threshold = nan"),
        ("[environment.deploy]\nrestore_window_s = -inf", "restore_window_s = -inf"),
        (
            "[functions.api.env]\nX = 'a'\n[[smoke]]\nname='s'\nfunction='api'\nevent={n=nan}",
            "smoke[0].event.n = nan",
        ),
    ],
)
def test_non_finite_numbers_are_refused_anywhere(deployments: Path, toml: str, key: str) -> None:
    _append(deployments, toml)
    with pytest.raises(ConfigError) as err:
        load_config("dev", deployments)
    assert key in err.value.found
    assert "finite" in err.value.expected


def test_smoke_after_must_name_an_earlier_case(deployments: Path) -> None:
    """The declared order stays a valid run order: after never points forward (no cycles)."""
    _append(
        deployments,
        "[[smoke]]\nname='first'\nfunction='api'\nafter=['second']\n"
        "[[smoke]]\nname='second'\nfunction='ticker_fetcher'",
        "service.toml",
    )
    with pytest.raises(ConfigError) as err:
        load_config("dev", deployments)
    assert err.value.found == "second"
    assert "smoke.after" in err.value.remedy


def test_environment_overrides_are_json_literals_for_numbers(
    deployments: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GANGWAY_* values are text by nature: a number-typed setting reads them as JSON."""
    monkeypatch.setenv("GANGWAY_ENVIRONMENT__DEPLOY__LOCK_TIMEOUT_S", "5")
    monkeypatch.setenv("GANGWAY_ENVIRONMENT__DEPLOY__BAKE_INVOKE_INTERVAL_S", "0.5")
    monkeypatch.setenv("GANGWAY_FUNCTIONS__API__MEMORY", "1024")
    # Text settings stay text even when they look like numbers.
    monkeypatch.setenv("GANGWAY_ENVIRONMENT__DATABASE__HOST", "10")
    monkeypatch.setenv("GANGWAY_ENVIRONMENT__BUCKET", "12345")
    config = load_config("dev", deployments)
    assert config.environment.deploy.lock_timeout_s == 5
    assert config.environment.deploy.bake_invoke_interval_s == 0.5
    assert config.functions["api"].spec.memory == 1024
    assert config.environment.database.host == "10"
    assert config.environment.bucket == "12345"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("true", "found a boolean true"),
        ("five", "found a string 'five'"),
        ("Infinity", "finite"),
        ("NaN", "finite"),
        ("1e999", "finite"),
    ],
)
def test_environment_overrides_of_numbers_are_still_typed(
    deployments: Path, monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.setenv("GANGWAY_ENVIRONMENT__DEPLOY__BAKE_INVOKE_INTERVAL_S", value)
    with pytest.raises(ConfigError) as err:
        load_config("dev", deployments)
    assert "environment.deploy.bake_invoke_interval_s" in err.value.found
    assert says in err.value.found


def test_max_bake_defaults_to_an_hour_and_must_be_positive(deployments: Path) -> None:
    assert load_config("dev", deployments).environment.deploy.max_bake_s == 3600
    _append(deployments, "[environment.deploy]\nmax_bake_s = 0")
    with pytest.raises(ConfigError) as err:
        load_config("dev", deployments)
    assert "environment.deploy.max_bake_s" in err.value.found


@pytest.mark.parametrize(
    ("toml", "found"),
    [
        ("[environment.deploy]\nbake_invoke_interval_s = 0", "bake_invoke_interval_s"),
        ("[environment.deploy]\nbake_invoke_interval_s = -1.5", "bake_invoke_interval_s"),
    ],
)
def test_non_positive_intervals_are_refused(deployments: Path, toml: str, found: str) -> None:
    _append(deployments, toml)
    with pytest.raises(ConfigError) as err:
        load_config("dev", deployments)
    assert found in err.value.found


# ------------------------------------------------------------------- full-match patterns
@pytest.mark.parametrize(
    ("file", "original", "broken", "key"),
    [
        (
            "service.toml",
            'handler = "app.api.handler"',
            'handler = "app.api.handler\\n"',
            "functions.api.handler",
        ),
        (
            "service.toml",
            'name = "precomputed_reports"',
            'name = "precomputed_reports\\n"',
            "tables.0.name",
        ),
        ("service.toml", "symbol = {", '"symbol\\n" = {', "tables.0.columns"),
        # pydantic `pattern=` fields (Rust regex: `$` is the end of the text)
        ("service.toml", 'name = "daily-report"', 'name = "daily-report\\n"', "service.name"),
        (
            "service.toml",
            'repository = "daily-report"',
            'repository = "daily-report\\n"',
            "service.build.repository",
        ),
        ("service.toml", 'python = "3.11"', 'python = "3.11\\n"', "service.build.python"),
        ("dev.toml", 'alias = "live"', 'alias = "live\\n"', "environment.alias"),
        (
            "dev.toml",
            'password_env = "GANGWAY_DEV_DB_PASSWORD"',
            'password_env = "GANGWAY_DEV_DB_PASSWORD\\n"',
            "environment.database.password_env",
        ),
        (
            "dev.toml",
            'name = "daily_report_dev"',
            'name = "daily_report_dev\\n"',
            "environment.database.name",
        ),
    ],
)
def test_a_trailing_newline_does_not_pass_a_pattern(
    deployments: Path, file: str, original: str, broken: str, key: str
) -> None:
    path = deployments / file
    text = path.read_text()
    assert original in text, f"{file} no longer has {original!r}"
    path.write_text(text.replace(original, broken, 1))
    with pytest.raises(ConfigError) as err:
        load_config("dev", deployments)
    assert key in err.value.found, err.value.render()


def test_a_trailing_newline_in_an_environment_override_does_not_pass(
    deployments: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GANGWAY_FUNCTIONS__API__HANDLER", "app.api.handler\n")
    with pytest.raises(ConfigError) as err:
        load_config("dev", deployments)
    assert "functions.api.handler" in err.value.found


def test_a_trailing_newline_in_the_environment_name_does_not_pass(deployments: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config("dev\n", deployments)
    assert "not valid" in err.value.message


# ------------------------------------------------------------------ Lambda function names
@pytest.mark.parametrize(
    "name",
    [
        "f" * 64,
        "A-z_0-9",
        "arn:aws:lambda:ap-southeast-1:123456789012:function:daily-report-dev-api",
        "arn:aws-cn:lambda:ap-southeast-1:123456789012:function:x",
    ],
)
def test_valid_function_names_pass(deployments: Path, name: str) -> None:
    _append(deployments, f'[functions.api]\nname = "{name}"')
    assert load_config("dev", deployments).functions["api"].name == name


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("f" * 65, "65 characters"),
        ("", "empty"),
        ("daily report", "characters other than"),
        ("daily.report", "characters other than"),
        ("api\\n", "characters other than"),
        ("arn:aws:lambda:us-east-1:123456789012:function:x", "region us-east-1"),
        ("arn:aws:lambda:ap-southeast-1:12345:function:x", "characters other than"),
        ("arn:aws:lambda:ap-southeast-1:123456789012:function:x:live", "characters other than"),
    ],
)
def test_invalid_function_names_are_refused_locally(
    deployments: Path, name: str, says: str
) -> None:
    _append(deployments, f'[functions.api]\nname = "{name}"')
    with pytest.raises(ConfigError) as err:
        load_config("dev", deployments)
    assert "functions.api.name" in err.value.message
    assert says in err.value.found
    assert "1-64 characters" in err.value.expected


def test_a_default_function_name_over_64_characters_is_refused(deployments: Path) -> None:
    key = "k" * 50  # daily-report-dev- + 50 = 67 characters
    _append(deployments, f'[functions.{key}]\nhandler = "app.api.handler"', "service.toml")
    with pytest.raises(ConfigError) as err:
        load_config("dev", deployments)
    assert f"functions.{key}.name" in err.value.message
    assert "67 characters" in err.value.found
    assert "default name" in err.value.remedy


# ---------------------------------------------------------------------- config file size
@pytest.mark.parametrize("file", ["service.toml", "dev.toml"])
def test_config_files_over_one_mib_are_refused_before_parsing(deployments: Path, file: str) -> None:
    path = deployments / file
    # Not even valid TOML past the first line: the size is refused before any parsing.
    path.write_text(path.read_text() + "\n[[[" + "#" * (1 << 20) + "\n")
    with pytest.raises(ConfigError) as err:
        load_config("dev", deployments)
    assert file in err.value.message and "1 MiB" in err.value.expected
    assert str(path.stat().st_size) in err.value.found


def test_a_config_file_of_exactly_one_mib_is_read(deployments: Path) -> None:
    path = deployments / "dev.toml"
    text = path.read_text() + "\n#"
    path.write_text(text + "x" * ((1 << 20) - len(text.encode()) - 1) + "\n")
    assert path.stat().st_size == 1 << 20
    assert load_config("dev", deployments).environment.name == "dev"


# ------------------------------------------------------------------ the bake's upper bound
def test_a_bake_above_max_bake_s_is_refused_before_anything_else(
    deployments: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.request import validate_request

    monkeypatch.setenv("GANGWAY_DEPLOYMENTS", str(deployments))
    with pytest.raises(ConfigError) as err:
        validate_request("dev", None, canary_percent=10, bake_s=1_000_000_000)
    assert "max_bake_s = 3600" in err.value.expected
    assert "--bake 1000000000" in err.value.found
    assert "[environment.deploy]" in err.value.remedy

    _append(deployments, "[environment.deploy]\nmax_bake_s = 60")
    with pytest.raises(ConfigError) as err:
        validate_request("dev", None, canary_percent=10, bake_s=61)
    assert "max_bake_s = 60" in err.value.expected


# -------------------------------------------------- build inputs outside the repository
def _git_head() -> str:
    return subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.mark.parametrize("sha", [None, "HEAD"])
@pytest.mark.parametrize("setting", ["CONTEXT", "DOCKERFILE", "MIGRATIONS"])
def test_a_build_input_outside_the_repository_makes_the_build_dirty(
    deployments: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    setting: str,
    sha: str | None,
) -> None:
    """Never a clean commit, also with a SHA; the outside input is used from disk as is."""
    from flows.request import resolve_source

    outside = tmp_path / "outside"
    if setting == "CONTEXT":
        shutil.copytree(REPO_ROOT / "service", outside)
        monkeypatch.setenv("GANGWAY_SERVICE__BUILD__CONTEXT", str(outside))  # absolute
    elif setting == "DOCKERFILE":
        outside.mkdir()
        shutil.copy(REPO_ROOT / "service" / "Dockerfile", outside / "Dockerfile")
        monkeypatch.setenv("GANGWAY_SERVICE__BUILD__DOCKERFILE", str(outside / "Dockerfile"))
    else:
        shutil.copytree(REPO_ROOT / "migrations", outside)
        # Relative to the repository, however deep the clone and the temp dir sit.
        monkeypatch.setenv("GANGWAY_SERVICE__MIGRATIONS", os.path.relpath(outside, REPO_ROOT))
    config = load_config("dev", deployments)
    resolved, revision = resolve_source(config, sha)
    assert revision.dirty and revision.tag.endswith("-dirty")
    assert revision.sha == _git_head()
    dockerfile = resolved.build_context / resolved.service.build.dockerfile
    assert dockerfile.is_file()
    assert (resolved.migrations_dir / "env.py").is_file()
    assert (resolved.build_context / "app").is_dir()
    if setting == "CONTEXT":
        assert resolved.build_context == outside
    elif setting == "DOCKERFILE":
        assert dockerfile == outside / "Dockerfile"
    else:
        assert resolved.migrations_dir == outside.resolve()
    if sha is not None:
        # Everything inside the repository comes from the commit, not the working tree.
        home = tmp_path / "home" / "src"
        for path in (resolved.build_context, dockerfile, resolved.migrations_dir):
            assert path.is_relative_to(outside) or path.is_relative_to(home), path


def test_a_commit_with_every_input_inside_stays_clean(deployments: Path) -> None:
    from flows.request import resolve_source

    config = load_config("dev", deployments)
    resolved, revision = resolve_source(config, "HEAD")
    assert revision.sha == _git_head()
    assert not revision.dirty
    assert (resolved.build_context / resolved.service.build.dockerfile).is_file()


def test_checkout_tree_refuses_what_git_archive_would_crash_on(tmp_path: Path) -> None:
    from tasks.source import checkout_tree

    head = _git_head()
    for paths in (["/etc"], ["../outside"]):
        with pytest.raises(ConfigError) as err:
            checkout_tree(REPO_ROOT, head, paths, tmp_path)
        assert "inside the repository" in err.value.expected
    with pytest.raises(ConfigError) as err:
        checkout_tree(REPO_ROOT, head, ["no-such-folder"], tmp_path)
    assert "no-such-folder" in err.value.found + err.value.expected
    assert not any(tmp_path.iterdir()), "a failed checkout leaves no half-extracted folder"


def test_a_dirty_build_is_never_promotable() -> None:
    from datetime import UTC, datetime

    from gangway.config import PromotionSpec
    from gangway.record import DeployRecord, Outcome
    from tasks.promotion_policy import PromotionFacts, PromotionRefused, SourceRecord, decide

    sha = "a" * 40
    now = datetime.now(UTC)
    dirty = DeployRecord(env="dev", commit_sha=sha, dirty=True, outcome=Outcome.SUCCEEDED,
                         image_digest="sha256:" + "1" * 64, finished_at=now)

    def facts(*records: DeployRecord) -> PromotionFacts:
        return PromotionFacts(
            service="", sha=sha, digest=None, source_env="dev", target_env="staging",
            target=PromotionSpec(), records=tuple(SourceRecord.of(r) for r in records), now=now,
        )

    with pytest.raises(PromotionRefused) as err:
        decide(facts(dirty))
    assert "succeeded (dirty tree)" in err.value.found
    clean = DeployRecord(env="dev", commit_sha=sha, outcome=Outcome.SUCCEEDED,
                         image_digest="sha256:" + "2" * 64, finished_at=now)
    assert decide(facts(clean, dirty)).source.deploy_id == clean.deploy_id
