"""Ecosystem figures: partners by type, pilots, APIs, open releases, downloads, derivatives.

The selection panel asked "who builds it with whom, and how is it shared". The
who-with-whom part is countable from the consortium list (members by type and
country); the how-shared part is checked against the released files: a release
counts as open only when its licence is an open one in the licence registry
and, when the dossier points at the files, the files say the same licence.
Downloads and derivatives are declared offline; with ``online`` they are fetched from the
Hugging Face Hub, and an unreachable Hub is a one-line error, never a guess.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Literal

from kaieval.audit.licence_releases import ReleaseCheck, check_releases
from kaieval.audit.measures import AuditContext, Figure, Flag
from kaieval.errors import KaiError
from kaieval.spec.dossier import OrgType

DEFAULT_HUB = "https://huggingface.co"
HUB_TIMEOUT_S = 10.0


def consortium_figures(ctx: AuditContext) -> list[Figure]:
    """Consortium members by type and country (the lead organisation is not a partner)."""
    team = ctx.loaded.dossier.team
    where = ctx.where("team", "consortium", in_submission=False)
    members = team.consortium
    partners = [m for m in members if m.name != team.lead]
    types = sorted({m.type.value for m in members})
    listed = f"{len(members)} listed" + (f" of {team.consortium_size}"
                                         if team.consortium_size else "")
    size = team.consortium_size or len(members)
    return [
        Figure("ecosystem.consortium_members", float(size),
               ctx.where("team", "consortium_size" if team.consortium_size else "consortium",
                         in_submission=False), listed),
        Figure("ecosystem.domestic_partners",
               float(sum(m.country == "KR" for m in partners)), where,
               ", ".join(m.name for m in partners if m.country == "KR") or "none"),
        Figure("ecosystem.partner_types", float(len(types)), where, ", ".join(types) or "none"),
        Figure("ecosystem.startups_smes",
               float(sum(m.type in (OrgType.STARTUP, OrgType.SME) for m in partners)), where,
               "startups and SMEs among the partners"),
        Figure("ecosystem.academia",
               float(sum(m.type in (OrgType.UNIVERSITY, OrgType.RESEARCH_INSTITUTE)
                         for m in partners)), where,
               "universities and research institutes among the partners"),
    ]


def diffusion_figures(ctx: AuditContext) -> list[Figure]:
    """Public-sector pilots and APIs/toolkits (declared lists; an empty list is zero)."""
    eco = ctx.submission.ecosystem
    return [
        Figure("ecosystem.public_pilots", float(len(eco.public_pilots)),
               ctx.where("ecosystem", "public_pilots"), ", ".join(eco.public_pilots) or "none"),
        Figure("ecosystem.apis", float(len(eco.apis)), ctx.where("ecosystem", "apis"),
               ", ".join(eco.apis) or "none"),
    ]


def release_figures(ctx: AuditContext, checks: list[ReleaseCheck]) -> list[Figure]:
    """Open releases: licence open in the registry, declared open, and files agreeing."""
    sub = ctx.submission
    where = ctx.where("releases")
    n = len(checks)
    open_ = [c for c in checks if c.counts_open]
    listing = "; ".join(f"{c.component}: {c.summary}" for c in checks) or "no releases declared"
    measured = any(c.found_id is not None for c in checks)
    src: Literal["declared", "measured"] = "measured" if measured else "declared"
    out = [
        Figure("ecosystem.releases", float(n), where, listing),
        Figure("ecosystem.open_releases", float(len(open_)), where, listing, source=src),
        Figure("ecosystem.open_release_share", len(open_) / n if n else 0.0, where,
               f"{len(open_)} of {n} releases open" if n else "no releases declared",
               source=src),
        Figure("ecosystem.licence_mismatches", float(sum(c.mismatch is not None for c in checks)),
               where, "; ".join(c.mismatch for c in checks if c.mismatch) or "none",
               source=src),
    ]
    pledge = sub.ecosystem.open_release_pledge
    out.append(Figure("ecosystem.open_release_pledge", pledge,
                      ctx.where("ecosystem", "open_release_pledge"),
                      "declared" if pledge is not None else "no pledge declared"))
    return out


MOF_LEVEL = {"none": 0, "Class III": 1, "Class II": 2, "Class I": 3}


def openness_figures(ctx: AuditContext) -> list[Figure]:
    """MOF class and Class III completeness of the releases (``kaieval.audit.openness``)."""
    from kaieval.audit.openness import assess_submission

    where = ctx.where("releases")
    try:
        res = assess_submission(ctx.submission, base=ctx.loaded.folder,
                                source=f"{ctx.loaded.path.name}:submissions.{ctx.stage_id}"
                                       ".releases")
    except KaiError as e:
        return [Figure("ecosystem.mof_level", None, where, f"openness not assessed: {e}"),
                Figure("ecosystem.mof_class3_progress", None, where,
                       f"openness not assessed: {e}")]
    c3 = res.progress("Class III")
    missing = ", ".join(c3.missing) or "nothing"
    return [Figure("ecosystem.mof_level", float(MOF_LEVEL[res.mof_class]), where,
                   f"MOF {res.mof_class}", source="measured"),
            Figure("ecosystem.mof_class3_progress", c3.progress, where,
                   f"Class III has {len(c3.included)} of {len(c3.required)} components; "
                   f"missing: {missing}", source="measured")]


def pledge_flags(ctx: AuditContext, checks: list[ReleaseCheck]) -> list[Flag]:
    """A pledge the releases found do not (yet) meet is worth a reader's attention."""
    pledge = ctx.submission.ecosystem.open_release_pledge
    if pledge is None or not checks:
        return []
    share = sum(c.counts_open for c in checks) / len(checks)
    if share + 1e-9 >= pledge:
        return []
    return [Flag("contradiction", f"pledged {pledge:.0%} of outputs open, but {share:.0%} of "
                 "the declared releases are open", ctx.where("ecosystem", "open_release_pledge"))]


