"""The playground's "Show code": its current request as a boto3 (Converse), an openai and a curl program against this
server. Secrets are never written into them: with keys, they read the key from the environment."""

from __future__ import annotations

import json
import shlex
from typing import Any
from urllib.parse import quote

from outcrop.console.chat import PlaygroundBody


def _py(value: Any, indent: int, width: int = 100) -> str:
    """`value` (JSON-like) as a Python literal in the style the README's examples use (double quotes), on one line
    when it fits, else one item a line, continued lines indented by `indent`."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, str | int | float):
        return json.dumps(value, ensure_ascii=False)  # a JSON string or number is a Python literal too
    if isinstance(value, dict):
        items = [f"{json.dumps(str(k), ensure_ascii=False)}: {_py(v, indent + 4, width)}" for k, v in value.items()]
        brackets = "{}"
    else:
        items = [_py(v, indent + 4, width) for v in value]
        brackets = "[]"
    flat = brackets[0] + ", ".join(items) + brackets[1]
    if len(flat) + indent <= width and "\n" not in flat:
        return flat
    inner = " " * (indent + 4)
    return brackets[0] + "\n" + "".join(f"{inner}{item},\n" for item in items) + " " * indent + brackets[1]


def converse_body(body: PlaygroundBody) -> dict[str, Any]:
    """The Bedrock Converse request for the playground's request (what boto3 and curl send)."""
    out: dict[str, Any] = {"messages": [{"role": t.role, "content": [{"text": t.text}]} for t in body.messages]}
    if body.system:
        out["system"] = [{"text": body.system}]
    config = {k: v for k, v in (("temperature", body.temperature), ("topP", body.topP),
                                ("maxTokens", body.maxTokens)) if v is not None}  # fmt: skip
    if config:
        out["inferenceConfig"] = config
    if body.guardrail is not None:
        out["guardrailConfig"] = {"guardrailIdentifier": body.guardrail.id,
                                  "guardrailVersion": body.guardrail.version, "trace": "enabled"}  # fmt: skip
    return out


def boto3_code(body: PlaygroundBody, base_url: str, keys: bool) -> str:
    credentials = "" if keys else ',\n                  aws_access_key_id="any", aws_secret_access_key="any"'
    lines = ["import boto3", ""]
    if keys:
        lines.append("# signed with the Outcrop AWS access key in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    lines.append(f'rt = boto3.client("bedrock-runtime", endpoint_url="{base_url}", region_name="us-east-1"'
                 f"{credentials})")  # fmt: skip
    args = [f"    modelId={_py(body.model, 4)},"]
    for name, value in converse_body(body).items():
        args.append(f"    {name}={_py(value, 4)},")
    lines += ["response = rt.converse(", *args, ")", 'print(response["output"]["message"]["content"][0]["text"])']
    return "\n".join(lines) + "\n"


def openai_code(body: PlaygroundBody, base_url: str, keys: bool) -> str:
    messages: list[dict[str, str]] = [{"role": "system", "content": body.system}] if body.system else []
    messages += [{"role": t.role, "content": t.text} for t in body.messages]
    key = 'os.environ["OUTCROP_API_KEY"]' if keys else '"any"'
    lines = ["import os", ""] if keys else []
    lines += ["from openai import OpenAI", "", f'client = OpenAI(base_url="{base_url}/v1", api_key={key})',
              "completion = client.chat.completions.create(", f"    model={_py(body.model, 4)},",
              f"    messages={_py(messages, 4)},"]  # fmt: skip
    for name, value in (("temperature", body.temperature), ("top_p", body.topP), ("max_tokens", body.maxTokens)):
        if value is not None:
            lines.append(f"    {name}={_py(value, 4)},")
    if body.guardrail is not None:
        headers = {"X-Outcrop-Guardrail": f"{body.guardrail.id}:{body.guardrail.version}",
                   "X-Outcrop-Guardrail-Trace": "enabled"}  # fmt: skip
        lines.append(f"    extra_headers={_py(headers, 4)},")
    lines += [")", "print(completion.choices[0].message.content)"]
    return "\n".join(lines) + "\n"


def curl_code(body: PlaygroundBody, base_url: str, keys: bool) -> str:
    url = f"{base_url}/model/{quote(body.model, safe='')}/converse"
    lines = [f"curl -sS {shlex.quote(url)}", "  -H 'Content-Type: application/json'"]
    if keys:
        lines.append('  -H "Authorization: Bearer $OUTCROP_API_KEY"')
    lines.append(f"  -d {shlex.quote(json.dumps(converse_body(body), ensure_ascii=False))}")
    return " \\\n".join(lines) + "\n"


def snippets(body: PlaygroundBody, base_url: str, keys: bool) -> dict[str, str]:
    return {"boto3": boto3_code(body, base_url, keys), "openai": openai_code(body, base_url, keys),
            "curl": curl_code(body, base_url, keys)}  # fmt: skip
