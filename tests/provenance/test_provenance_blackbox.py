"""Black-box test on real tiny models trained here on the demo corpus.

* reference: a tiny Llama trained briefly; finetune: the reference after more steps on
  other text; controls and an independent candidate: the same recipe from other seeds
  (their own tokenizers too), so they share the corpus's frequent phrases -- the case
  where raw agreement misleads and controls are needed;
* the fine-tune is significant against the reference, the independent model is not;
* the endpoint path runs through the real local OpenAI-compatible server on 127.0.0.1
  and gives the same outputs as the local path; an unreachable endpoint is one line;
* the label-permutation p-value is calibrated on exchangeable data.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from openai_server import LocalOpenAIServer, build_tiny_model, free_port

from kaieval.bench.api import (
    Backend,
    GenerationRequest,
    GenerationResponse,
    LoglikelihoodRequest,
    LoglikelihoodResponse,
)
from kaieval.errors import KaiError
from kaieval.provenance.blackbox import (
    ModelSpec,
    agreement,
    blackbox_evidence,
    blackbox_test,
    holm_adjusted,
    label_permutation_p,
    load_prompts,
    parse_model_spec,
)
from kaieval.provenance.weight_tests import holm

pytest.importorskip("torch")
MAX_NEW = 10
CHARS = 24
N_PROMPTS = 30


def _train(model_dir: Path, steps: int, data_seed: int, lr: float) -> None:
    """Real next-token training on windows of the demo corpus (Adam, batch 8 x 32)."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from kaieval.synth.corpus import corpus_text

    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = torch.tensor(tok(corpus_text("train", 40000, seed=data_seed)).input_ids)
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(data_seed)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - 33, (8,), generator=gen)
        batch = torch.stack([ids[s:s + 32] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(model_dir)


class Memo:
    """A real backend whose greedy outputs are kept, so each model generates once per
    module (the generation is the real one; only repeats are skipped)."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name
        self._seen: dict[tuple[str, int], GenerationResponse] = {}

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]
                      ) -> list[LoglikelihoodResponse]:
        return self.inner.loglikelihood(requests)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]:
        todo = [r for r in requests if (r.context, r.max_tokens) not in self._seen]
        for r, out in zip(todo, self.inner.generate(todo), strict=True):
            self._seen[(r.context, r.max_tokens)] = out
        return [self._seen[(r.context, r.max_tokens)] for r in requests]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    import shutil

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only contend on a shared box
    root = tmp_path_factory.mktemp("blackbox")
    out: dict[str, Path] = {}
    for name, seed in (("reference", 10), ("control1", 11), ("control2", 12),
                       ("independent", 13)):
        out[name] = build_tiny_model(root / name, seed=seed)
        _train(out[name], steps=80, data_seed=seed, lr=3e-3)
    out["finetune"] = root / "finetune"
    shutil.copytree(out["reference"], out["finetune"])
    _train(out["finetune"], steps=10, data_seed=99, lr=5e-4)
    prompts, _ = load_prompts()  # the first N bundled prompts keep the test quick
    out["prompts"] = root / "prompts.jsonl"
    out["prompts"].write_text("".join(json.dumps({"id": p.id, "lang": p.lang,
                                                  "prompt": p.prompt}) + "\n"
                                      for p in prompts[:N_PROMPTS]), encoding="utf-8")
    yield out
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def backends(zoo: dict[str, Path]) -> dict[str, Backend]:
    from kaieval.bench.backends.hf import HFBackend

    return {k: Memo(HFBackend(v)) for k, v in zoo.items() if k != "prompts"}


def test_finetune_is_detected_and_independent_is_not(zoo: dict[str, Path],
                                                    backends: dict[str, Backend]) -> None:
    controls = [backends["control1"], backends["control2"]]
    derived = blackbox_test(backends["finetune"], backends["reference"], controls,
                            zoo["prompts"], max_new_tokens=MAX_NEW, compare_chars=CHARS, seed=1)
    ref = derived.references[0]
    assert ref.significant and ref.p_holm <= 0.01
    assert ref.effect > 0.3 and ref.mean_reference > 0.5
    assert len(ref.per_prompt_reference) == len(derived.prompt_ids) == N_PROMPTS

    indep = blackbox_test(backends["independent"], [backends["reference"]], controls,
                          zoo["prompts"], max_new_tokens=MAX_NEW, compare_chars=CHARS, seed=1)
    res = indep.references[0]
    assert not res.significant and res.p_value > 0.01
    assert abs(res.effect) < 0.2
    # the models do share phrases (trained on the same generator): agreement is not zero,
    # it is just no higher with the reference than with the controls
    assert max(res.mean_controls, res.mean_reference) > 0.0
    assert [e.verdict for e in blackbox_evidence(derived)] == ["derived"]
    assert [e.verdict for e in blackbox_evidence(indep)] == ["no_evidence"]
    assert blackbox_evidence(indep)[0].p_value == res.p_value


def test_endpoint_candidate_matches_local_path(zoo: dict[str, Path],
                                               backends: dict[str, Backend]) -> None:
    server = LocalOpenAIServer(zoo["finetune"], name="cand")
    try:
        spec = parse_model_spec(f"{server.base_url}#cand", name="endpoint")
        assert spec.is_endpoint and spec.served_model == "cand"
        controls = [backends["control1"], backends["control2"]]
        remote = blackbox_test(spec, backends["reference"], controls, zoo["prompts"],
                               max_new_tokens=MAX_NEW, compare_chars=CHARS, seed=1)
    finally:
        server.close()
    local = blackbox_test(backends["finetune"], backends["reference"], controls, zoo["prompts"],
                          max_new_tokens=MAX_NEW, compare_chars=CHARS, seed=1)
    assert remote.outputs["endpoint"] == next(iter(local.outputs.values()))
    assert remote.references[0].p_value == local.references[0].p_value
    assert remote.references[0].significant
    record = json.loads(json.dumps(remote.to_dict()))
    assert record["prompts_sha256"] == remote.prompts_sha256
    assert record["references"][0]["p_holm"] == remote.references[0].p_holm
    assert remote.candidate == {"name": "endpoint", "endpoint": server.base_url,
                                "served_model": "cand", "chat": False}


def test_unreachable_endpoint_is_one_line(backends: dict[str, Backend]) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    spec = ModelSpec(name="down", url=url, served_model="x", max_retries=0, timeout_s=3)
    with pytest.raises(KaiError, match="unreachable") as err:
        blackbox_test(spec, backends["reference"], [backends["control1"]],
                      max_new_tokens=2)
    assert "\n" not in str(err.value) and url in str(err.value)


def test_spec_and_input_errors(tmp_path: Path) -> None:
    with pytest.raises(KaiError, match="served model name"):
        parse_model_spec("http://127.0.0.1:9/v1")
    with pytest.raises(KaiError, match="model directory not found"):
        parse_model_spec(str(tmp_path / "nope"))
    assert parse_model_spec(str(tmp_path)).path == tmp_path
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "a"}\n{"prompt": 3}\n', encoding="utf-8")
    with pytest.raises(KaiError, match=r"p.jsonl:2: prompt"):
        load_prompts(bad)
    bad.write_bytes(b'{"prompt": "\xff"}\n')
    with pytest.raises(KaiError, match="not UTF-8"):
        load_prompts(bad)
    spec = ModelSpec(name="m", path=tmp_path)
    with pytest.raises(KaiError, match="at least one unrelated control"):
        blackbox_test(spec, spec, [])


def test_bundled_prompts() -> None:
    prompts, digest = load_prompts()
    assert 40 <= len(prompts) <= 100 and len(digest) == 64
    assert {p.lang for p in prompts} == {"ko", "en"}
    assert len({p.id for p in prompts}) == len(prompts)


def test_agreement_measure() -> None:
    assert agreement("", "", 10) == 1.0
    assert agreement("abc", "abd", 10) == pytest.approx(2 / 3)
    assert agreement("a  b", "a b", 10) == 1.0
    assert agreement("abcdefgh", "abcdxxxx", 4) == 1.0
    assert agreement("x", "", 10) == 0.0


def test_permutation_p_is_calibrated_under_exchangeability() -> None:
    """Columns drawn from one distribution: p-values spread out, about alpha share below."""
    rng = np.random.default_rng(0)
    ps = np.array([label_permutation_p(rng.uniform(size=(30, 3)), 199, seed=i)
                   for i in range(300)])
    assert 0.02 <= float(np.mean(ps <= 0.1)) <= 0.18  # Binomial(300, 0.1): ±4 sd
    assert 0.35 <= float(np.median(ps)) <= 0.65
    shifted = rng.uniform(size=(30, 3))
    shifted[:, 0] += 0.5
    assert label_permutation_p(shifted, 999, seed=0) == pytest.approx(1 / 1000)


def test_holm_adjusted_matches_holm_decisions() -> None:
    ps = [0.004, 0.02, 0.003, 0.5]
    adj = holm_adjusted(ps)
    assert adj == pytest.approx([0.012, 0.04, 0.012, 0.5])
    for alpha in (0.01, 0.015, 0.05):
        assert [a <= alpha for a in adj] == holm([float(np.log(p)) for p in ps], alpha)
