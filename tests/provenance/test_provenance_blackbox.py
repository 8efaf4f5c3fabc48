"""Black-box test on real tiny models trained here on the demo corpus.

* reference: a tiny Llama trained briefly; finetune: the reference after more steps on
  other text; controls and an independent candidate: the same recipe from other seeds
  (their own tokenizers too), so they share the corpus's frequent phrases -- the case
  where raw agreement misleads and controls are needed;
* the fine-tune is significant against the reference, the independent model is not;
* the endpoint path runs through the real local OpenAI-compatible server on 127.0.0.1
  (echoed top-k log-probs) and gives the same statistics as the local path; an endpoint
  without log-probs falls back to sampled outputs and says so; an unreachable endpoint
  is one line;
* the permutation p-values are calibrated on exchangeable data; double-centring removes
  what is not specific to a pair.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from openai_server import LocalOpenAIServer, build_tiny_model, free_port

from kaieval.errors import KaiError
from kaieval.provenance.blackbox import (
    DECISIVE,
    BlackBoxResult,
    ModelSpec,
    agreement,
    blackbox_evidence,
    blackbox_test,
    centred,
    holm_adjusted,
    load_prompts,
    pair_outlier_t,
    pair_permutation_p,
    parse_model_spec,
)
from kaieval.provenance.blackbox_models import _echo_dists, _parse_echo
from kaieval.provenance.blackbox_stats import compare, empirical, project, text_statistics, unit
from kaieval.provenance.weight_tests import holm

pytest.importorskip("torch")
MAX_NEW = 10
CHARS = 24
N_PROMPTS = 20
N_CONTROLS = 4


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


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    import shutil

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only contend on a shared box
    root = tmp_path_factory.mktemp("blackbox")
    out: dict[str, Path] = {}
    for name, seed in (("reference", 10), *((f"control{k}", 10 + k)
                                            for k in range(1, N_CONTROLS + 1)),
                       ("independent", 20)):
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


def _spec(zoo: dict[str, Path], name: str) -> ModelSpec:
    return ModelSpec(name=name, path=zoo[name])


def _controls(zoo: dict[str, Path]) -> list[ModelSpec]:
    return [_spec(zoo, f"control{k}") for k in range(1, N_CONTROLS + 1)]


def _run(zoo: dict[str, Path], cand: ModelSpec, **kw: Any) -> BlackBoxResult:
    return blackbox_test(cand, _spec(zoo, "reference"), _controls(zoo), zoo["prompts"],
                         max_new_tokens=MAX_NEW, compare_chars=CHARS, seed=1,
                         n_permutations=999, **kw)


@pytest.fixture(scope="module")
def finetune_result(zoo: dict[str, Path]) -> BlackBoxResult:
    return _run(zoo, _spec(zoo, "finetune"))


def test_finetune_is_detected_and_independent_is_not(zoo: dict[str, Path],
                                                    finetune_result: BlackBoxResult) -> None:
    derived = finetune_result
    ref = derived.references[0]
    assert derived.mode == "logprobs" and derived.no_logprobs == ()
    assert ref.significant and ref.p_holm <= 0.01
    by = {s.statistic: s for s in ref.statistics}
    assert set(by) == {"greedy", *DECISIVE}
    assert by["greedy"].p_holm is None  # reported, not decisive
    for name in DECISIVE:  # every distribution statistic sees the fine-tune
        assert by[name].mean_reference > by[name].mean_controls
        assert by[name].t_pairs > 3
    assert len(by["top1"].per_prompt_reference) == by["top1"].n_prompts == N_PROMPTS
    # the controls have their own tokenizers: fewer offsets are shared, but some are
    assert min(derived.shared_offsets.values()) > 5

    indep = _run(zoo, _spec(zoo, "independent"))
    res = indep.references[0]
    assert not res.significant and res.p_holm > 0.01
    assert all(abs(s.t_pairs) < 3 for s in res.statistics)
    assert [e.verdict for e in blackbox_evidence(derived)] == ["derived"]
    assert [e.verdict for e in blackbox_evidence(indep)] == ["no_evidence"]
    assert "FALLBACK" not in blackbox_evidence(indep)[0].detail


def test_endpoint_candidate_matches_local_path(zoo: dict[str, Path],
                                               finetune_result: BlackBoxResult) -> None:
    server = LocalOpenAIServer(zoo["finetune"], name="cand")
    server.faults.vllm_tokens = True  # token strings and top-k keys as vLLM names them
    try:
        spec = parse_model_spec(f"{server.base_url}#cand", name="finetune")
        assert spec.is_endpoint and spec.served_model == "cand"
        remote = _run(zoo, spec)
        assert server.faults.posts > 0  # the distributions came over HTTP
    finally:
        server.close()
    local = finetune_result
    assert remote.outputs["finetune"] == local.outputs["finetune"]
    # vLLM's names hide a few starts (after a prompt's first token ends inside a
    # character): slightly fewer offsets, the same distributions at the others
    assert 0.95 * local.shared_offsets["reference"] <= remote.shared_offsets["reference"]
    assert remote.shared_offsets["reference"] <= local.shared_offsets["reference"]
    assert remote.tokenization["reference"] >= 0.95
    for r, lo in zip(remote.references[0].statistics, local.references[0].statistics,
                     strict=True):
        assert r.per_prompt_reference == pytest.approx(lo.per_prompt_reference, abs=0.05)
        assert abs(r.mean_reference - lo.mean_reference) < 0.01
        assert r.t_pairs == pytest.approx(lo.t_pairs, rel=0.1)
    assert remote.references[0].significant
    record = json.loads(json.dumps(remote.to_dict()))
    assert record["prompts_sha256"] == remote.prompts_sha256
    assert record["references"][0]["p_holm"] == remote.references[0].p_holm
    assert remote.candidate == {"name": "finetune", "endpoint": server.base_url,
                                "served_model": "cand", "chat": False}


def test_endpoint_without_logprobs_falls_back_to_samples(zoo: dict[str, Path]) -> None:
    server = LocalOpenAIServer(zoo["finetune"], name="cand")
    server.faults.echo = False  # like transformers serve: echo/logprobs ignored
    try:
        spec = parse_model_spec(f"{server.base_url}#cand", name="served")
        result = _run(zoo, spec, n_samples=8)
    finally:
        server.close()
    assert result.mode == "sampled" and result.no_logprobs == ("served",)
    assert result.n_samples == 8 and "FALLBACK" in result.method
    line = blackbox_evidence(result)[0]
    assert "FALLBACK" in line.detail and "no log-probs from served" in line.detail


def test_unreachable_endpoint_is_one_line(zoo: dict[str, Path]) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    spec = ModelSpec(name="down", url=url, served_model="x", max_retries=0, timeout_s=3)
    with pytest.raises(KaiError, match="unreachable") as err:
        blackbox_test(spec, _spec(zoo, "reference"), _controls(zoo), zoo["prompts"],
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
    with pytest.raises(KaiError, match="at least 4 unrelated control") as err:
        blackbox_test(spec, spec, [spec] * 3)
    assert "\n" not in str(err.value)


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
    """Pairs drawn from one distribution: p-values spread out, about alpha share below."""
    rng = np.random.default_rng(0)
    ps = np.array([pair_permutation_p(rng.uniform(size=(30, 6)), 0, 199, seed=i)
                   for i in range(300)])
    assert 0.02 <= float(np.mean(ps <= 0.1)) <= 0.18  # Binomial(300, 0.1): ±4 sd
    assert 0.35 <= float(np.median(ps)) <= 0.65
    shifted = rng.uniform(size=(30, 6))
    shifted[:, 0] += 0.5
    assert pair_permutation_p(shifted, 0, 999, seed=0) == pytest.approx(1 / 1000)


def test_holm_adjusted_matches_holm_decisions() -> None:
    ps = [0.004, 0.02, 0.003, 0.5]
    adj = holm_adjusted(ps)
    assert adj == pytest.approx([0.012, 0.04, 0.012, 0.5])
    for alpha in (0.01, 0.015, 0.05):
        assert [a <= alpha for a in adj] == holm([float(np.log(p)) for p in ps], alpha)


def test_units_and_projection_compare_across_tokenizers() -> None:
    assert unit(" 정부") == " 정" and unit("정부는") == "정" and unit("\n\n법") == "\n법"
    assert unit("\ufffd") == "\ufffd" and unit("  ") == " " and unit("") == "\ufffd"
    # a token that does not finish its last character: vLLM names it "", others "가\ufffd"
    assert unit(" 가\ufffd") == "\ufffd" and unit("\ufffd가") == "\ufffd\ufffd"  # inside one
    # two tokenizers cutting " 정부는" differently agree on the next unit " 정"
    a = project({" 정부": -0.1, " 국회": -2.5, "x": -9.0}, k=1)  # top-1 + the own token
    b = project({" 정": -0.5, " 정책": -2.3, " 국": -2.0}, k=3)
    assert set(a) == {" 정", " 국"} and b[" 정"] == pytest.approx(np.exp(-0.5) + np.exp(-2.3))
    top1, topk, js = compare(a, b)
    assert top1 == 1.0 and topk == 1.0 and 0.5 < js < 1.0
    assert compare(a, a) == pytest.approx((1.0, 1.0, float(sum(a.values()))))
    assert compare({"a": 0.9}, {"b": 0.9}) == (0.0, 0.0, 0.0)
    stats, n = text_statistics({3: a, 5: a}, {5: b, 7: b})
    assert n == 1 and stats == pytest.approx(compare(a, b))
    assert np.isnan(text_statistics({1: a}, {2: b})[0][0])
    assert empirical(["a", "a", "b", None], k=1) == {"a": pytest.approx(2 / 3)}
    # tokens that end inside a character: one entry, as vLLM's answer keeps (the least likely)
    inc = project({"": -1.0, "가\ufffd": -2.0, "x": -0.5, "\ufffd가": -3.0}, k=5)
    assert inc == {"x": pytest.approx(np.exp(-0.5)), "\ufffd": pytest.approx(np.exp(-2.0)),
                   "\ufffd\ufffd": pytest.approx(np.exp(-3.0))}


def test_echo_positions_come_from_token_strings_not_text_offset() -> None:
    """A BOS the server prepends (and counts in ``text_offset``, as vLLM does) has no
    position; the others are where the token strings start in the text, whatever
    ``text_offset`` says; the generated token's alternatives sit after the text."""
    def answer(tokens: list[str], offsets: list[int], n_prompt: int) -> dict[str, Any]:
        top = [None] + [{t: -0.5} for t in tokens[1:]]
        return {"usage": {"prompt_tokens": n_prompt}, "choices": [{"text": "", "logprobs": {
            "tokens": tokens, "text_offset": offsets, "top_logprobs": top,
            "token_logprobs": [None] + [-0.5] * (len(tokens) - 1)}}]}

    text = "ab cd"
    plain = _parse_echo(answer(["ab", " cd", "!"], [0, 2, 5], 2), 5)
    bos = _parse_echo(answer(["<s>", "ab", " cd", "!"], [0, 3, 5, 8], 3), 5)
    drifted = _parse_echo(answer(["<s>", "ab", " cd", "!"], [0, 9, 9, 9], 3), 5)
    assert plain is not None and bos is not None and drifted is not None
    a, b = _echo_dists(plain, text, 5), _echo_dists(bos, text, 5)
    assert sorted(a) == [2, 5] and a[2] == {" c": pytest.approx(np.exp(-0.5))}
    assert sorted(b) == [0, 2, 5] and b[2] == a[2] and b[5] == a[5]
    assert _echo_dists(drifted, text, 5) == b
    assert _parse_echo({"choices": [{"text": "x", "logprobs": None}]}, 5) is None
    with pytest.raises(ValueError, match="finite log-probability"):
        _parse_echo(answer(["ab", " cd"], [0, 2], 2) | {"choices": [{"logprobs": {
            "tokens": ["a", "b"], "text_offset": [0, 1],
            "top_logprobs": [None, {"b": float("nan")}]}}]}, 5)
    with pytest.raises(ValueError, match="non-string"):
        _parse_echo(answer(["ab", " cd"], [0, 2], 2) | {"choices": [{"logprobs": {
            "tokens": ["a", 3], "top_logprobs": [None, {"b": -1.0}]}}]}, 5)