def _hub_count(ctx: AuditContext, field: Literal["downloads", "derivatives"],
               fetch: Callable[[str, str], int], endpoint: str) -> Figure:
    """A count the dossier declares, or -- with ``online`` and ``hub_repos`` -- fetches."""
    eco = ctx.submission.ecosystem
    measure = f"ecosystem.{field}"
    if ctx.online and eco.hub_repos:
        base = ctx.hub_endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_HUB
        counts = {r: fetch(r, base) for r in eco.hub_repos}
        return Figure(measure, float(sum(counts.values())), f"{base}{endpoint} (fetched)",
                      ", ".join(f"{r}: {c}" for r, c in counts.items()), source="measured")
    where = ctx.where("ecosystem", field)
    declared: int | None = getattr(eco, field)
    if declared is None:
        why = f"no {field} declared" + ("; give ecosystem.hub_repos to fetch them with "
                                        "--online" if ctx.online else "")
        return Figure(measure, None, where, why)
    return Figure(measure, float(declared), where, "declared")


def downloads_figure(ctx: AuditContext) -> Figure:
    """Downloads: declared, or summed from the Hub for ``hub_repos`` when ``online``."""
    return _hub_count(ctx, "downloads", hub_downloads, "/api/models")


def derivatives_figure(ctx: AuditContext) -> Figure:
    """Derivatives: declared, or counted on the Hub (models tagged ``base_model:<repo>``)."""
    return _hub_count(ctx, "derivatives", hub_derivatives, "/api/models?filter=base_model:…")


def _hub_get(url: str, what: str) -> tuple[object, str | None]:
    """GET one Hub API page: (parsed JSON, the Link header's next URL); one-line errors."""
    if not url.startswith(("http://", "https://")):
        raise KaiError(f"hub endpoint must be an http(s) URL, got '{url}'")
    try:
        with urllib.request.urlopen(url, timeout=HUB_TIMEOUT_S) as resp:
            data = json.loads(resp.read(20_000_000).decode("utf-8"))
            link = resp.headers.get("Link") or ""
    except urllib.error.HTTPError as e:
        raise KaiError(f"the Hub answered {e.code} for {what}", where=url) from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise KaiError(f"cannot reach the Hugging Face Hub ({reason}); run without --online "
                       "to use the declared figures", where=url) from None
    except (ValueError, UnicodeDecodeError):
        raise KaiError("the Hub's answer is not JSON", where=url) from None
    nxt = None
    for part in link.split(","):
        if 'rel="next"' in part and "<" in part and ">" in part:
            nxt = part[part.index("<") + 1:part.index(">")]
    return data, nxt


HUB_MAX_PAGES = 50


def hub_derivatives(repo: str, base: str = DEFAULT_HUB) -> int:
    """How many Hub models name ``repo`` as their base model (the model tree's children).

    Pages are followed through the ``Link`` header, at most ``HUB_MAX_PAGES`` of them, so a
    misbehaving server cannot keep us looping; hitting the bound is an error, not a guess.
    """
    query = urllib.parse.urlencode({"filter": f"base_model:{repo}", "limit": 1000})
    url: str | None = f"{base.rstrip('/')}/api/models?{query}"
    total = 0
    for _ in range(HUB_MAX_PAGES):
        assert url is not None
        data, url = _hub_get(url, f"derivatives of '{repo}'")
        if not isinstance(data, list):
            raise KaiError(f"the Hub's model list for '{repo}' is not a list", where=base)
        total += len(data)
        if url is None:
            return total
    raise KaiError(f"more than {HUB_MAX_PAGES} pages of derivatives for '{repo}'; stopped",
                   where=base)


def hub_downloads(repo: str, base: str = DEFAULT_HUB) -> int:
    """A model repo's download count from the Hub API; ``KaiError`` when unreachable or odd."""
    url = f"{base.rstrip('/')}/api/models/{urllib.parse.quote(repo, safe='/')}"
    data, _ = _hub_get(url, f"model '{repo}'")
    n = data.get("downloads") if isinstance(data, dict) else None
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise KaiError(f"the Hub's answer for '{repo}' has no download count", where=url)
    return n


def ecosystem_figures(ctx: AuditContext, checks: list[ReleaseCheck]) -> list[Figure]:
    """Every ecosystem figure of one submission."""
    return [*consortium_figures(ctx), *diffusion_figures(ctx), *release_figures(ctx, checks),
            *openness_figures(ctx), downloads_figure(ctx), derivatives_figure(ctx)]


__all__ = ["check_releases", "ecosystem_figures", "hub_derivatives", "hub_downloads",
           "pledge_flags"]
