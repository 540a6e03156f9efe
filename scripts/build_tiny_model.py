"""Build Outcrop's built-in tiny chat model: outcrop/models/outcrop-tiny-chat.gguf.

The model is a real (if very small) llama-architecture transformer with a real byte-level BPE
tokenizer and a ChatML chat template with tool calls (``CHATML_TOOLS_TEMPLATE``). It is trained
from scratch, deterministically, to answer the scripted conversations in
``outcrop/models/tiny_script.py`` exactly at temperature 0 when served through llama.cpp, so tests
can assert real content coming from the real engine.

Steps:

1. Train a byte-level BPE tokenizer (HF ``tokenizers``, GPT-2 pre-tokenizer regex) on the scripted
   conversations plus some inline English, with ``<|endoftext|>``, ``<|im_start|>`` and
   ``<|im_end|>`` as control tokens (EOS = ``<|im_end|>``, no BOS).
2. Write a tensor-less GGUF with that vocabulary and tokenize every training sequence with
   llama.cpp's own tokenizer (``Llama(vocab_only=True)``), so training sees exactly the token ids
   that serving will see. Prompts are rendered with ``outcrop.engines.chat_template.render``, the
   renderer the server uses.
3. Train the transformer in PyTorch (Adam, fixed seed) until every answer token, and the closing
   ``<|im_end|>``, is the top prediction by a wide logit margin. Besides the scripted cases it
   learns to finish grammar-forced answers (a forced tool call, a forced JSON object) on every
   tool-less prompt (see ``forced_cases``), and reads short random JSON objects so that a string in
   a shape the script never shows still closes (see ``random_json``).
4. Write the GGUF (arch ``llama``, F32 weights; llama.cpp's "normal" RoPE rotates adjacent pairs,
   which is what the PyTorch model does, so no q/k permutation is needed) and verify every case,
   every forced answer under the server's own grammar, and valid JSON for a schema it never saw,
   through llama-cpp-python at temperature 0. Exits non-zero if any fails.

Run it (a few minutes on 2 idle CPU cores; more on a busy machine)::

    pip install -e .[build-model]
    python scripts/build_tiny_model.py            # writes outcrop/models/outcrop-tiny-chat.gguf
    python scripts/build_tiny_model.py --out /tmp/tiny.gguf
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import gguf
import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outcrop.conversation import ChatRequest, ResponseFormat, Tool, ToolChoice  # noqa: E402
from outcrop.engines.chat_template import CHATML_TOOLS_TEMPLATE, render  # noqa: E402
from outcrop.engines.llamacpp.grammar import _json_gbnf, _tool_call_gbnf  # noqa: E402
from outcrop.models.tiny_script import CASES, Case, template_tools  # noqa: E402

DEFAULT_OUT = ROOT / "outcrop" / "models" / "outcrop-tiny-chat.gguf"

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
EOS_TOKEN = "<|im_end|>"
# llama.cpp's "gpt-2" pre-tokenizer is the GPT-2 regex, the same one HF's ByteLevel(use_regex=True)
# applies. ("default" would add llama.cpp's extra punctuation/digit splits and disagree with HF.)
TOKENIZER_PRE = "gpt-2"
VOCAB_SIZE = 1024
SEED = 1234


@dataclass(frozen=True)
class HParams:
    n_vocab: int
    n_embd: int = 128
    n_layer: int = 2
    n_head: int = 4
    n_ff: int = 384
    n_ctx: int = 4096
    rope_base: float = 10000.0
    rms_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


# Ordinary English (and a little code/JSON) so that arbitrary user text tokenizes into sensible
# pieces rather than single bytes. Byte-level fallback covers everything else.
ENGLISH = """\
Outcrop is a small server that speaks the same language as a cloud model service, but it runs on
your own machine. You can send it a question, and it will answer with text that a local model
writes. The first time you start it, it looks for models in a folder, loads the one you asked
for, and keeps it in memory until you stop the server.

The weather today is mild. In the morning it was cold and cloudy, with a light rain over the hills,
but by noon the sun came out and the temperature rose to eighteen degrees. Tomorrow will be warmer,
and the wind should stay calm through the evening. People walked along the river, children played
in the park, and the cafes were full until late at night.

