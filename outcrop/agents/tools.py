"""An agent's action groups and knowledge bases as the canonical ChatRequest's tools, and the model's tool calls
back as the agent's invocations — so the engines' own tool calling (and grammar constraints where they have them)
drives the agent.

Names: a function is `<actionGroup>__<function>`; an API operation `<actionGroup>__<operationId>` (or its method
and path when it has no operationId); a knowledge base `knowledge_base__<knowledgeBaseId>`, taking one argument,
`searchQuery`. Parameters keep their JSON-schema types for the model; Bedrock hands them to the caller as text
(`value` a string), which `invocation` does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from outcrop.agents.definition import ActionGroup, AgentDefinition, Function, KnowledgeBaseRef, Operation
from outcrop.agents.events import Invocation
from outcrop.conversation import Tool, ToolUse

KB_PREFIX = "knowledge_base__"
_UNSAFE = re.compile(r"[^0-9A-Za-z_-]+")


@dataclass(frozen=True)
class Target:
    group: ActionGroup | None = None
    function: Function | None = None
    operation: Operation | None = None
    knowledge_base: KnowledgeBaseRef | None = None


def operation_name(group: ActionGroup, op: Operation) -> str:
    tail = op.operation_id or f"{op.method}_{op.path}"
    return f"{group.name}__{_UNSAFE.sub('_', tail).strip('_')}"


def _function_tool(group: ActionGroup, fn: Function) -> Tool:
    props = {p.name: {"type": p.type, **({"description": p.description} if p.description else {})}
             for p in fn.parameters}  # fmt: skip
    schema = {"type": "object", "properties": props, "required": [p.name for p in fn.parameters if p.required]}
    description = fn.description or f"{fn.name} ({group.name})"
    return Tool(f"{group.name}__{fn.name}", description, schema)


def _operation_tool(group: ActionGroup, op: Operation) -> Tool:
    props: dict[str, Any] = {}
    required: list[str] = []
    for p in op.parameters:
        props[p.name] = {"type": p.type, **({"description": p.description} if p.description else {})}
        if p.required:
            required.append(p.name)
    body = op.body or {}
    for name, schema in (body.get("properties") or {}).items():
        props.setdefault(name, dict(schema))
        if op.body_required and name in (body.get("required") or ()):
            required.append(name)
    schema = {"type": "object", "properties": props, "required": required}
    return Tool(operation_name(group, op), op.description or f"{op.method} {op.path}", schema)


def _kb_tool(kb: KnowledgeBaseRef) -> Tool:
    schema = {"type": "object", "properties": {"searchQuery": {"type": "string", "description": "what to look up"}},
              "required": ["searchQuery"]}  # fmt: skip
    return Tool(f"{KB_PREFIX}{kb.knowledge_base_id}", f"Search the knowledge base: {kb.description}", schema)


def tools(definition: AgentDefinition) -> tuple[tuple[Tool, ...], dict[str, Target]]:
    """The tools offered to the model, and what each name stands for."""
    out: list[Tool] = []
    targets: dict[str, Target] = {}
    for group in definition.action_groups:
        if not group.enabled:
            continue
        for fn in group.functions:
            tool = _function_tool(group, fn)
            out.append(tool)
            targets[tool.name] = Target(group=group, function=fn)
        for op in group.operations:
            tool = _operation_tool(group, op)
            out.append(tool)
            targets[tool.name] = Target(group=group, operation=op)
    for kb in definition.knowledge_bases:
        if kb.enabled:
            tool = _kb_tool(kb)
            out.append(tool)
            targets[tool.name] = Target(knowledge_base=kb)
    return tuple(out), targets


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def invocation(call: ToolUse, target: Target) -> Invocation:
    """The model's call as the agent's invocation (what returnControl, the Lambda event and the trace carry)."""
    args: Mapping[str, Any] = call.input
    if target.knowledge_base is not None:
        query = args.get("searchQuery") or next((v for v in args.values() if isinstance(v, str)), "")
        return Invocation("KNOWLEDGE_BASE", call.id, knowledge_base_id=target.knowledge_base.knowledge_base_id,
                          query=str(query), execution="KNOWLEDGE_BASE")  # fmt: skip
    group = target.group
    assert group is not None
    execution: Literal["LAMBDA", "RETURN_CONTROL"] = "LAMBDA" if group.executor.kind == "LAMBDA" else "RETURN_CONTROL"
    if target.function is not None:
        types: dict[str, str] = {p.name: p.type for p in target.function.parameters}
        params = tuple((k, types.get(k, "string"), _text(v)) for k, v in args.items())
        return Invocation("FUNCTION", call.id, group.name, function=target.function.name, parameters=params,
                          execution=execution)  # fmt: skip
    op = target.operation
    assert op is not None
    declared = {p.name: p.type for p in op.parameters}
    body_props = (op.body or {}).get("properties") or {}
    params = tuple((k, declared[k], _text(v)) for k, v in args.items() if k in declared)
    body = tuple((k, str((body_props.get(k) or {}).get("type", "string")), _text(v))
                 for k, v in args.items() if k not in declared)  # fmt: skip
    return Invocation("API", call.id, group.name, api_path=op.path, method=op.method, parameters=params, body=body,
                      execution=execution)  # fmt: skip