def test_double_centring_removes_model_effects() -> None:
    """S(a, b) = q_a + q_b + noise: no pair stands out, p-values spread; a pair with its
    own bonus stands out."""
    rng = np.random.default_rng(3)
    m, n = 7, 40
    q = rng.normal(size=m)
    sims = q[None, :, None] + q[None, None, :] + 0.1 * rng.normal(size=(n, m, m))
    sims = (sims + sims.transpose(0, 2, 1)) / 2
    d, pairs = centred(sims)
    assert d.shape == (n, m * (m - 1) // 2) and pairs[0] == (0, 1)
    assert abs(float(d.mean())) < 0.02
    ps = [pair_permutation_p(d, i, 199, seed=i) for i in range(len(pairs))]
    assert 0.2 < float(np.median(ps)) < 0.8
    sims[:, 0, 1] += 0.5
    sims[:, 1, 0] += 0.5
    d, _ = centred(sims)
    null, _ = centred(sims[:, 2:, 2:])
    t, p = pair_outlier_t(d[:, 0], null)
    assert t > 5 and p < 1e-3
    t0, p0 = pair_outlier_t(d[:, 0] - 0.5, null)  # without the bonus: not an outlier
    assert abs(t0) < 3 and p0 > 0.01
    assert pair_permutation_p(d, 0, 999, seed=0) == pytest.approx(1 / 1000)