Paris is the capital and largest city of France. London is the capital of the United Kingdom,
Berlin is the capital of Germany, Madrid is the capital of Spain, and Rome is the capital of Italy.
Each city has its own history, its own food, and its own music. Many people visit them every year.

Please write a short story about a dog who finds a key. Can you explain how this works? Summarize
the following text in one sentence. Translate this into French. What time is it? How are you?
Thank you very much for your help. I would like to know more about the system and the tools it
uses. Tell me a joke. Give me three reasons why the sky is blue. What is two plus two?

def add(a, b):
    return a + b

{"id": 42, "name": "example", "tags": ["alpha", "beta"], "active": true, "score": 3.5}
numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 2024 3.14 -7 50% $20
"""


def render_prompt(case: Case) -> str:
    tools = template_tools(case) or None
    return render(CHATML_TOOLS_TEMPLATE, case.messages, tools, add_generation_prompt=True)


def log(msg: str) -> None:
    print(msg, flush=True)


# Grammar-forced answers. The server can force a shape onto any prompt: a tool call (tool_choice
# any/tool) or a JSON object (response_format). The grammar only rules tokens out; what the model
# writes inside the shape is still up to its weights, and on an off-script prompt ("Hello" forced
# into get_weather) an untrained model wanders into text that never closes its string, or that the
# grammar lets through but JSON does not (raw newlines). So the model also learns to finish a
# forced start the way its scripted cases do: every tool-less case's prompt, rendered with the
# scripted call's tools, continues into that call, and every tool-less case's prompt continues into
# the scripted JSON object. The first answer token cannot be trained outright (unforced, the same
# prompt must still give its scripted answer), so it only has to beat the other tokens that start
# with the same character, which are all the grammar lets through there; every later token is
# trained as usual. verify() runs each one through the server's own grammar.


@dataclass(frozen=True)
class Forced:
    name: str
    prompt: str
    answer: str | None  # None: not trained, and any valid JSON will do (see held_out_cases)
    request: ChatRequest  # only to build the server's grammar


def forced_cases() -> list[Forced]:
    call = next(c for c in CASES if c.tools and c.answer.startswith("<tool_call>"))
    obj = next(c for c in CASES if not c.tools and c.answer.startswith("{"))
    tools = tuple(Tool(t["name"], t["description"], t["input_schema"]) for t in call.tools)
    tool_request = ChatRequest(model="tiny", tools=tools, tool_choice=ToolChoice("tool", tools[0].name))
    json_request = ChatRequest(model="tiny", response_format=ResponseFormat("json_object"))
    out = []
    for case in CASES:
        if case.tools:
            continue
        with_tools = render(CHATML_TOOLS_TEMPLATE, case.messages, template_tools(call), add_generation_prompt=True)
        out.append(Forced(f"{case.name}+call", with_tools, call.answer, tool_request))
        if case is not obj:
            out.append(Forced(f"{case.name}+json", render_prompt(case), obj.answer, json_request))
    return out


# Off-script JSON. A grammar can force a shape the script never shows (a guardrail judge's verdict
# schema, say) after a prompt the model never saw, and then nothing above tells the model to ever
# close a string: it fills it with memorized script until max_tokens. So it also reads short random
# JSON objects (keys and values drawn from ENGLISH's words, none of the script's keys) answering
# random sentences from ENGLISH. They are random, so they are not learnt exactly and do not count
# toward the margin; they teach that a string holds a few words and closes, and that an object
# closes and ends. held_out_cases checks that on keys and prompts the training never had.
N_RANDOM_JSON = 32
HELD_OUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": ["ALLOW", "VIOLATION"]},
        "reason": {"type": "string"},
        "revision": {"type": "string"},
    },
    "required": ["verdict", "reason", "revision"],
    "additionalProperties": False,
}


def random_json() -> list[tuple[str, str]]:
    """(prompt, answer) pairs, the same on every run."""
    rng = random.Random(SEED)
    script_keys = set(re.findall(r'"(\w+)":', " ".join(render_prompt(c) + c.answer for c in CASES)))
    held_out = set(HELD_OUT_SCHEMA["properties"])
    words = sorted({w for w in re.findall(r"[a-z]+", ENGLISH.lower()) if len(w) > 2} - script_keys - held_out)
    sentences = [t for t in re.findall(r"[A-Z][^.?!]*[.?!]", " ".join(ENGLISH.split())) if len(t) > 10]
    out = []
    for _ in range(N_RANDOM_JSON):
        messages = [{"role": "user", "content": rng.choice(sentences)}]
        if rng.random() < 0.5:
            messages.insert(0, {"role": "system", "content": rng.choice(sentences)})
        obj: dict[str, Any] = {}
        for key in rng.sample(words, rng.randint(1, 3)):
            obj[key] = " ".join(rng.sample(words, rng.randint(1, 3))) if rng.random() < 0.8 else rng.randint(0, 100)
        prompt = render(CHATML_TOOLS_TEMPLATE, messages, None, add_generation_prompt=True)
        out.append((prompt, json.dumps(obj)))
    return out


def held_out_cases() -> list[Forced]:
    """Forced JSON the training never saw: HELD_OUT_SCHEMA after every tool-less case's prompt and
    after the tokenizer probes as user messages; a JSON object after the probes."""
    schema_request = ChatRequest(model="tiny", response_format=ResponseFormat("json_schema", HELD_OUT_SCHEMA))
    json_request = ChatRequest(model="tiny", response_format=ResponseFormat("json_object"))
    out = [Forced(f"{c.name}+schema", render_prompt(c), None, schema_request) for c in CASES if not c.tools]
    for i, probe in enumerate(TOKENIZER_PROBES, 1):
        prompt = render(CHATML_TOOLS_TEMPLATE, [{"role": "user", "content": probe}], None, add_generation_prompt=True)
        out.append(Forced(f"probe{i}+schema", prompt, None, schema_request))
        out.append(Forced(f"probe{i}+json", prompt, None, json_request))
    return out


def forced_grammar(f: Forced) -> Any:
    from llama_cpp import LlamaGrammar

    gbnf = _tool_call_gbnf(f.request) if f.request.tools else _json_gbnf(f.request)
    assert gbnf is not None
    return LlamaGrammar.from_string(gbnf, verbose=False)


# --------------------------------------------------------------------------------------------------
# Tokenizer


@dataclass
class Vocab:
    tokens: list[str]
    types: list[int]
    merges: list[str]
    eos_id: int
    bos_id: int
    hf: Tokenizer  # the trained HF tokenizer, to cross-check llama.cpp's tokenization


def train_tokenizer() -> Vocab:
    special = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS))
    texts: list[str] = []
    for case in CASES:
        full = render_prompt(case) + case.answer
        texts.extend(p for p in special.split(full) if p)
    texts = texts * 4 + [p for p in ENGLISH.split("\n\n") if p.strip()]

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)

    model = json.loads(tok.to_str())["model"]
    vocab: dict[str, int] = model["vocab"]
    tokens = [""] * len(vocab)
    for piece, idx in vocab.items():
        tokens[idx] = piece
    assert all(tokens), "token ids are not contiguous"
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    types = [int(gguf.TokenType.CONTROL) if t in SPECIAL_TOKENS else int(gguf.TokenType.NORMAL) for t in tokens]
    tok.add_special_tokens(SPECIAL_TOKENS)
    return Vocab(tokens, types, merges, eos_id=vocab[EOS_TOKEN], bos_id=vocab["<|endoftext|>"], hf=tok)


# --------------------------------------------------------------------------------------------------
# GGUF


def write_gguf(path: Path, vocab: Vocab, hp: HParams, tensors: dict[str, np.ndarray] | None) -> None:
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_name("Outcrop Tiny Chat")
    w.add_description("Outcrop's built-in test model: answers a fixed script (outcrop/models/tiny_script.py)")
    w.add_license("apache-2.0")
    w.add_context_length(hp.n_ctx)
    w.add_embedding_length(hp.n_embd)
    w.add_block_count(hp.n_layer)
    w.add_feed_forward_length(hp.n_ff)
    w.add_head_count(hp.n_head)
    w.add_head_count_kv(hp.n_head)
    w.add_layer_norm_rms_eps(hp.rms_eps)
    w.add_rope_freq_base(hp.rope_base)
    w.add_rope_dimension_count(hp.head_dim)
    w.add_vocab_size(hp.n_vocab)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(TOKENIZER_PRE)
    w.add_token_list(vocab.tokens)
    w.add_token_types(vocab.types)
    w.add_token_merges(vocab.merges)
    w.add_bos_token_id(vocab.bos_id)
    w.add_eos_token_id(vocab.eos_id)
    w.add_pad_token_id(vocab.bos_id)
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML_TOOLS_TEMPLATE)

    for name, arr in (tensors or {}).items():
        w.add_tensor(name, np.ascontiguousarray(arr, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def load_llama(path: Path, **kwargs: Any) -> Any:
    try:
        from llama_cpp import Llama
    except ImportError as exc:  # pragma: no cover
        raise SystemExit(f"llama-cpp-python is required: {exc}") from exc
    return Llama(model_path=str(path), verbose=False, **kwargs)


@dataclass
class Example:
    name: str
    prompt: list[int]
    answer: list[int]  # answer tokens followed by EOS
    # Forced answers: the only tokens the first answer token has to beat (see forced_cases).
    first_rivals: list[int] | None = None
    scored: bool = True  # counts toward the margin (random_json's do not)


# Beyond the training texts: whitespace runs, digits, contractions, accents, emoji, code.
TOKENIZER_PROBES = [
    "  two  spaces,\ttab\n\n\nnewlines   \n end ",
    "It's 3.14159 and 2024-06-01, isn't it? I'll say we'd've 1234567 items.",
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber Stra\u00dfe \u65e5\u672c\u8a9e \U0001f600\U0001f44d",
    'print({"a": [1, 2, {"b": null}]}) # <tag attr="x">y</tag> && || ~= $HOME',
]


def tokenize_cases(vocab_gguf: Path, vocab: Vocab, forced: list[Forced]) -> list[Example]:
    llm = load_llama(vocab_gguf, vocab_only=True)

    def ours(text: str, special: bool) -> list[int]:
        return list(llm.tokenize(text.encode(), add_bos=False, special=special))

    # llama.cpp must split text exactly like the HF tokenizer we trained (this is what picks
    # tokenizer.ggml.pre): a mismatch on our own texts is fatal, on the probes a warning.
    for text in [render_prompt(c) + c.answer for c in CASES] + ENGLISH.split("\n\n"):
        if ours(text, True) != vocab.hf.encode(text).ids:
            raise SystemExit(f"llama.cpp and HF tokenize differently (tokenizer.ggml.pre?): {text!r}")
    for text in TOKENIZER_PROBES:
        if ours(text, False) != vocab.hf.encode(text).ids:
            log(f"warning: llama.cpp and HF tokenize this probe differently: {text!r}")
        if llm.detokenize(ours(text, False)).decode() != text:
            raise SystemExit(f"llama.cpp does not round-trip {text!r}")

    out = []
    for case in CASES:
        prompt = ours(render_prompt(case), True)
        answer = ours(case.answer, False)
        assert llm.detokenize(answer).decode() == case.answer, case.name
        out.append(Example(case.name, prompt, [*answer, vocab.eos_id]))
    pieces = [llm.detokenize([i]) for i in range(len(vocab.tokens))]
    for f in forced:
        assert f.answer is not None
        lead = f.answer[0].encode()
        rivals = [i for i, piece in enumerate(pieces) if piece.startswith(lead)]
        out.append(Example(f.name, ours(f.prompt, True), [*ours(f.answer, False), vocab.eos_id], rivals))
    for i, (chat, obj) in enumerate(random_json()):
        out.append(Example(f"random{i}", ours(chat, True), [*ours(obj, False), vocab.eos_id], scored=False))
    return out


# --------------------------------------------------------------------------------------------------
# Model (mirrors llama.cpp's LLM_ARCH_LLAMA graph)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_adjacent(x: torch.Tensor, base: float) -> torch.Tensor:
    """llama.cpp's LLAMA_ROPE_TYPE_NORM: rotate pairs (x[2i], x[2i+1]) by pos * base^(-2i/d).

    x: (batch, heads, seq, head_dim).
    """
    d = x.shape[-1]
    pos = torch.arange(x.shape[-2], dtype=torch.float32)
    inv = base ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
    ang = pos[:, None] * inv[None, :]  # (seq, d/2)
    cos, sin = ang.cos(), ang.sin()
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self, hp: HParams) -> None:
        super().__init__()
        self.hp = hp
        e = hp.n_embd
        self.attn_norm = RMSNorm(e, hp.rms_eps)
        self.q = nn.Linear(e, e, bias=False)
        self.k = nn.Linear(e, e, bias=False)
        self.v = nn.Linear(e, e, bias=False)
        self.o = nn.Linear(e, e, bias=False)
        self.ffn_norm = RMSNorm(e, hp.rms_eps)
        self.gate = nn.Linear(e, hp.n_ff, bias=False)
        self.up = nn.Linear(e, hp.n_ff, bias=False)
        self.down = nn.Linear(hp.n_ff, e, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, e = x.shape
        h, hd = self.hp.n_head, self.hp.head_dim
        y = self.attn_norm(x)
        q = self.q(y).view(b, t, h, hd).transpose(1, 2)
        k = self.k(y).view(b, t, h, hd).transpose(1, 2)
        v = self.v(y).view(b, t, h, hd).transpose(1, 2)
        q, k = rope_adjacent(q, self.hp.rope_base), rope_adjacent(k, self.hp.rope_base)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        mask = torch.ones(t, t, dtype=torch.bool).triu(1)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        x = x + self.o((att @ v).transpose(1, 2).reshape(b, t, e))
        y = self.ffn_norm(x)
        return x + self.down(F.silu(self.gate(y)) * self.up(y))


class TinyLlama(nn.Module):
    def __init__(self, hp: HParams) -> None:
        super().__init__()
        self.hp = hp
        self.embed = nn.Embedding(hp.n_vocab, hp.n_embd)
        self.blocks = nn.ModuleList(Block(hp) for _ in range(hp.n_layer))
        self.norm = RMSNorm(hp.n_embd, hp.rms_eps)
        self.output = nn.Linear(hp.n_embd, hp.n_vocab, bias=False)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for blk in self.blocks:
            x = blk(x)
        return self.output(self.norm(x))

    def gguf_tensors(self) -> dict[str, np.ndarray]:
        # nn.Linear weights are (out, in) row-major, which the gguf package writes as ggml
        # ne = [in, out]: exactly llama.cpp's layout. No q/k permutation: our RoPE is llama.cpp's.
        def a(t: torch.Tensor) -> np.ndarray:
            return t.detach().to(torch.float32).cpu().numpy()

        out = {"token_embd.weight": a(self.embed.weight)}
        for i, module in enumerate(self.blocks):
            blk = cast(Block, module)
            out.update(
                {
                    f"blk.{i}.attn_norm.weight": a(blk.attn_norm.weight),
                    f"blk.{i}.attn_q.weight": a(blk.q.weight),
                    f"blk.{i}.attn_k.weight": a(blk.k.weight),
                    f"blk.{i}.attn_v.weight": a(blk.v.weight),
                    f"blk.{i}.attn_output.weight": a(blk.o.weight),
                    f"blk.{i}.ffn_norm.weight": a(blk.ffn_norm.weight),
                    f"blk.{i}.ffn_gate.weight": a(blk.gate.weight),
                    f"blk.{i}.ffn_up.weight": a(blk.up.weight),
                    f"blk.{i}.ffn_down.weight": a(blk.down.weight),
                }
            )
        out["output_norm.weight"] = a(self.norm.weight)
        out["output.weight"] = a(self.output.weight)
        return out


# --------------------------------------------------------------------------------------------------
# Training


def batch(examples: list[Example], n_vocab: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids, targets (-100: no loss), and a logit bias that rules out what a forced first token
    does not have to beat."""
    seqs = [e.prompt + e.answer for e in examples]
    n = max(len(s) for s in seqs) - 1
    ids = torch.zeros(len(seqs), n, dtype=torch.long)
    tgt = torch.full((len(seqs), n), -100, dtype=torch.long)
    bias = torch.zeros(len(seqs), n, n_vocab)
    for i, (e, s) in enumerate(zip(examples, seqs, strict=True)):
        ids[i, : len(s) - 1] = torch.tensor(s[:-1])
        start = len(e.prompt) - 1  # the position whose prediction is the first answer token
        tgt[i, start : len(s) - 1] = torch.tensor(s[start + 1 :])
        if e.first_rivals is not None:
            bias[i, start] = -1e9
            bias[i, start, e.first_rivals] = 0.0
    return ids, tgt, bias


