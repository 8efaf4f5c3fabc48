"""Block KV cache + tree pass: equal to full-sequence scoring, and a cache hit is bit for bit
what a miss computes (so order, grouping and batch size cannot change an answer)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from kaieval.bench.api import LoglikelihoodRequest
from kaieval.bench.backends.hf import HFBackend
from kaieval.bench.backends.hf_prefix import TREE_MAX_TOKENS, PrefixScorer, supports
from kaieval.errors import KaiError

pytestmark = pytest.mark.slow  # builds the demo stand-in model (torch)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kaieval.demo.standins import build_standins

    return build_standins(tmp_path_factory.mktemp("standins"), names=["nc"])["nc"]


def _fewshot_requests() -> list[LoglikelihoodRequest]:
    """Four questions behind one shared few-shot block; answers of 1..many tokens."""
    from kaieval.synth.corpus import corpus_text

    text = corpus_text("train", 3000)
    shots = "".join(f"문제: {text[i * 40:i * 40 + 30]}\n답: {text[900 + i * 9:906 + i * 9]}\n\n"
                    for i in range(3))
    reqs = []
    for q in range(4):
        ctx = f"{shots}문제: {text[1500 + q * 50:1530 + q * 50 + 7 * q]}\n답:"
        for k in range(4):
            reqs.append(LoglikelihoodRequest(ctx, " " + text[2500 + 30 * k:2501 + 30 * k + 5 * k]))
    return reqs


def _max_diff(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def test_tree_pass_with_block_cache_equals_full_sequence(model_dir: Path) -> None:
    reqs = _fewshot_requests()
    warm = HFBackend(model_dir, prefix_block=8)
    scorer = warm.prefix_scorer
    assert scorer is not None
    got = warm.loglikelihood(reqs)
    ref = HFBackend(model_dir, shared_prefix=False).loglikelihood(reqs)
    assert _max_diff([a.logprob for a in got], [b.logprob for b in ref]) < 1e-4
    assert [a.greedy for a in got] == [b.greedy for b in ref]
    assert [a.n_tokens for a in got] == [b.n_tokens for b in ref]
    assert {a.n_tokens for a in got} != {1}
    # the few-shot block was computed once and reused by the later questions
    assert scorer.blocks_computed > 0 and scorer.blocks_reused > 0


def test_cache_hit_is_bit_identical_to_a_miss(model_dir: Path) -> None:
    reqs = _fewshot_requests()
    warm = HFBackend(model_dir, prefix_block=8)
    together = [a.logprob for a in warm.loglikelihood(reqs)]
    again = [a.logprob for a in warm.loglikelihood(list(reversed(reqs)))][::-1]  # all hits
    cold = []
    for q in range(4):  # each question on a fresh backend: every block a miss
        cold += [a.logprob for a in HFBackend(model_dir, prefix_block=8)
                 .loglikelihood(reqs[4 * q:4 * q + 4])]
    starved = HFBackend(model_dir, prefix_block=8)
    assert starved.prefix_scorer is not None
    starved.prefix_scorer.cache_bytes = 1  # nothing fits: recompute every block
    none_kept = [a.logprob for a in starved.loglikelihood(reqs)]
    assert together == again
    assert together == cold
    assert together == none_kept
    assert starved.prefix_scorer.blocks_reused == 0


def test_eager_attention_takes_the_additive_mask(model_dir: Path) -> None:
    reqs = _fewshot_requests()[:8]
    eager = HFBackend(model_dir, prefix_block=8)
    eager.model.set_attn_implementation("eager")
    assert supports(eager.model)
    got = [a.logprob for a in eager.loglikelihood(reqs)]
    ref = [a.logprob for a in HFBackend(model_dir, shared_prefix=False).loglikelihood(reqs)]
    assert _max_diff(got, ref) < 1e-4


def test_block_size_only_changes_rounding(model_dir: Path) -> None:
    reqs = _fewshot_requests()
    small = [a.logprob for a in HFBackend(model_dir, prefix_block=4).loglikelihood(reqs)]
    large = [a.logprob for a in HFBackend(model_dir, prefix_block=4096).loglikelihood(reqs)]
    assert _max_diff(small, large) < 1e-4
    assert HFBackend(model_dir, prefix_block=4).fingerprint() != HFBackend(model_dir).fingerprint()
    with pytest.raises(KaiError, match="prefix block"):
        HFBackend(model_dir, prefix_block=0)


def test_supports_and_fits() -> None:
    def model(**cfg: object) -> SimpleNamespace:
        return SimpleNamespace(config=SimpleNamespace(**cfg))

    assert supports(model(_attn_implementation="sdpa"))
    assert not supports(model(_attn_implementation="flash_attention_2"))
    assert not supports(model(_attn_implementation="sdpa", sliding_window=4096))
    assert not supports(model(_attn_implementation="sdpa",
                              layer_types=["full_attention", "sliding_attention"]))
    scorer = PrefixScorer(model(), "cpu", cache_arg="past_key_values", keep_arg=None, block=8)
    prefix = tuple(range(20))  # 16 tokens in blocks, a 4-token tail
    assert scorer.fits([0], [(prefix, (1, 2, 3))])
    too_long = tuple(range(TREE_MAX_TOKENS))
    assert not scorer.fits([0], [(prefix, too_long)])
