"""Sovereignty figures: compute independence, data sovereignty, dependencies, serving.

The selection panel's sovereign-AI axis was judged by reading plans; most of
what it weighed is countable from the dossier (who owns the accelerators, where
the data comes from, which foreign models, APIs and partners the plan relies
on) or checkable from the artifacts (are the weights there to serve locally;
what did the provenance engine find). Each figure says where it came from, and
a figure whose input is missing is *not measured* (value None), never zero:
"the team did not say" and "the team has none" are different findings.
"""

from __future__ import annotations

from kaieval.audit.measures import AuditContext, Figure, Flag
from kaieval.spec.dossier import Accelerator, Ownership


def compute_figures(ctx: AuditContext) -> list[Figure]:
    """Accelerators by ownership (owned / government-allocated / rented) and by origin."""
    accs = ctx.submission.compute.accelerators
    where = ctx.where("compute", "accelerators")
    names = ("accelerators", "owned_share", "government_share", "rented_share",
             "controlled_share", "domestic_accelerator_share")
    if not accs:
        return [Figure(f"sovereignty.{n}", None, where, "no accelerators declared")
                for n in names]
    n = sum(a.count for a in accs)

    def share(pred: list[Accelerator]) -> float:
        return sum(a.count for a in pred) / n

    listing = "; ".join(f"{a.count} {a.vendor} {a.model} {a.ownership.value}"
                        + (" domestic" if a.domestic else "") for a in accs)
    values: dict[str, float] = {
        "accelerators": float(n),
        "owned_share": share([a for a in accs if a.ownership is Ownership.OWNED]),
        "government_share": share([a for a in accs if a.ownership is Ownership.GOVERNMENT]),
        "rented_share": share([a for a in accs if a.ownership is Ownership.RENTED]),
        "controlled_share": share([a for a in accs if a.ownership is not Ownership.RENTED]),
        "domestic_accelerator_share": share([a for a in accs if a.domestic]),
    }
    return [Figure(f"sovereignty.{k}", v, where, f"by count: {listing}") for k, v in
            values.items()]


def data_figures(ctx: AuditContext) -> list[Figure]:
    """Token-weighted shares of Korean-origin, disclosed and licensed data, and Korean text.

    Datasets without a token count cannot be weighted and are left out (and said
    so); if none has a count, the shares are not measured.
    """
    ds = ctx.submission.data.datasets
    where = ctx.where("data", "datasets")
    names = ("korean_origin_share", "disclosed_share", "licensed_share",
             "korean_language_share")
    counted = [d for d in ds if d.tokens]
    if not counted:
        why = "no datasets declared" if not ds else "no dataset states its token count"
        return [Figure(f"sovereignty.{k}", None, where, why) for k in names]
    total = sum(d.tokens or 0.0 for d in counted)
    left_out = len(ds) - len(counted)
    note = f"{len(counted)} datasets, {total:.3g} tokens" + (
        f"; {left_out} without a token count left out" if left_out else "")

    def share(pred: list[float]) -> float:
        return sum(pred) / total

    out = [
        Figure("sovereignty.korean_origin_share",
               share([d.tokens or 0.0 for d in counted if d.origin == "KR"]), where, note),
        Figure("sovereignty.disclosed_share",
               share([d.tokens or 0.0 for d in counted if d.origin != "unknown"]), where,
               note + "; disclosed = origin stated"),
        Figure("sovereignty.licensed_share",
               share([d.tokens or 0.0 for d in counted
                      if d.licence.strip().lower() not in ("", "unknown")]), where,
               note + "; licensed = a licence is stated"),
    ]
    mixed = [d for d in counted if d.languages]
    if mixed:
        mtotal = sum(d.tokens or 0.0 for d in mixed)
        ko = sum((d.tokens or 0.0) * d.languages.get("ko", 0.0) for d in mixed) / mtotal
        out.append(Figure("sovereignty.korean_language_share", ko, where,
                          f"language mix weighted by tokens over {len(mixed)} datasets"))
    else:
        out.append(Figure("sovereignty.korean_language_share", None, where,
                          "no dataset states its language mix"))
    return out


