"""bedrock-agent-runtime's error table: every error of the tree has a row (its own or a parent's), the statuses and
names are those of botocore's model, and in-stream errors are exception frames botocore decodes."""

from __future__ import annotations

import json
from typing import Any

import botocore.session
import pytest
from botocore.eventstream import EventStreamBuffer

from outcrop import errors
from outcrop.api.bedrock_agent_runtime.errors import TABLE, encode_error, encode_stream_error


def _classes() -> list[type[errors.OutcropError]]:
    found, todo = [], list(errors.OutcropError.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls.__module__ == "outcrop.errors":  # the tree itself (other modules subclass with their own arguments)
            found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("cls", _classes(), ids=lambda c: c.__name__)
def test_every_error_has_a_row(cls: type[Any]) -> None:
    assert any(c in TABLE for c in cls.__mro__)
    r = encode_error(cls("what went wrong"))
    assert json.loads(bytes(r.body))["message"] == "what went wrong" and r.headers["x-amzn-errortype"]
    assert r.status_code < 500 or cls.__name__ in ("InternalFailure", "ServiceUnavailable")


def test_statuses_and_stream_members_are_botocores() -> None:
    model = botocore.session.get_session().get_service_model("bedrock-agent-runtime")
    operation = model.operation_model("RetrieveAndGenerateStream")
    statuses = {e.name: e.metadata["error"]["httpStatusCode"] for e in operation.error_shapes}
    members = set(operation.output_shape.members["stream"].members)
    for cls, (status, code, member) in TABLE.items():
        if code in statuses and cls not in (errors.RequestTooLarge, errors.HeadersTooLarge):  # HTTP's own statuses
            assert statuses[code] == status, code
        assert member in members, member
    assert encode_error(errors.NotFound("x")).status_code == 404
    assert encode_error(errors.Conflict("x")).status_code == 409
    assert encode_error(errors.ModelFailure("x")).headers["x-amzn-errortype"] == "DependencyFailedException"


def test_stream_error_frame() -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(encode_stream_error(errors.Overloaded("busy")))
    (message,) = list(buffer)
    assert message.headers[":message-type"] == "exception"
    assert message.headers[":exception-type"] == "throttlingException"
    assert json.loads(message.payload) == {"message": "busy"}
