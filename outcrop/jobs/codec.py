"""The seam between the job runner and a batch API's file formats (Bedrock's, OpenAI's): a codec.

The runner knows jobs, records, scheduling and the store; a codec knows only its wire: which input files a job
names, how a file splits into records (and which are wrong before anything runs), how a record becomes a model
call and its answer an output line, and which output objects a finished job writes. A codec does no I/O of its
own beyond what it is handed (`inputs` gets the object store to list and look, nothing else).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from outcrop import errors
from outcrop.conversation import ChatRequest, EmbedRequest
from outcrop.jobs.store import Job, Parsed, Record
from outcrop.objects import Objects


@dataclass(frozen=True)
class Work:
    """One record's model call: the canonical request, and how its result (ChatResult / EmbedResult) becomes the
    record's output line."""

    request: ChatRequest | EmbedRequest
    encode: Callable[[Any], str]


class Codec(Protocol):
    name: str  # batch_jobs.codec
    operation: str  # the operation usage records of its records are metered under (dialect "batch")

    def inputs(self, job: Job, objects: Objects) -> list[str]:
        """The URIs of the job's input files (blocking; an OutcropError fails the job with its message)."""
        ...

    def parse(self, job: Job, files: Sequence[bytes]) -> list[Parsed]:
        """Every record of the input files, in order; a wrong one carries its error line."""
        ...

    def decode(self, job: Job, record: Record) -> Work:
        """The record's model call; InvalidRequest when its body is one the model cannot take."""
        ...

    def error(self, job: Job, record: Record, error: errors.OutcropError) -> str:
        """The output line of a record that failed."""
        ...

    def outputs(self, job: Job, records: Iterator[Record]) -> list[tuple[str, bytes]]:
        """The output objects of a finished job (URI, content), written in this order."""
        ...
