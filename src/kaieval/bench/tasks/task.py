"""A loaded task: documents, requests built exactly as lm-eval builds them, scoring.

Prompt = few-shot prefix + doc text. Each few-shot example is
``text + target_delimiter + answer + fewshot_delimiter``; a multiple-choice doc asks
one ``LoglikelihoodRequest(prompt, target_delimiter + choice)`` per choice.

Few-shot draws are deterministic. The lm-eval samplers (``default``, ``first_n``)
replay lm-eval's one shared ``random.Random(seed)`` over the docs in file order --
computed once for the whole split, so a doc's prompt never depends on batch size,
``--limit`` or which docs were built before it. Our own ``per_doc`` sampler seeds a
generator per doc id instead, so adding docs never changes another doc's prompt.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from kaieval.bench.api import (
    Doc,
    DocRequests,
    DocScore,
    GenerationRequest,
    LoglikelihoodRequest,
    MetricSummary,
    OutputType,
    Request,
    Response,
)
from kaieval.bench.metrics import INSTRUCTION_CHECKS, LETTERS
from kaieval.bench.tasks import render, scoring
from kaieval.bench.tasks.config import Split, TaskConfig
from kaieval.bench.tasks.data import read_split, split_hash
from kaieval.bench.tasks.hubmap import map_rows
from kaieval.bench.tasks.process import apply_processor
from kaieval.errors import KaiError
from kaieval.hashing import sha256_json


class ConfiguredTask:
    """Implements the ``Task`` protocol of ``kaieval.bench.api`` for a ``TaskConfig``."""

    def __init__(self, cfg: TaskConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.output_type: OutputType = cfg.output_type
        self.metrics: tuple[str, ...] = tuple(m.key for m in cfg.metrics)
        self._docs: list[Doc] | None = None
        self._index: dict[str, int] = {}
        self._pool: list[Mapping[str, Any]] | None = None
        self._draws: dict[int, list[list[Mapping[str, Any]]]] = {}
        self._hashes: dict[str, str] | None = None
        self._examples: dict[int, str] = {}
        self.bootstrap_seed = cfg.fewshot_seed

    # ------------------------------------------------------------------ data
    def _where(self, doc_id: str) -> str:
        return f"{self.cfg.source_file} (task {self.name}, doc {doc_id})"

    def docs(self, limit: int | None = None) -> list[Doc]:
        docs = self.all_docs()
        if not docs:
            raise KaiError("the task has no documents", where=str(self.cfg.source_file))
        return docs if limit is None else docs[:limit]

    def all_docs(self) -> list[Doc]:
        """Every document, possibly none (a subset the bundled sample does not cover)."""
        if self._docs is None:
            rows = self._read(self.cfg.eval_split)
            docs: list[Doc] = []
            for i, row in enumerate(rows):
                doc_id = str(row[self.cfg.id_field]) if self.cfg.id_field and (
                    self.cfg.id_field in row) else str(i)
                if doc_id in self._index:
                    raise KaiError(f"duplicate doc id {doc_id!r}", where=self._where(doc_id))
                self._index[doc_id] = i
                docs.append(Doc(doc_id=doc_id, fields=row))
            self._docs = docs
        return self._docs

    def _read(self, split: Split) -> list[dict[str, Any]]:
        rows = read_split(split)
        if self.cfg.row_map is not None:
            rows = map_rows(rows, self.cfg.row_map, where=str(self.cfg.source_file))
        if self.cfg.dialect == "lm_eval":
            # datasets unifies the columns of a JSON/CSV file, filling absent values with None;
            # do the same so templates and few-shot equality behave as under lm-eval.
            keys = list(dict.fromkeys(k for r in rows for k in r))
            rows = [{k: r.get(k) for k in keys} for r in rows]
        where = str(self.cfg.source_file)
        if self.cfg.select is not None:
            field, value = self.cfg.select
            rows = [r for r in rows if str(r.get(field)) == value]
        if self.cfg.row_filter:
            rows = [r for r in rows
                    if render.render(self.cfg.row_filter, r, where=where).strip() == "True"]
        return apply_processor(self.cfg.process, rows, where=where)

    def describe(self) -> dict[str, Any]:
        """What to record in a run: definition file, dialect, seeds, few-shot, data hashes."""
        return {"task": self.name, "file": str(self.cfg.source_file),
                "dialect": self.cfg.dialect, "output_type": self.output_type,
                "num_fewshot": self.cfg.num_fewshot, "fewshot_sampler": self.cfg.sampler,
                "fewshot_seed": self.cfg.fewshot_seed, "bootstrap_seed": self.bootstrap_seed,
                "circular": self.cfg.circular, "task_hash": self.task_hash(),
                "dataset_hashes": self.dataset_hashes(), "variant": self.cfg.variant or "default",
                "reference": self.cfg.extra.get("reference", ""),
                "differs": self.cfg.extra.get("differs", ""), "protocol": self.protocol()}

    def protocol(self, num_fewshot: int | None = None) -> dict[str, Any] | None:
        """The protocol a score of this task was produced with, for comparing with a
        declared figure: a default catalogue variant reports the harness and version it
        reproduces (``reference: "lm-eval 0.4.13 ..."``), a named variant reports kaieval
        and the variant; a task without a stated reference has none (None)."""
        shots = self.cfg.num_fewshot if num_fewshot is None else num_fewshot
        if self.cfg.variant:
            return {"harness": "kaieval", "version": "catalogue", "variant": self.cfg.variant,
                    "shots": shots}
        words = str(self.cfg.extra.get("reference") or "").split()
        if len(words) < 2:
            return None
        return {"harness": words[0], "version": words[1], "variant": "default", "shots": shots}

    def _fewshot_pool(self) -> list[Mapping[str, Any]]:
        if self._pool is None:
            split = self.cfg.fewshot_split
            if split is None or self._pool_is_eval():
                self._pool = [d.fields for d in self.docs()]
            else:
                self._pool = list(self._read(split))
        return self._pool

    def dataset_hashes(self) -> dict[str, str]:
        if self._hashes is None:
            hashes = {"eval": split_hash(self.cfg.eval_split)}
            if self.cfg.fewshot_split is not None:
                hashes["fewshot"] = split_hash(self.cfg.fewshot_split)
            self._hashes = hashes
        return dict(self._hashes)

    def task_hash(self) -> str:
        return sha256_json({"task": self.cfg.canonical(), "data": self.dataset_hashes()})

    # -------------------------------------------------------------- few-shot
    def _lm_eval_draws(self, k: int) -> list[list[Mapping[str, Any]]]:
        """lm-eval's ContextSampler.sample, replayed over every doc in order (one RNG)."""
        if k not in self._draws:
            pool = self._fewshot_pool()
            rnd = random.Random(self.cfg.fewshot_seed)
            draws = []
            for doc in self.docs():
                if not self.cfg.exclude_self:
                    draws.append(rnd.sample(pool, k))
                    continue
                res = [x for x in rnd.sample(pool, k + 1) if x != doc.fields][:k]
                if len(res) < k:
                    res = rnd.sample([x for x in pool if x != doc.fields], k)
                draws.append(res)
            self._draws[k] = draws
        return self._draws[k]

    def _fewshot_docs(self, doc: Doc, k: int) -> list[Mapping[str, Any]]:
        """The doc's k few-shot examples; O(k) per doc except lm-eval's duplicate fallback."""
        if k == 0:
            return []
        pool = self._fewshot_pool()
        own = self._own_index(doc)
        if self.cfg.sampler == "default":
            chosen = list(self._lm_eval_draws(k)[own])
        elif self.cfg.sampler == "first_n":  # lm-eval: the first k docs not equal to this one
            chosen = []
            for x in pool:
                if len(chosen) == k:
                    break
                if not (self.cfg.exclude_self and x == doc.fields):
                    chosen.append(x)
        else:  # per_doc: a generator seeded by (seed, doc id), independent of other docs
            rnd = random.Random(f"{self.cfg.fewshot_seed}/{doc.doc_id}")
            draw = rnd.sample(range(len(pool)), min(k + 1, len(pool)))
            if self.cfg.exclude_self:
                draw = [i for i in draw if i != own]
            chosen = [pool[i] for i in draw[:k]]
        if len(chosen) < k:
            raise KaiError(f"{k}-shot needs {k} few-shot examples, only {len(chosen)} available",
                           where=self._where(doc.doc_id))
        return chosen

    def _pool_is_eval(self) -> bool:
        return self.cfg.fewshot_split is None or self.cfg.fewshot_split == self.cfg.eval_split

    def _own_index(self, doc: Doc) -> int:
        self.docs()
        idx = self._index.get(doc.doc_id)
        if idx is None:
            raise KaiError(f"doc {doc.doc_id!r} is not one of this task's documents",
                           where=str(self.cfg.source_file))
        return idx

    # -------------------------------------------------------------- building
    def _choices(self, fields: Mapping[str, Any], where: str) -> list[str] | None:
        if self.cfg.doc_to_choice is None:
            return None
        return render.doc_to_choice(self.cfg.doc_to_choice, fields, where=where)

    def _mcg(self) -> bool:
        return self.output_type == "multiple_choice_generate"

    def _mcg_text(self, text: str, choices: list[str]) -> str:
        """Lettered question for endpoints without log-probs (options listed unless letters)."""
        if len(choices) > len(LETTERS):
            raise KaiError(f"{len(choices)} choices exceed the {len(LETTERS)} answer letters")
        if choices == list(LETTERS[:len(choices)]):
            return text  # the prompt already lists the options and ends with its answer cue
        listed = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
        return f"{text}\n{listed}\n{self.cfg.answer_prefix}"

    def _cached_example(self, fields: Mapping[str, Any], where: str) -> str:
        """A pool doc's rendered example; pool dicts live as long as the task, so id() is safe."""
        key = id(fields)
        text = self._examples.get(key)
        if text is None:
            text = self._examples[key] = self._example(fields, f"{where} few-shot")
        return text

    def _example(self, fields: Mapping[str, Any], where: str) -> str:
        """One few-shot example, as lm-eval's build_qa_turn writes it."""
        has_choices = self.cfg.doc_to_choice is not None
        text_spec = self.cfg.fewshot_text if self.cfg.fewshot_text is not None else (
            self.cfg.doc_to_text)
        target_spec = self.cfg.fewshot_target if self.cfg.fewshot_target is not None else (
            self.cfg.doc_to_target)
        text = render.doc_to_text(text_spec, fields, has_choices=has_choices, where=where)
        choices = self._choices(fields, where)
        target = render.doc_to_target(target_spec, fields, has_choices=has_choices,
                                      where=where)
        if self._mcg() and choices is not None:
            idx = render.target_index(target, choices, where=where)
            return (self._mcg_text(text, choices) + self.cfg.target_delimiter + LETTERS[idx]
                    + self.cfg.fewshot_delimiter)
        if target == "" or target is None:
            return text
        return (text + self.cfg.target_delimiter + render.answer_text(target, choices)
                + self.cfg.fewshot_delimiter)

    def _preamble(self, doc: Doc, where: str) -> str:
        """lm-eval's ``description``: a field of the doc or a template over it, else ''."""
        spec = self.cfg.preamble
        if not spec:
            return ""
        if spec in doc.fields:
            return str(doc.fields[spec])
        return render.render(spec, doc.fields, where=where)

    def _rotated(self, fields: Mapping[str, Any], r: int, where: str) -> dict[str, Any]:
        """The doc with its option fields rotated left by ``r`` (CircularEval)."""
        out = dict(fields)
        names = self.cfg.rotate_fields
        if len(names) == 1:
            opts = fields.get(names[0])
            if not isinstance(opts, list):
                raise KaiError(f"options field {names[0]!r} must be a list", where=where)
            out[names[0]] = opts[r:] + opts[:r]
        elif names:
            values = [fields.get(n) for n in names]
            for i, n in enumerate(names):
                out[n] = values[(i + r) % len(values)]
        return out

    def build(self, doc: Doc, num_fewshot: int | None = None) -> list[DocRequests]:
        k = self.cfg.num_fewshot if num_fewshot is None else num_fewshot
        if k < 0:
            raise KaiError(f"num_fewshot must be >= 0, got {k}")
        where = self._where(doc.doc_id)
        prefix = self._preamble(doc, where) + "".join(
            self._cached_example(fs, where) for fs in self._fewshot_docs(doc, k))
        if self.output_type == "generate_until":
            return [self._build_generation(doc, prefix, where)]
        has_choices = True
        base_choices = self._choices(doc.fields, where) or []
        target0 = render.target_index(
            render.doc_to_target(self.cfg.doc_to_target, doc.fields, has_choices=has_choices,
                                 where=where), base_choices, where=where)
        rotations = range(len(base_choices)) if self.cfg.circular else range(1)
        out = []
        for r in rotations:
            fields = self._rotated(doc.fields, r, where) if r else doc.fields
            choices = self._choices(fields, where) or []
            if len(choices) != len(base_choices):
                raise KaiError("rotation changed the number of choices", where=where)
            target = (target0 - r) % len(choices)
            text = render.doc_to_text(self.cfg.doc_to_text, fields, has_choices=True,
                                      where=where)
            requests: tuple[Request, ...]
            if self._mcg():
                prompt = prefix + self._mcg_text(text, choices)
                requests = (GenerationRequest(prompt, stop=("\n\n",), max_tokens=16,
                                              chat=self.cfg.chat),)
            else:
                prompt = prefix + text
                requests = tuple(LoglikelihoodRequest(prompt, self.cfg.target_delimiter + c)
                                 for c in choices)
            out.append(DocRequests(doc=doc, requests=requests, prompt=prompt,
                                   choices=tuple(choices), target=target,
                                   meta={"rotation": r} if self.cfg.circular else {}))
        return out

    def _build_generation(self, doc: Doc, prefix: str, where: str) -> DocRequests:
        has_choices = self.cfg.doc_to_choice is not None
        text = render.doc_to_text(self.cfg.doc_to_text, doc.fields, has_choices=has_choices,
                                  where=where)
        meta: dict[str, Any] = {}
        target_text = ""
        if self.cfg.instruction_fields is not None:
            ids_f, kw_f = self.cfg.instruction_fields
            ids, kws = doc.fields.get(ids_f), doc.fields.get(kw_f)
            if not isinstance(ids, list) or not isinstance(kws, list) or len(ids) != len(kws):
                raise KaiError(f"fields {ids_f!r} and {kw_f!r} must be lists of equal length",
                               where=where)
            unknown = [i for i in ids if i not in INSTRUCTION_CHECKS]
            if unknown:
                raise KaiError(f"unsupported instruction ids {unknown}", where=where)
            meta = {"instruction_ids": tuple(ids), "instruction_kwargs": tuple(kws)}
        else:
            target = render.doc_to_target(self.cfg.doc_to_target, doc.fields,
                                          has_choices=has_choices, where=where)
            choices = self._choices(doc.fields, where)
            if choices is not None and isinstance(target, int):
                target = choices[render.target_index(target, choices, where=where)]
            target_text = render.answer_text(target, None)
        prompt = prefix + text
        req = GenerationRequest(prompt, stop=self.cfg.stop, max_tokens=self.cfg.max_tokens,
                                chat=self.cfg.chat)
        return DocRequests(doc=doc, requests=(req,), prompt=prompt, target=target_text,
                           meta=meta)

    # --------------------------------------------------------------- scoring
    def score(self, built: Sequence[DocRequests], responses: Sequence[Sequence[Response]]
              ) -> DocScore:
        return scoring.score_doc(self.cfg, built, responses)

    def aggregate(self, scores: Sequence[DocScore]) -> dict[str, MetricSummary]:
        return scoring.aggregate(self.metrics, scores, seed=self.bootstrap_seed)