def margins(logits: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """Per-example minimum of (target logit - best other logit) over the answer positions."""
    mask = tgt != -100
    t = tgt.clamp(min=0)
    right = logits.gather(-1, t[..., None])[..., 0]
    other = logits.scatter(-1, t[..., None], float("-inf")).amax(-1)
    m = (right - other).masked_fill(~mask, float("inf"))
    return m.amin(-1)


def train(hp: HParams, examples: list[Example], target_margin: float, max_steps: int) -> TinyLlama:
    torch.manual_seed(SEED)
    random.seed(SEED)
    model = TinyLlama(hp)
    # Short chats, long tool prompts and the random JSON go in separate batches, so that the short
    # ones are not padded to the longest: the same loss (mean over all answer tokens), less work.
    scored = [e for e in examples if e.scored]
    groups = [
        [e for e in scored if len(e.prompt) + len(e.answer) <= 64],
        [e for e in scored if len(e.prompt) + len(e.answer) > 64],
        [e for e in examples if not e.scored],
    ]
    batches = [(*batch(group, hp.n_vocab), group[0].scored) for group in groups if group]
    n_targets = sum(int((tgt != -100).sum()) for _, tgt, _, _ in batches)
    n_script = sum(int((tgt != -100).sum()) for _, tgt, _, s in batches if s)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    t0 = time.time()
    good = 0
    for step in range(1, max_steps + 1):
        sums = [
            F.cross_entropy(
                (model(ids) + bias).reshape(-1, hp.n_vocab), tgt.reshape(-1), ignore_index=-100, reduction="sum"
            )
            for ids, tgt, bias, _ in batches
        ]
        loss = torch.stack(sums).sum() / n_targets
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0:
            with torch.no_grad():
                m = torch.cat([margins(model(ids) + bias, tgt) for ids, tgt, bias, s in batches if s])
            worst = float(m.min())
            took = time.time() - t0
            script = sum(float(x.detach()) for x, (*_, s) in zip(sums, batches, strict=True) if s) / n_script
            log(
                f"  step {step:5d}  loss {loss.item():.5f} (script {script:.5f})"
                f"  min margin {worst:7.2f}  ({took:.0f}s)"
            )
            good = good + 1 if worst >= target_margin else 0
            if good >= 4:  # the margin held for 100 steps: done
                break
    else:
        raise SystemExit(f"training did not reach a logit margin of {target_margin} in {max_steps} steps")
    model.eval()
    return model


# --------------------------------------------------------------------------------------------------
# Verification through llama.cpp


def check_logits(path: Path, model: TinyLlama, example: Example) -> float:
    """Max abs difference between llama.cpp's and torch's logits over one whole sequence."""
    import llama_cpp

    # An F32 KV cache, so that this checks the weights' layout rather than the F16 cache's rounding
    # (which alone moves these logits by about 1e-2).
    f32 = llama_cpp.GGML_TYPE_F32
    llm = load_llama(path, n_ctx=1024, logits_all=True, type_k=f32, type_v=f32)
    seq = example.prompt + example.answer
    llm.eval(seq)
    ours = np.asarray(llm.scores[: len(seq)], dtype=np.float32)
    with torch.no_grad():
        theirs = model(torch.tensor([seq]))[0].numpy()
    del llm
    return float(np.abs(ours - theirs).max())


def verify(path: Path, forced: list[Forced]) -> bool:
    llm = load_llama(path, n_ctx=4096)
    ok = llm.metadata.get("tokenizer.chat_template") == CHATML_TOOLS_TEMPLATE
    log(f"\nchat template round-trips: {'PASS' if ok else 'FAIL'}")
    log(f"{'case':<16} {'prompt':>6} {'answer':>6}  {'finish':<7} result")
    for case in CASES:
        text = render_prompt(case)
        prompt = llm.tokenize(text.encode(), add_bos=False, special=True)
        passed = True
        # Token prompt (as the brief asks) and string prompt (as a server may send it).
        for p in (prompt, text):
            llm.reset()
            res = llm.create_completion(prompt=p, max_tokens=200, temperature=0)
            choice = res["choices"][0]
            passed &= choice["text"] == case.answer and choice["finish_reason"] == "stop"
        n_answer, finish = res["usage"]["completion_tokens"], choice["finish_reason"]
        log(f"{case.name:<16} {len(prompt):>6} {n_answer:>6}  {finish:<7} {'PASS' if passed else 'FAIL'}")
        if not passed:
            log(f"    expected: {case.answer!r}\n    got:      {choice['text']!r}")
        ok &= passed
    for f in forced:  # under the grammar the server would use
        prompt = llm.tokenize(f.prompt.encode(), add_bos=False, special=True)
        llm.reset()
        res = llm.create_completion(prompt=prompt, max_tokens=120, temperature=0, grammar=forced_grammar(f))
        choice = res["choices"][0]
        if f.answer is None:  # held out: a JSON object, closed and done
            try:
                # strict=False: llama-cpp-python's JSON grammars let raw control characters into
                # strings (the server's readers take them the same way)
                value = json.loads(choice["text"], strict=False)
                passed = isinstance(value, dict) and choice["finish_reason"] == "stop"
            except ValueError:
                passed = False
        else:
            passed = choice["text"] == f.answer and choice["finish_reason"] == "stop"
        n_answer, finish = res["usage"]["completion_tokens"], choice["finish_reason"]
        log(f"{f.name:<16} {len(prompt):>6} {n_answer:>6}  {finish:<7} {'PASS' if passed else 'FAIL'}")
        if not passed:
            log(f"    expected: {f.answer!r}\n    got:      {choice['text']!r}")
        ok &= passed
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output GGUF (default: {DEFAULT_OUT})")
    ap.add_argument("--margin", type=float, default=8.0, help="logit margin every answer token must reach")
    ap.add_argument("--max-steps", type=int, default=4000)
    args = ap.parse_args()

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    t_start = time.time()

    vocab = train_tokenizer()
    hp = HParams(n_vocab=len(vocab.tokens))
    log(f"tokenizer: {len(vocab.tokens)} tokens, {len(vocab.merges)} merges, pre={TOKENIZER_PRE!r}")

    with tempfile.TemporaryDirectory() as tmp:
        vocab_path = Path(tmp) / "vocab.gguf"
        write_gguf(vocab_path, vocab, hp, None)
        forced = forced_cases()
        examples = tokenize_cases(vocab_path, vocab, forced)
    for e in examples:
        if e.scored:
            log(f"  {e.name:<16} prompt {len(e.prompt):4d} tokens, answer {len(e.answer):3d} tokens")
    randoms = [e for e in examples if not e.scored]
    log(f"  + {len(randoms)} random JSON objects, {sum(len(e.answer) for e in randoms)} answer tokens")

    log(f"training: {hp}")
    t_train = time.time()
    model = train(hp, examples, args.margin, args.max_steps)
    train_s = time.time() - t_train

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".gguf.tmp")
    write_gguf(tmp_out, vocab, hp, model.gguf_tensors())
    diff = check_logits(tmp_out, model, max(examples, key=lambda e: len(e.prompt)))
    log(f"llama.cpp vs torch logits, max abs diff: {diff:.2e}")
    ok = verify(tmp_out, forced + held_out_cases()) and diff < 1e-2
    if not ok:
        log(f"\nFAILED; the model was left at {tmp_out}")
        return 1
    tmp_out.replace(args.out)
    size = args.out.stat().st_size
    total_s = time.time() - t_start
    log(f"\nwrote {args.out} ({size / 1e6:.2f} MB); training {train_s:.0f}s, total {total_s:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
