"""Block KV cache + packed tree passes: equal to full-sequence scoring; a cache hit is bit
for bit what a miss computes, and packs are decided by content, so order and batch size
cannot change an answer."""

from __future__ import annotations

import random
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
    # the few-shot block was computed once for all four questions, and a later call
    # takes it from the cache
    first = scorer.blocks_computed
    assert 0 < first <= len(warm.tokens(reqs[0])[0]) // 8
    warm.loglikelihood(reqs[::-1])
    assert scorer.blocks_computed == first and scorer.blocks_reused > 0


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
    assert together == none_kept
    # alone, a question shares no block with another and is packed with no neighbour:
    # the same numbers up to float rounding only
    assert _max_diff(together, cold) < 1e-5
    assert starved.prefix_scorer.blocks_reused == 0


def test_eager_attention_takes_the_additive_mask(model_dir: Path) -> None:
    reqs = _fewshot_requests()[:8]
    eager = HFBackend(model_dir, prefix_block=8, forward="transformers")  # eager is theirs
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


def _mixed_requests() -> list[LoglikelihoodRequest]:
    """Shared-shot questions, questions with shots of their own, mixed lengths, 1..n tokens."""
    from kaieval.synth.corpus import corpus_text

    text = corpus_text("train", 6000, seed=5)
    reqs = _fewshot_requests()
    for q in range(5):  # each question its own shots, of different lengths
        shots = "".join(f"문제: {text[q * 700 + i * 50:q * 700 + i * 50 + 20 + 9 * q]}\n"
                        f"답: {text[4000 + i * 7:4004 + i * 7]}\n\n" for i in range(q % 3 + 1))
        ctx = f"{shots}문제: {text[5000 + q * 60:5020 + q * 60 + 5 * q]}\n답:"
        for k in range(3):
            reqs.append(LoglikelihoodRequest(ctx, " " + text[5500 + 40 * k:5501 + 40 * k + 6 * k]))
    reqs.append(LoglikelihoodRequest("짧은 질문:", " 네"))
    return reqs


def test_packs_of_different_and_shared_shots_equal_full_sequences(model_dir: Path) -> None:
    reqs = _mixed_requests()
    packed = HFBackend(model_dir, prefix_block=8)
    got = packed.loglikelihood(reqs)
    scorer = packed.prefix_scorer
    assert scorer is not None
    n_contexts = len({r.context for r in reqs})
    assert scorer.passes < n_contexts  # several questions per forward pass
    ref = HFBackend(model_dir, shared_prefix=False).loglikelihood(reqs)
    assert _max_diff([a.logprob for a in got], [b.logprob for b in ref]) < 1e-4
    assert [a.greedy for a in got] == [b.greedy for b in ref]
    assert [a.n_tokens for a in got] == [b.n_tokens for b in ref]
    # a small budget: one question per pass; the same numbers up to rounding only
    single = HFBackend(model_dir, prefix_block=8)
    assert single.prefix_scorer is not None
    single.prefix_scorer.pack_tokens = 1
    alone = [a.logprob for a in single.loglikelihood(reqs)]
    assert single.prefix_scorer.passes == n_contexts
    assert _max_diff([a.logprob for a in got], alone) < 1e-5


def test_packs_are_bit_identical_across_batch_sizes_and_orders(model_dir: Path) -> None:
    reqs = _mixed_requests()
    base = [a.logprob for a in HFBackend(model_dir, batch_size=8).loglikelihood(reqs)]
    for bs in (1, 32):
        assert [a.logprob for a in HFBackend(model_dir, batch_size=bs).loglikelihood(reqs)
                ] == base
    order = list(range(len(reqs)))
    random.Random(2).shuffle(order)
    shuffled = HFBackend(model_dir).loglikelihood([reqs[i] for i in order])
    back = [0.0] * len(reqs)
    for pos, i in enumerate(order):
        back[i] = shuffled[pos].logprob
    assert back == base


def test_supports_and_fits() -> None:
    def model(**cfg: object) -> SimpleNamespace:
        return SimpleNamespace(config=SimpleNamespace(**cfg))

    assert supports(model(_attn_implementation="sdpa"))
    assert not supports(model(_attn_implementation="flash_attention_2"))
    assert not supports(model(_attn_implementation="sdpa", sliding_window=4096))
    assert not supports(model(_attn_implementation="sdpa",
                              layer_types=["full_attention", "sliding_attention"]))
    scorer = PrefixScorer(model(), "cpu", cache_arg="past_key_values", keep_arg=None, block=8)
    prefix = tuple(range(20))
    assert scorer.fits([0], [(prefix, (1, 2, 3))])
    assert scorer.fits([0], [(prefix, tuple(range(TREE_MAX_TOKENS - 19)))])
    assert not scorer.fits([0], [(prefix, tuple(range(TREE_MAX_TOKENS - 18)))])
