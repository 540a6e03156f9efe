"""Download GGUF files from the Hugging Face Hub (`outcrop models pull REPO[/FILE]`).

Uses huggingface_hub, which shows a progress bar and honours HF_ENDPOINT (a mirror, or a local
hub in tests), HF_TOKEN and its cache settings. Files land in $OUTCROP_HOME/models/<repo>/.
"""

from __future__ import annotations

from pathlib import Path

from outcrop import config, errors

# When a repository holds several quantizations and none is named, take the first of these found.
PREFERRED = ("q4_k_m", "q4_k_s", "q5_k_m", "q8_0", "q4_0", "f16")


def split(spec: str) -> tuple[str, str | None]:
    """`owner/name` -> (repo, None); `owner/name/dir/file.gguf` -> (repo, 'dir/file.gguf')."""
    parts = spec.strip("/").split("/")
    if len(parts) < 2 or not all(parts):
        raise errors.InvalidRequest(f"'{spec}' is not REPO or REPO/FILE (REPO is owner/name)")
    repo = "/".join(parts[:2])
    return repo, ("/".join(parts[2:]) or None)


def choose(files: list[str]) -> str:
    ggufs = [f for f in files if f.lower().endswith(".gguf")]
    if not ggufs:
        raise errors.NotFound("the repository has no .gguf file; name one as REPO/FILE")
    for tag in PREFERRED:
        for f in ggufs:
            if tag in f.lower():
                return f
    return sorted(ggufs)[0]


def pull(spec: str, revision: str | None = None) -> Path:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    repo, filename = split(spec)
    try:
        if filename is None:
            filename = choose(HfApi().list_repo_files(repo, revision=revision))
        target = config.home() / "models" / repo
        return Path(hf_hub_download(repo, filename, revision=revision, local_dir=target))
    except (HfHubHTTPError, EntryNotFoundError, LocalEntryNotFoundError, OSError) as exc:
        raise errors.NotFound(f"could not download {repo}/{filename or ''}: {exc}") from exc
