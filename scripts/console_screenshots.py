"""Screenshots of the web console's main pages for the README: docs/screenshots/<page>.png.

    python scripts/console_screenshots.py            # starts its own `outcrop serve` (keys mode) in a temp home
    python scripts/console_screenshots.py --width 390   # the phone-width variants (<page>-phone.png)

It starts a real `outcrop serve` with the built-in model in a temporary $OUTCROP_HOME, makes an administrator and
a member key with the CLI, sends a few real calls (openai and boto3, so Usage has something to draw), makes a
guardrail, signs in through the console's form in Debian's Chromium (as tests/console/browser does; Playwright's
own browser download is never used) and saves each page. Nothing here is shipped; the PNGs are committed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
PAGES = ("models", "playground", "guardrails", "knowledge-bases", "batch", "keys", "usage")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def outcrop(env: dict[str, str], *args: str) -> str:
    cmd = [sys.executable, "-m", "outcrop.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout


def key_from(output: str) -> str:
    """The secret a `keys create` printed (its last `ocp_` word)."""
    words = [w.strip("'\",") for w in output.split() if w.strip("'\",").startswith("ocp_")]
    if not words:
        raise SystemExit(f"no API key in: {output}")
    return words[-1]


def traffic(url: str, admin: str, member: str) -> None:
    import boto3
    from openai import OpenAI

    for key, n in ((admin, 4), (member, 2)):
        client = OpenAI(base_url=f"{url}/v1", api_key=key)
        for i in range(n):
            client.chat.completions.create(model="outcrop.tiny-chat-v1:0", max_tokens=32,
                                           messages=[{"role": "user", "content": f"Say hello {i}"}])  # fmt: skip
    os.environ["AWS_BEARER_TOKEN_BEDROCK"] = admin  # boto3 sends the API key as a Bedrock API key
    control = boto3.client("bedrock", endpoint_url=url, region_name="us-east-1")
    gid = control.create_guardrail(
        name="no-frobnicators", blockedInputMessaging="Sorry, I can't talk about that.",
        blockedOutputsMessaging="Sorry, I can't answer that.",
        topicPolicyConfig={"topicsConfig": [{"name": "Investment advice", "type": "DENY",
                                             "definition": "Recommendations on which stocks or funds to buy.",
                                             "examples": ["Which stocks should I buy this year?"]}]},
        wordPolicyConfig={"wordsConfig": [{"text": "frobnicator"}], "managedWordListsConfig": [{"type": "PROFANITY"}]},
        sensitiveInformationPolicyConfig={"piiEntitiesConfig": [{"type": "EMAIL", "action": "ANONYMIZE"}]},
    )["guardrailId"]  # fmt: skip
    control.create_guardrail_version(guardrailIdentifier=gid, description="first")


def shoot(url: str, admin: str, width: int) -> list[Path]:
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT))
    from tests.console.browser.conftest import ARGS, chromium

    OUT.mkdir(parents=True, exist_ok=True)
    saved = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=ARGS)
        page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{url}/console/models")
        page.get_by_label("API key or access key ID").fill(admin)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{url}/console/models")
        suffix = "" if width >= 800 else "-phone"
        for name in PAGES:
            page.goto(f"{url}/console/{name}")
            page.wait_for_load_state("networkidle")
            if name == "playground":
                page.get_by_label("Message", exact=False).first.fill("What is the capital of France?")
                page.get_by_role("button", name="Send").click()
                page.wait_for_timeout(2500)
            path = OUT / f"{name}{suffix}.png"
            page.screenshot(path=str(path), full_page=width >= 800)
            saved.append(path)
        browser.close()
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "OUTCROP_HOME": home}
        admin = key_from(outcrop(env, "keys", "create", "ada", "--admin", "--label", "console"))
        member = key_from(outcrop(env, "keys", "create", "grace", "--label", "notebook"))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([sys.executable, "-m", "outcrop.cli", "serve", "--port", str(port), "--auth",
                                   "keys"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).status_code < 500:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            traffic(url, admin, member)
            print(json.dumps([str(p.relative_to(ROOT)) for p in shoot(url, admin, args.width)], indent=1))
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
