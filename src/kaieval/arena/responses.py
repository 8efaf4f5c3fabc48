"""The arena's prompt set and the teams' cached responses to it.

The office gives a prompt set per stage as JSON Lines (``{"id": ..., "prompt": ...}`` a
line); ``kai arena generate`` answers every prompt with every entrant's model through the
benchmark engine's backends (``kaieval.bench``: a local model folder through ``hf``, an
OpenAI-compatible endpoint through ``openai``) and its request cache, so a rerun costs
no inference. Prompts and responses are audited store objects:

* ``arena/<stage>/prompts``: the prompt set and its sha256;
* ``response/<stage>/<prompt>/<team>``: the text, the backend's fingerprint (the model
  hash and every setting that changes an answer), its settings and the generation ones.

A response that names its model or team (``identity_hits``) is never shown in a battle:
votes count only while the models are anonymous (Chatbot Arena drops such battles too).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaieval.bench.api import Backend, GenerationRequest
from kaieval.errors import KaiError, KaiErrors
from kaieval.records import MAX_ID
from kaieval.spec.dossier import Dossier
from kaieval.store import Store

MAX_PROMPTS = 5000
MAX_PROMPT_CHARS = 8000
_ID = re.compile(rf"^[A-Za-z0-9._-]{{1,{MAX_ID}}}$")


@dataclass(frozen=True)
class Prompt:
    id: str
    prompt: str


def load_prompts(path: Path) -> list[Prompt]:
    """The prompt set of a JSONL file; every bad line is one ``file:line`` error."""
    from kaieval.io import read_jsonl

    out: list[Prompt] = []
    errors: list[KaiError] = []
    seen: set[str] = set()
    for where, data in read_jsonl(path):
        pid, text = data.get("id"), data.get("prompt")
        extra = sorted(set(data) - {"id", "prompt"})
        if not isinstance(pid, str) or not _ID.match(pid):
            errors.append(KaiError("id: a prompt id is 1-128 letters, digits, . _ or -",
                                   where=where))
        elif pid in seen:
            errors.append(KaiError(f"id: duplicate prompt id '{pid}'", where=where))
        elif not isinstance(text, str) or not text.strip():
            errors.append(KaiError("prompt: a non-empty text is required", where=where))
        elif len(text) > MAX_PROMPT_CHARS:
            errors.append(KaiError(f"prompt: at most {MAX_PROMPT_CHARS} characters",
                                   where=where))
        elif extra:
            errors.append(KaiError(f"{extra[0]}: unknown field (a line has id and prompt)",
                                   where=where))
        else:
            seen.add(pid)
            out.append(Prompt(pid, text))
    if len(out) > MAX_PROMPTS:
        errors.append(KaiError(f"at most {MAX_PROMPTS} prompts per stage", where=str(path)))
    if errors:
        raise KaiErrors(errors)
    if not out:
        raise KaiError("no prompts in the file", where=str(path))
    return out


def store_prompts(store: Store, stage_id: str, prompts: Sequence[Prompt], actor: str) -> str:
    """Keep the stage's prompt set (replacing an earlier one); returns its sha256."""
    body = [{"id": p.id, "prompt": p.prompt} for p in prompts]
    digest = "sha256:" + hashlib.sha256(json.dumps(body, ensure_ascii=False, sort_keys=True)
                                        .encode()).hexdigest()
    store.put_objects({f"arena/{stage_id}/prompts": {"prompts": body, "sha256": digest}},
                      actor=actor)
    return digest


def stored_prompts(store: Store, stage_id: str) -> list[Prompt]:
    data = store.get_object(f"arena/{stage_id}/prompts") or {}
    return [Prompt(str(p["id"]), str(p["prompt"])) for p in data.get("prompts", [])]


def put_responses(store: Store, stage_id: str, texts: Mapping[tuple[str, str], str],
                  meta: Mapping[str, Mapping[str, Any]], actor: str) -> int:
    """Store ``(prompt id, team id) -> text`` with each team's ``meta`` (model, settings)."""
    objects: dict[str, dict[str, Any] | None] = {
        f"response/{stage_id}/{pid}/{tid}": {"text": text, **meta.get(tid, {})}
        for (pid, tid), text in texts.items()}
    if objects:
        store.put_objects(objects, actor=actor)
    return len(objects)


