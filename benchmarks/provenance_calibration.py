"""Build the provenance calibration suite, check every pair, print the table, write the JSON.

Derived controls (fine-tune, continued pre-training, permuted + fine-tuned,
pruned in depth and width, depth up-scaled, vocabulary-extended, first blocks
copied then trained, blocks or embeddings copied and frozen, a vision encoder
copied) are checked against their parent; every pair of independent models
(other seeds, other tokenizers) is a negative. Issue 4's target: every derived
control detected at alpha 0.01, no independent pair called derived or partial.
Exits 1 when that target is missed, so a regression is visible.

    .venv/bin/python benchmarks/provenance_calibration.py \
        [--cache .cache/provenance-calibration] [--json FILE] [--alpha 0.01] [--quick]

Models are cached under --cache (stamped by their settings), so a rerun after a
change to the engine only re-checks the pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kaieval.io import atomic_write_text
from kaieval.provenance.calibration import SuiteConfig, run_suite

QUICK = SuiteConfig(hidden_size=32, layers=4, heads=2, intermediate_size=64, vocab_size=320,
                    other_vocab_sizes=(400,), parent_steps=30, finetune_steps=10, cpt_steps=40,
                    heal_steps=10, independent_seeds=2, corpus_chars=30_000,
                    tokenizer_chars=20_000)


def _fmt_rate(r: dict[str, Any]) -> str:
    lo, hi = r["ci95"]
    return f"{r['k']}/{r['n']} (95 % CI {lo:.3f}-{hi:.3f})"


def format_table(summary: dict[str, Any]) -> str:
    """The per-pair table and the rates, as Markdown (what the docs quote)."""
    lines = ["| pair | kind | expected | verdict | ok | derived components | min p | "
             "copied / trained / co-adapted |",
             "|---|---|---|---|---|---|---|---|"]
    for p in summary["pairs"]:
        ps = [v for v in p["p_values"].values() if v is not None]
        comps = ", ".join(p["derived_components"][:5]) + (
            f" +{len(p['derived_components']) - 5}" if len(p["derived_components"]) > 5 else "")
        ok = "yes" if p["as_expected"] else ("detected" if p["detected"] and p["role"] ==
                                             "derived" else "**NO**")
        minp = "-" if not ps else "<1e-300" if min(ps) < 1e-300 else f"{min(ps):.2g}"
        lines.append(f"| {p['candidate']} vs {p['reference']} | {p['kind']} | "
                     f"{'/'.join(p['expected'])} | {p['verdict']} | {ok} | {comps or '-'} | "
                     f"{minp} | {_kind_shares(p)} |")
    if "partial_controls" in summary:
        pc = summary["partial_controls"]
        lines += ["", f"- Partial controls detected: {_fmt_rate(pc['detected'])}; with exactly "
                  f"the expected label (partial, the copied part named with its kind, nothing "
                  f"else copied or derived by training): {_fmt_rate(pc['as_expected'])}"]
    et = summary.get("effect_thresholds") or {}
    if et.get("by_type"):
        bars = ", ".join(f"{k} {v:.4f}" for k, v in et["by_type"].items())
        lines.append(f"- Effect-size thresholds (smallest effect of a significant component of "
                     f"{', '.join(et['controls'])}): {bars}; largest trained effect "
                     f"{et['max_trained']:.4f} (copied means >= {et['identical_effect']})")
        lines.append(f"- Share of compared LM parameters copied or derived by training: "
                     f"derived controls >= {et['min_share_of_derived']:.3f}, partial controls "
                     f"<= {et['max_share_of_partial']:.3f} (bar {et['whole_model_share']})")
    n, pp = summary["null_component_p"], summary["null_pair_bonferroni_p"]
    hn = summary["high_norm_cosine"]
    lines += ["", f"- True-positive rate (derived or partial) at alpha {summary['alpha']}: "
              f"{_fmt_rate(summary['true_positive'])}",
              f"- Derived controls with exactly the expected verdict: "
              f"{_fmt_rate(summary['derived_as_expected'])}",
              f"- False-positive rate (derived or partial on independent pairs): "
              f"{_fmt_rate(summary['false_positive'])}"]
    if n.get("n"):
        lines.append(f"- Independent pairs' component p-values: n={n['n']}, KS vs U(0,1) "
                     f"D={n['ks_statistic']:.3f} p={n['ks_p']:.3g}, deciles "
                     f"{n['decile_counts']}, min {n['min']:.3g}, median {n['median']:.2f}, "
                     f"{n['below_0.01']} below 0.01")
    for kind, t in summary.get("null_component_p_by_type", {}).items():
        if t.get("n"):
            lines.append(f"  - {kind}: n={t['n']}, KS p={t['ks_p']:.3g}, median "
                         f"{t['median']:.2f}, deciles {t['decile_counts']}")
    if pp.get("n"):
        lines.append(f"- Per-pair Bonferroni min-p: n={pp['n']}, deciles {pp['decile_counts']}, "
                     f"{pp['below_0.01']} below 0.01")
    if hn["pairs"]:
        lines.append(f"- Independent pairs with raw norm-weight cosine > 0.95: {hn['pairs']} "
                     f"(min {hn['min_raw_cosine']:.4f}); called derived or partial: "
                     f"{hn['detected']}")
    return "\n".join(lines)


def _kind_shares(pair: dict[str, Any]) -> str:
    """Share of the candidate's weight parameters that is copied / derived by training /
    co-adapted, in per cent ('-' for summaries written before the kinds existed)."""
    kinds, params = pair.get("kinds") or {}, pair.get("parameters") or {}
    total = sum(n or 0 for n in params.values())
    if not kinds or not total:
        return "-"
    share = [sum(params.get(c) or 0 for c, k in kinds.items() if k == want) / total
             for want in ("copied", "derived_by_training", "co_adapted")]
    return " / ".join(f"{100 * x:.0f} %" for x in share)


def _git(*args: str) -> str:
    """Read-only git facts for the record ('' when not in a checkout)."""
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path(".cache/provenance-calibration"))
    ap.add_argument("--json", type=Path, default=None,
                    help="summary file (default: <cache>/summary.json)")
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--quick", action="store_true", help="tiny models, a smoke run (~1 min)")
    args = ap.parse_args()
    config = QUICK if args.quick else SuiteConfig()
    cache = args.cache / ("quick" if args.quick else "full")
    t0 = time.perf_counter()
    summary = run_suite(cache, config, alpha=args.alpha,
                        progress=lambda m: print(m, file=sys.stderr, flush=True))
    summary["git_commit"] = _git("rev-parse", "HEAD")
    summary["git_provenance_changes"] = _git("status", "--porcelain", "--",
                                             "../src/kaieval/provenance").splitlines()
    summary["cores"] = os.cpu_count()
    summary["total_seconds"] = round(time.perf_counter() - t0, 1)
    out = args.json or cache / "summary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print(format_table(summary))
    print(f"\nbuild {summary['build_seconds']} s, checks {summary['check_seconds']} s, "
          f"total {summary['total_seconds']} s on {summary['cores']} cores; engine code "
          f"{summary['code_sha256'][:19]}, git {summary['git_commit'][:10]}"
          f"{' + uncommitted provenance changes' if summary['git_provenance_changes'] else ''}"
          f"; summary: {out}")
    tp, fp = summary["true_positive"], summary["false_positive"]
    return 0 if tp["k"] == tp["n"] and fp["k"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
