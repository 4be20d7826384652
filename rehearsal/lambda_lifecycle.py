"""Lambda's function lifecycle and alias read consistency, imitated on moto (rehearsal only).

moto makes every function ``Active`` and every update ``Successful`` at once, and every alias
read fresh. AWS does not, and these patches make the bridge behave as AWS does, each for as long
as ``rehearsal.fidelity`` says for that function (read at each write, so a test changes it while
the bridge runs):

- create_function: ``State: Pending`` (``StateReason`` "The function is being created.",
  ``StateReasonCode`` "Creating") for ``pending_s``, then ``Active``. Meanwhile invoke,
  publish_version and both updates are a ResourceConflictException ("... The function is
  currently in the following state: Pending").
- update_function_code / update_function_configuration: ``LastUpdateStatus: InProgress`` for
  ``update_s``, then ``Successful``. Meanwhile another update or a publish_version is a
  ResourceConflictException ("... An update is in progress for resource: <function arn>"), and
  an invoke of $LATEST still runs the code and configuration from before the update.
- update_alias: for ``stale_alias_s`` after the write, each get_alias / list_aliases read
  returns the alias as it was before the write with probability ``stale_alias_p``. Invokes
  through the alias route by the new value: only the control-plane read is stale. A
  create_alias has no earlier value, so reads after it are fresh.
"""

from __future__ import annotations

import copy
import json
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from moto.awslambda import exceptions as lambda_exceptions
from moto.awslambda import models as lambda_models
from moto.awslambda import responses as lambda_responses

from rehearsal import fidelity

LATEST = "$LATEST"
CREATING_REASON = "The function is being created."
CREATING_CODE = "Creating"
NOT_NOW = "The operation cannot be performed at this time."
PENDING_MESSAGE = f"{NOT_NOW} The function is currently in the following state: Pending"
UPDATING_MESSAGE = NOT_NOW + " An update is in progress for resource: {arn}"


class ResourceConflict(lambda_exceptions.LambdaClientError):
    """AWS's ResourceConflictException: HTTP 409, ``x-amzn-ErrorType`` and a JSON body with
    ``Type`` and ``message`` (botocore reads ``Code: ResourceConflictException``)."""

    code = 409

    def __init__(self, message: str) -> None:
        super().__init__("ResourceConflictException", message)
        self.description = json.dumps({"Type": "User", "message": message})


@dataclass
class Lifecycle:
    """One function's transitions: monotonic deadlines, and $LATEST as it ran before an update."""

    pending_until: float = 0.0
    update_until: float = 0.0
    previous: Any = None

    def pending(self, now: float) -> bool:
        """Still being created."""
        return now < self.pending_until

    def updating(self, now: float) -> bool:
        """An update is still in progress."""
        return now < self.update_until


@dataclass(frozen=True)
class AliasWrite:
    """The alias document as it was before the latest write, readable until ``until``."""

    until: float
    previous: dict[str, Any]


_lock = threading.Lock()
_functions: dict[tuple[str, str, str], Lifecycle] = {}
_alias_writes: dict[str, AliasWrite] = {}


def _key(fn: Any) -> tuple[str, str, str]:
    return (str(fn.account_id), str(fn.region), str(fn.function_name))


def lifecycle(fn: Any) -> Lifecycle:
    """The lifecycle record of fn's function (any version), created empty when absent."""
    with _lock:
        return _functions.setdefault(_key(fn), Lifecycle())


def _refuse_if_busy(latest: Any, refuse_update: bool = True) -> None:
    """Refuse an operation AWS refuses while the function is Pending or an update runs."""
    record = lifecycle(latest)
    now = time.monotonic()
    if record.pending(now):
        raise ResourceConflict(PENDING_MESSAGE)
    if refuse_update and record.updating(now):
        raise ResourceConflict(UPDATING_MESSAGE.format(arn=latest.function_arn))