def responses(store: Store, stage_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    """``(prompt id, team id) -> stored response`` of a stage."""
    out = {}
    for key, value in store.objects(f"response/{stage_id}/").items():
        parts = key.split("/")
        if len(parts) == 4:
            out[(parts[2], parts[3])] = value
    return out


def generate(store: Store, stage_id: str, backends: Mapping[str, Backend],
             prompts: Sequence[Prompt], *, cache_dir: Path | None, max_tokens: int,
             chat: bool, actor: str, progress: bool = False) -> int:
    """Answer every prompt with each team's backend (cache first); store the responses.

    The prompt set is stored with them. Returns how many responses were stored.
    """
    from kaieval.bench.cache import RequestCache
    from kaieval.bench.engine import answer_requests

    if max_tokens < 1 or max_tokens > 4096:
        raise KaiError(f"max tokens {max_tokens} is outside 1-4096", where="--max-tokens")
    digest = store_prompts(store, stage_id, prompts, actor)
    requests = [GenerationRequest(context=p.prompt, max_tokens=max_tokens, chat=chat)
                for p in prompts]
    cache = RequestCache(Path(cache_dir) / "requests.sqlite") if cache_dir else None
    stored = 0
    try:
        for tid, backend in sorted(backends.items()):
            answers, _ = answer_requests(backend, requests, cache=cache, progress=progress,
                                         label=f"arena {tid}")
            meta = {tid: {"model": backend.fingerprint(), "backend": backend.describe(),
                          "settings": {"max_tokens": max_tokens, "chat": chat,
                                       "greedy": True}, "prompts": digest}}
            texts = {(p.id, tid): str(getattr(a, "text", ""))
                     for p, a in zip(prompts, answers, strict=True)}
            stored += put_responses(store, stage_id, texts, meta, actor)
    finally:
        if cache is not None:
            cache.close()
    return stored


# -- anonymity ------------------------------------------------------------------------------

def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()


def identity_words(dossier: Dossier, stage_id: str) -> list[str]:
    """What would unmask a team: its id, name, lead, consortium members, model name.

    Short ASCII words (under 3 letters) are left out: they match inside ordinary text.
    """
    team = dossier.team
    words = {team.id, team.name, team.lead, *(m.name for m in team.consortium)}
    sub = dossier.submissions.get(stage_id)
    if sub is not None and sub.model is not None:
        if sub.model.model_name:
            words.add(sub.model.model_name)
        if sub.model.path:
            words.add(Path(sub.model.path).name)
    out = []
    for w in words:
        w = _fold(w.strip())
        if w and not (w.isascii() and len(w) < 3):
            out.append(w)
    return sorted(out)


def identity_hits(text: str, words: Sequence[str]) -> list[str]:
    """The identity words ``text`` names (NFC, case-folded; ASCII words as whole words)."""
    folded = _fold(text)
    hits = []
    for w in words:
        if w.isascii():
            if re.search(r"(?<![0-9a-z])" + re.escape(w) + r"(?![0-9a-z])", folded):
                hits.append(w)
        elif w in folded:
            hits.append(w)
    return hits


def withheld(store: Store, stage_id: str, dossiers: Sequence[Dossier],
             stored: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
             ) -> dict[tuple[str, str], list[str]]:
    """``(prompt, team) -> identity words named`` for every response kept out of battles
    (``stored``: the stage's ``responses`` when the caller has read them already)."""
    words = {d.team.id: identity_words(d, stage_id) for d in dossiers}
    out = {}
    for (pid, tid), resp in (responses(store, stage_id) if stored is None
                             else stored).items():
        hits = identity_hits(str(resp.get("text", "")), words.get(tid, []))
        if hits:
            out[(pid, tid)] = hits
    return out


def backend_for(dossier_folder: Path, dossier: Dossier, stage_id: str, *, chat: bool,
                device: str = "cpu", dtype: str = "float32") -> Backend:
    """The backend that answers for a team's submitted model (as ``kai eval`` makes it)."""
    from kaieval.bench.backends import get_backend

    sub = dossier.submissions.get(stage_id)
    if sub is None or sub.model is None:
        raise KaiError(f"team '{dossier.team.id}' submitted no model for stage '{stage_id}'")
    if sub.model.endpoint is not None:
        return get_backend("openai", base_url=str(sub.model.endpoint).rstrip("/"),
                           model=str(sub.model.model_name), chat=chat)
    assert sub.model.path is not None
    path = Path(sub.model.path)
    path = path if path.is_absolute() else dossier_folder / path
    if not path.is_dir():
        raise KaiError("model folder not found", where=str(path))
    return get_backend("hf", path=path, chat_template=chat, device=device, dtype=dtype)
