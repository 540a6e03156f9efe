"""bedrock-agent-runtime bodies <-> the knowledge package's values. Pure: bodies come already checked against
botocore's model (types, enums, ranges, unknown members); this reads their meaning and refuses, naming the
member, what this server does not do — nothing is silently ignored.

Refused: retrievalQuery of type IMAGE, implicitFilterConfiguration (filters inferred by a model),
orchestrationConfiguration (query decomposition), an s3Location external source, reranking model fields,
userContext (per-user document access control, which this server's knowledge bases do not have).
Accepted with no effect: performanceConfig.latency (one way to run here) and sessionConfiguration.kmsKeyArn
(kept with the session, sessions.py).

Citations: `span.end` is the offset of the part's last character (inclusive), so `output.text[start : end + 1]`
is the part's text. (Botocore's model says only "where the text with a citation ends"; inclusive is a choice made
here, stated in the README.)
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Literal

from outcrop import errors
from outcrop.api.bedrock import eventstream
from outcrop.conversation import GuardrailRef, Sampling
from outcrop.knowledge.external import Document
from outcrop.knowledge.rag import Cited, Generation, GuardrailAction, Output, RagEvent, RagRequest, RagResult
from outcrop.knowledge.retrieval import Passage, Rerank, Retrieval
from outcrop.knowledge.vectors import SearchType, parse_filter

EXTRA_FIELDS = ("top_k", "seed", "ignore_eos")  # additionalModelRequestFields passed to the engine


def _question(text: Any, where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise errors.InvalidRequest(f"{where} must not be empty.")
    return text


def guardrail(raw: Mapping[str, Any] | None) -> GuardrailRef | None:
    if not raw:
        return None
    return GuardrailRef(raw["guardrailId"], raw["guardrailVersion"])


def _rerank(raw: Mapping[str, Any], where: str) -> Rerank:
    bedrock = raw.get("bedrockRerankingConfiguration")
    if bedrock is None:
        raise errors.InvalidRequest(f"{where}.bedrockRerankingConfiguration is required for type "
                                    "BEDROCK_RERANKING_MODEL.")  # fmt: skip
    model = bedrock["modelConfiguration"]
    if model.get("additionalModelRequestFields"):
        raise errors.InvalidRequest(f"{where}.bedrockRerankingConfiguration.modelConfiguration."
                                    "additionalModelRequestFields: this server's reranking takes none.")  # fmt: skip
    if not model["modelArn"]:
        raise errors.InvalidRequest(f"{where}.bedrockRerankingConfiguration.modelConfiguration.modelArn is empty.")
    meta = bedrock.get("metadataConfiguration") or {}
    mode: Literal["NONE", "ALL", "SELECTIVE"] = meta.get("selectionMode", "NONE")
    selective = meta.get("selectiveModeConfiguration") or {}
    include = tuple(f["fieldName"] for f in selective.get("fieldsToInclude") or ())
    exclude = tuple(f["fieldName"] for f in selective.get("fieldsToExclude") or ())
    return Rerank(model["modelArn"], bedrock.get("numberOfRerankedResults"), mode, include, exclude)


def retrieval(raw: Mapping[str, Any] | None, where: str = "retrievalConfiguration") -> Retrieval:
    """vectorSearchConfiguration, or (newer botocore models) managedSearchConfiguration: "the best strategy for the
    store", which here is HYBRID; its rerankingModelType MANAGED reranks with the knowledge base's own embedding
    model, CUSTOM with the model its rerankingConfiguration names."""
    if not raw:
        return Retrieval()
    if "vectorSearchConfiguration" in raw and "managedSearchConfiguration" in raw:
        raise errors.InvalidRequest(f"{where}: give vectorSearchConfiguration or managedSearchConfiguration, not both.")
    if "managedSearchConfiguration" in raw:
        managed = raw["managedSearchConfiguration"]
        at = f"{where}.managedSearchConfiguration"
        kind = managed.get("rerankingModelType", "CUSTOM" if "rerankingConfiguration" in managed else "NONE")
        rerank = None
        if kind == "MANAGED":
            rerank = Rerank("")  # the knowledge base's embedding model
        elif kind == "CUSTOM":
            if "rerankingConfiguration" not in managed:
                raise errors.InvalidRequest(f"{at}.rerankingConfiguration is required for rerankingModelType CUSTOM.")
            rerank = _rerank(managed["rerankingConfiguration"], f"{at}.rerankingConfiguration")
        return Retrieval(
            number_of_results=managed.get("numberOfResults", 5),
            search_type=SearchType.HYBRID,
            filter=parse_filter(managed["filter"], f"{at}.filter") if "filter" in managed else None,
            rerank=rerank,
        )
    vector = raw.get("vectorSearchConfiguration") or {}
    at = f"{where}.vectorSearchConfiguration"
    if "implicitFilterConfiguration" in vector:
        raise errors.InvalidRequest(f"{at}.implicitFilterConfiguration is not supported by this server (it does not "
                                    "infer filters from the query with a model); pass an explicit filter.")  # fmt: skip
    flt = parse_filter(vector["filter"], f"{at}.filter") if "filter" in vector else None
    reranking = vector.get("rerankingConfiguration")
    return Retrieval(
        number_of_results=vector.get("numberOfResults", 5),
        search_type=SearchType(vector.get("overrideSearchType", "SEMANTIC")),
        filter=flt,
        rerank=_rerank(reranking, f"{at}.rerankingConfiguration") if reranking else None,
    )


def _no_user_context(body: Mapping[str, Any]) -> None:
    if "userContext" in body:
        raise errors.InvalidRequest("userContext: this server's knowledge bases have no per-user document access "
                                    "control, so it cannot filter results by user; leave userContext out.")  # fmt: skip


def decode_retrieve(body: Mapping[str, Any]) -> tuple[str, Retrieval, GuardrailRef | None]:
    _no_user_context(body)
    query = body["retrievalQuery"]
    if query.get("type") == "IMAGE" or "image" in query:
        raise errors.InvalidRequest("retrievalQuery: this server's knowledge bases hold text; send "
                                    "retrievalQuery.text, not an image.")  # fmt: skip
    text = _question(query.get("text"), "retrievalQuery.text")
    return text, retrieval(body.get("retrievalConfiguration")), guardrail(body.get("guardrailConfiguration"))


def _sampling(generation: Mapping[str, Any], where: str) -> Sampling:
    text = (generation.get("inferenceConfig") or {}).get("textInferenceConfig") or {}
    extra = dict(generation.get("additionalModelRequestFields") or {})
    unknown = sorted(set(extra) - set(EXTRA_FIELDS))
    if unknown:
        raise errors.InvalidRequest(f"{where}.additionalModelRequestFields: unsupported key(s) {unknown}; "
                                    f"supported: {list(EXTRA_FIELDS)}.")  # fmt: skip
    for key, kind in (("top_k", int), ("seed", int), ("ignore_eos", bool)):
        value = extra.get(key)
        if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise errors.InvalidRequest(f"{where}.additionalModelRequestFields.{key} must be a {kind.__name__}.")
    if isinstance(extra.get("top_k"), int) and extra["top_k"] < 0:
        raise errors.InvalidRequest(f"{where}.additionalModelRequestFields.top_k must not be negative.")
    return Sampling(max_tokens=text.get("maxTokens") or None, temperature=text.get("temperature"),
                    top_p=text.get("topP"), top_k=extra.get("top_k"), stop=tuple(text.get("stopSequences") or ()),
                    seed=extra.get("seed"), ignore_eos=bool(extra.get("ignore_eos", False)))  # fmt: skip


def _generation(model: str, raw: Mapping[str, Any] | None, where: str) -> Generation:
    raw = raw or {}
    template = (raw.get("promptTemplate") or {}).get("textPromptTemplate")
    return Generation(model, template, _sampling(raw, where), guardrail(raw.get("guardrailConfiguration")))


def _document(source: Mapping[str, Any], where: str) -> Document:
    if source["sourceType"] == "S3" or "s3Location" in source:
        raise errors.InvalidRequest(f"{where}: an S3 source is not read by this server for one request; pass the "
                                    "document as byteContent, or ingest the bucket into a knowledge base.")  # fmt: skip
    content = source.get("byteContent")
    if content is None:
        raise errors.InvalidRequest(f"{where}.byteContent is required for sourceType BYTE_CONTENT.")
    try:
        data = base64.b64decode(content["data"], validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise errors.InvalidRequest(f"{where}.byteContent.data must be base64.") from None
    return Document(content["identifier"], content["contentType"], data)


def decode_rag(body: Mapping[str, Any]) -> RagRequest:
    _no_user_context(body)
    question = _question(body["input"]["text"], "input.text")
    config = body.get("retrieveAndGenerateConfiguration")
    if config is None:
        raise errors.InvalidRequest("retrieveAndGenerateConfiguration is required.")
    kind = config["type"]
    member = "knowledgeBaseConfiguration" if kind == "KNOWLEDGE_BASE" else "externalSourcesConfiguration"
    other = "externalSourcesConfiguration" if kind == "KNOWLEDGE_BASE" else "knowledgeBaseConfiguration"
    where = f"retrieveAndGenerateConfiguration.{member}"
    if member not in config:
        raise errors.InvalidRequest(f"{where} is required for type {kind}.")
    if other in config:
        raise errors.InvalidRequest(f"retrieveAndGenerateConfiguration.{other} does not go with type {kind}.")
    session_id: str | None = body.get("sessionId")
    kms_key_arn: str | None = (body.get("sessionConfiguration") or {}).get("kmsKeyArn")
    raw = config[member]
    generation = _generation(raw["modelArn"], raw.get("generationConfiguration"), f"{where}.generationConfiguration")
    if kind == "KNOWLEDGE_BASE":
        if "orchestrationConfiguration" in raw:
            raise errors.InvalidRequest(f"{where}.orchestrationConfiguration is not supported by this server (no query "
                                        "decomposition or orchestration prompt); leave it out.")  # fmt: skip
        return RagRequest(question, generation, knowledge_base_id=raw["knowledgeBaseId"],
                          retrieval=retrieval(raw.get("retrievalConfiguration"), f"{where}.retrievalConfiguration"),
                          session_id=session_id, kms_key_arn=kms_key_arn)  # fmt: skip
    documents = tuple(_document(s, f"{where}.sources.{i}") for i, s in enumerate(raw["sources"]))
    return RagRequest(question, generation, documents=documents, session_id=session_id, kms_key_arn=kms_key_arn)


# --- encoding ------------------------------------------------------------------------------------------


def reference(p: Passage) -> dict[str, Any]:
    return {"content": {"type": "TEXT", "text": p.text}, "location": dict(p.location), "metadata": dict(p.metadata)}


def retrieval_result(p: Passage) -> dict[str, Any]:
    out = reference(p)
    if p.score is not None:
        out["score"] = p.score
    return out


def retrieve_response(passages: list[Passage], next_token: str | None, intervened: bool | None) -> dict[str, Any]:
    out: dict[str, Any] = {"retrievalResults": [retrieval_result(p) for p in passages]}
    if next_token:
        out["nextToken"] = next_token
    if intervened is not None:
        out["guardrailAction"] = "INTERVENED" if intervened else "NONE"
    return out


def citation(c: Cited) -> dict[str, Any]:
    part = {"textResponsePart": {"text": c.text, "span": {"start": c.start, "end": max(c.start, c.end - 1)}}}
    return {"generatedResponsePart": part, "retrievedReferences": [reference(p) for p in c.passages]}


def rag_response(result: RagResult) -> dict[str, Any]:
    out: dict[str, Any] = {"output": {"text": result.text}, "sessionId": result.session_id,
                           "citations": [citation(c) for c in result.citations]}  # fmt: skip
    if result.guardrail_intervened is not None:
        out["guardrailAction"] = "INTERVENED" if result.guardrail_intervened else "NONE"
    return out


def encode_event(event: RagEvent) -> list[bytes]:
    """RetrieveAndGenerateStream's frames: `output` {text}, `citation` (the Citation members, and the same again
    under the deprecated `citation` member for older clients), `guardrail` {action}."""
    match event:
        case Output(text=text):
            return [eventstream.event("output", {"text": text})]
        case Cited():
            body = citation(event)
            return [eventstream.event("citation", {**body, "citation": body})]
        case GuardrailAction(intervened=intervened):
            return [eventstream.event("guardrail", {"action": "INTERVENED" if intervened else "NONE"})]
    return []