def _status_fields(fn: Any, on_create: bool = False) -> dict[str, str]:
    """What the configuration document says of fn's state now (empty: moto's Active/Successful)."""
    if str(fn.version) != LATEST:
        return {}
    record = lifecycle(fn)
    now = time.monotonic()
    fields: dict[str, str] = {}
    if record.pending(now):
        fields.update(State="Pending", StateReason=CREATING_REASON, StateReasonCode=CREATING_CODE)
    if (record.pending(now) or record.updating(now)) and not on_create:
        # AWS reports an update (and the creation itself) with the same reason and code.
        fields.update(
            LastUpdateStatus="InProgress",
            LastUpdateStatusReason=CREATING_REASON,
            LastUpdateStatusReasonCode=CREATING_CODE,
        )
    return fields


def _snapshot(fn: Any) -> Any:
    """$LATEST as it is now, owning its code and configuration (updates mutate them in place)."""
    previous = copy.copy(fn)
    for attr, value in list(vars(previous).items()):
        if isinstance(value, dict | list | lambda_models.ImageConfig):
            setattr(previous, attr, copy.deepcopy(value))
    return previous


# --------------------------------------------------------------------------- configuration
_original_get_configuration = lambda_models.LambdaFunction.get_configuration


def _get_configuration(self: Any, on_create: bool = False) -> dict[str, Any]:
    """moto's configuration document with the function's State / LastUpdateStatus now."""
    config = _original_get_configuration(self, on_create)
    config.update(_status_fields(self, on_create))
    return config


# --------------------------------------------------------------------------- writes
_original_create_function = lambda_models.LambdaBackend.create_function
_original_update_code = lambda_models.LambdaBackend.update_function_code
_original_update_configuration = lambda_models.LambdaBackend.update_function_configuration
_original_publish_version = lambda_models.LambdaBackend.publish_version
_original_delete_function = lambda_models.LambdaBackend.delete_function


def _create_function(self: Any, spec: dict[str, Any]) -> Any:
    """Create, then keep the function Pending for pending_s."""
    fn = _original_create_function(self, spec)
    pending_s = fidelity.for_function(fn.function_name).pending_s
    with _lock:
        _functions[_key(fn)] = Lifecycle(pending_until=time.monotonic() + max(pending_s, 0.0))
    return fn


def _updated(self: Any, original: Any, function_name: str, qualifier: str, body: Any) -> Any:
    """Run one update of $LATEST as AWS does: refused while busy, then InProgress for update_s."""
    fn = self.get_function(function_name, qualifier)
    _refuse_if_busy(fn)
    if isinstance(body, dict) and body.get("DryRun"):
        return original(self, function_name, qualifier, body)
    previous = _snapshot(fn)
    response = original(self, function_name, qualifier, body)
    update_s = fidelity.for_function(fn.function_name).update_s
    if update_s > 0:
        record = lifecycle(fn)
        with _lock:
            record.previous = previous
            record.update_until = time.monotonic() + update_s
    if isinstance(response, dict) and response.get("Version") == LATEST:
        response.update(_status_fields(fn))
    return response


def _update_function_code(self: Any, function_name: str, qualifier: str, body: Any) -> Any:
    """update_function_code, with AWS's InProgress window and conflicts."""
    return _updated(self, _original_update_code, function_name, qualifier, body)


def _update_function_configuration(
    self: Any, function_name: str, qualifier: str, body: Any
) -> Any:
    """update_function_configuration, with AWS's InProgress window and conflicts."""
    return _updated(self, _original_update_configuration, function_name, qualifier, body)


def _publish_version(self: Any, function_name: str, description: str = "") -> Any:
    """Refused while the function is Pending or an update is in progress, as on AWS."""
    latest = self._lambdas.get_function_by_name_or_arn_forbid_qualifier(function_name)
    _refuse_if_busy(latest)
    return _original_publish_version(self, function_name, description)


def _delete_function(self: Any, function_name: str, qualifier: str | None = None) -> None:
    """Delete, forgetting the function's transitions and alias writes with it."""
    fn = self.get_function(function_name, qualifier)
    _original_delete_function(self, function_name, qualifier)
    if qualifier:
        return
    with _lock:
        _functions.pop(_key(fn), None)
        prefix = f"{fn.function_arn}:"
        for arn in [a for a in _alias_writes if a.startswith(prefix)]:
            _alias_writes.pop(arn, None)