def dependency_figures(ctx: AuditContext, inherited: Figure | None = None) -> list[Figure]:
    """Declared base models, foreign APIs and foreign partnerships (and their sum).

    ``inherited`` is the licence-inheritance figure, computed by the engine from
    the licence registry, passed through so that all dependency figures sit together.
    """
    dep = ctx.submission.dependencies
    foreign_partners = [p for p in dep.partnerships if p.country != "KR"]
    out = [
        Figure("sovereignty.base_models", float(len(dep.base_models)),
               ctx.where("dependencies", "base_models"),
               ", ".join(dep.base_models) or "none declared"),
        Figure("sovereignty.foreign_apis", float(len(dep.foreign_apis)),
               ctx.where("dependencies", "foreign_apis"),
               ", ".join(dep.foreign_apis) or "none declared"),
        Figure("sovereignty.foreign_partnerships", float(len(foreign_partners)),
               ctx.where("dependencies", "partnerships"),
               ", ".join(f"{p.name} ({p.country})" for p in foreign_partners)
               or "none declared"),
    ]
    total = len(dep.base_models) + len(dep.foreign_apis) + len(foreign_partners)
    out.append(Figure("sovereignty.foreign_dependencies", float(total),
                      ctx.where("dependencies"), "base models + foreign APIs + partnerships"))
    if inherited is not None:
        out.append(inherited)
    return out


def independence_figure(ctx: AuditContext) -> Figure:
    """The provenance engine's verdict as yes/no; no verdict or 'inconclusive' = not measured."""
    v = ctx.verdict
    if v is None:
        return Figure("sovereignty.independent", None, "provenance records",
                      "no independence verdict stored for this team and stage")
    where = f"independence verdict record ({v.stage_id}/{v.team_id})"
    refs = ", ".join(v.references)
    if v.verdict == "inconclusive":
        return Figure("sovereignty.independent", None, where,
                      f"verdict inconclusive against {refs}", source="measured")
    return Figure("sovereignty.independent", v.verdict == "no_evidence", where,
                  f"verdict '{v.verdict.replace('_', ' ')}' against {refs}: {v.summary}",
                  source="measured")


def serving_figure(ctx: AuditContext) -> Figure:
    """Can the model be served with no foreign API? Declared, else checked from the files.

    A local model folder holding weights can be served without anyone's API; an
    endpoint-only submission cannot be checked, so without a declaration it is
    unknown (not measured).
    """
    sub = ctx.submission
    name = "sovereignty.servable_without_foreign_api"
    if sub.serving.requires_foreign_api is not None:
        return Figure(name, not sub.serving.requires_foreign_api,
                      ctx.where("serving", "requires_foreign_api"),
                      sub.serving.notes or "declared")
    model = sub.model
    if model is None:
        return Figure(name, None, ctx.where("model"), "no model submitted")
    if model.path is None:
        return Figure(name, None, ctx.where("model", "endpoint"),
                      "endpoint-only submission: declare serving.requires_foreign_api")
    folder = ctx.inside(model.path)
    if folder is None:
        return Figure(name, None, ctx.where("model", "path"),
                      f"model path {model.path} leaves the dossier's folder; not read")
    weights = sorted(p.name for p in folder.glob("*.safetensors")) if folder.is_dir() else []
    if not weights:
        return Figure(name, None, ctx.where("model", "path"),
                      f"no *.safetensors weights found in {model.path}")
    if sub.dependencies.foreign_apis:
        return Figure(name, None, ctx.where("dependencies", "foreign_apis"),
                      "weights are local but foreign APIs are declared: declare "
                      "serving.requires_foreign_api")
    return Figure(name, True, ctx.where("model", "path"),
                  f"weights present locally ({', '.join(weights[:3])}); no foreign API declared",
                  source="measured")


def contradiction_flags(ctx: AuditContext) -> list[Flag]:
    """Claims the measurements contradict (e.g. no base model declared, derivation found)."""
    out: list[Flag] = []
    v = ctx.verdict
    dep = ctx.submission.dependencies
    if v is not None and v.verdict in ("derived", "partial") and not dep.base_models:
        out.append(Flag("contradiction",
                        f"the dossier declares no base model, but the provenance engine found "
                        f"the model '{v.verdict}' from {', '.join(v.references)}",
                        ctx.where("dependencies", "base_models")))
    if (ctx.submission.serving.requires_foreign_api is False and ctx.submission.model
            and ctx.submission.model.path is None):
        out.append(Flag("contradiction", "declares serving without a foreign API but submits "
                        "only an endpoint; this cannot be checked",
                        ctx.where("serving", "requires_foreign_api")))
    return out


def sovereignty_figures(ctx: AuditContext, inherited: Figure | None = None) -> list[Figure]:
    """Every sovereignty figure of one submission."""
    return [*compute_figures(ctx), *data_figures(ctx), *dependency_figures(ctx, inherited),
            independence_figure(ctx), serving_figure(ctx)]