# --------------------------------------------------------------------------- invoke
_inner_invoke: Any = None


def _function_invoke(self: Any, body: Any, request_headers: Any, response_headers: Any) -> Any:
    """Refused while Pending; $LATEST runs its previous code while an update is in progress."""
    record = lifecycle(self)
    now = time.monotonic()
    if record.pending(now):
        raise ResourceConflict(PENDING_MESSAGE)
    previous = record.previous
    if str(self.version) == LATEST and record.updating(now) and previous is not None:
        return _inner_invoke(previous, body, request_headers, response_headers)
    return _inner_invoke(self, body, request_headers, response_headers)


# --------------------------------------------------------------------------- aliases
_original_update_alias = lambda_models.LambdaBackend.update_alias
_original_get_alias_response = lambda_responses.LambdaResponse.get_alias
_original_list_aliases_response = lambda_responses.LambdaResponse.list_aliases


def _update_alias(
    self: Any,
    name: str,
    function_name: str,
    function_version: str,
    description: str,
    routing_config: str,
) -> Any:
    """Update, remembering the value before the write for stale reads within stale_alias_s."""
    before = self.get_alias(name, function_name)
    previous = json.loads(json.dumps(before.to_json()))
    alias = _original_update_alias(
        self, name, function_name, function_version, description, routing_config
    )
    window_s = fidelity.for_function(_function_of(alias.arn)).stale_alias_s
    if window_s > 0:
        with _lock:
            _alias_writes[alias.arn] = AliasWrite(time.monotonic() + window_s, previous)
    return alias


def _function_of(alias_arn: str) -> str:
    # arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME:ALIAS
    return alias_arn.split(":")[6]


def _as_read(document: dict[str, Any]) -> dict[str, Any]:
    """The alias document a read returns now: the previous one, when the dice say stale."""
    arn = str(document.get("AliasArn", ""))
    with _lock:
        write = _alias_writes.get(arn)
    if write is None:
        return document
    if time.monotonic() >= write.until:
        with _lock:
            if _alias_writes.get(arn) is write:
                _alias_writes.pop(arn, None)
        return document
    probability = fidelity.for_function(_function_of(arn)).stale_alias_p
    return copy.deepcopy(write.previous) if random.random() < probability else document


def _get_alias_response(self: Any) -> Any:
    """get_alias, possibly stale inside the window after an update_alias."""
    status, headers, body = _original_get_alias_response(self)
    return status, headers, json.dumps(_as_read(json.loads(body)))


def _list_aliases_response(self: Any) -> Any:
    """list_aliases, each alias possibly stale inside its window after an update_alias."""
    status, headers, body = _original_list_aliases_response(self)
    document = json.loads(body)
    document["Aliases"] = [_as_read(alias) for alias in document.get("Aliases", [])]
    return status, headers, json.dumps(document)


def install() -> None:
    """Apply the lifecycle and alias patches; after moto_bridge's own (invoke is wrapped)."""
    global _inner_invoke
    if lambda_models.LambdaFunction.invoke is not _function_invoke:
        _inner_invoke = lambda_models.LambdaFunction.invoke
    lambda_models.LambdaFunction.invoke = _function_invoke
    lambda_models.LambdaFunction.get_configuration = _get_configuration
    lambda_models.LambdaBackend.create_function = _create_function
    lambda_models.LambdaBackend.update_function_code = _update_function_code
    lambda_models.LambdaBackend.update_function_configuration = _update_function_configuration
    lambda_models.LambdaBackend.publish_version = _publish_version
    lambda_models.LambdaBackend.delete_function = _delete_function
    lambda_models.LambdaBackend.update_alias = _update_alias
    lambda_responses.LambdaResponse.get_alias = _get_alias_response
    lambda_responses.LambdaResponse.list_aliases = _list_aliases_response
