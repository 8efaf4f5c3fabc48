"""What every request of the web app works with: the store, the programme, the teams."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from limits import parse

from kaieval.spec.dossier import Dossier
from kaieval.spec.program import Program
from kaieval.store import Store

_T = TypeVar("_T")


@dataclass
class WebContext:
    """Shared by the app's routes (one per app; nothing global, so tests run many apps).

    ``secure_cookies`` marks the session cookie ``Secure`` (set it behind https);
    ``login_rate`` is how many login attempts one address and one name may make
    (the ``limits`` notation, e.g. ``"10/minute"``).
    """

    store: Store
    program: Program
    program_hash: str
    dossiers: Sequence[Dossier]
    secret: str
    secure_cookies: bool = False
    login_rate: str = "10/minute"
    upload_dir: Path | None = None
    shared: bool = False
    """True when other processes serve the same store (``kai serve --workers``): each
    request then checks, once, whether a team uploaded a dossier elsewhere
    (``sync_dossiers``)."""
    public_cache: tuple[object, object] | None = field(default=None, init=False, repr=False)
    """``(key, value)`` of what the public pages build from stored stage results
    (routes/public.py); the key is ``Store.stage_result_stamps()``, so any new or
    changed result rebuilds it."""
    public_checked: tuple[int, float, object] = field(default=(0, 0.0, None), init=False,
                                                      repr=False)
    """``(Store.stage_result_writes, monotonic time, key)`` when the kept public pages were
    last found current in the database (routes/public.py ``kept_pages``)."""
    kept_pages: dict[str, Callable[[], Mapping[str, bytes] | None]] = field(
        default_factory=dict, init=False, repr=False)
    """Path -> the pages kept for visitors without an account, by language, while still
    current (else None): served before routing (web/app.py ``_KeptPages``)."""
    _given: tuple[Dossier, ...] = field(init=False)
    _dossier_stamp: tuple[int, str] = field(default=(0, ""), init=False, repr=False)
    _memo: dict[str, tuple[object, object]] = field(default_factory=dict, init=False,
                                                    repr=False)
    _locks: dict[str, threading.Lock] = field(default_factory=dict, init=False, repr=False)
    _locks_guard: threading.Lock = field(default_factory=threading.Lock, init=False,
                                         repr=False)

    def memo(self, name: str, key: object, build: Callable[[], _T]) -> _T:
        """``build()``, kept under ``name`` and rebuilt when ``key`` changes: ``key`` must
        be read from the store (e.g. the audit head), so every server process sees a change
        that any of them or a ``kai`` command made. Built once when many ask at once."""
        kept = self._memo.get(name)
        if kept is not None and kept[0] == key:
            return kept[1]  # type: ignore[return-value]
        with self.building(name):
            kept = self._memo.get(name)
            if kept is not None and kept[0] == key:  # another request just built it
                return kept[1]  # type: ignore[return-value]
            value = build()
            self._memo[name] = (key, value)
        return value

    def building(self, name: str) -> threading.Lock:
        """The lock under which ``name`` is built: under load, fifty requests arriving
        together at a cold cache wait for one build instead of each doing it."""
        with self._locks_guard:
            return self._locks.setdefault(name, threading.Lock())

    def __post_init__(self) -> None:
        self._given = tuple(self.dossiers)
        self.refresh_dossiers()

    def refresh_dossiers(self) -> None:
        """``dossiers``: those given to ``kai serve``, each replaced by the team's uploaded
        dossier where one is stored (teams upload through the web app; the rest of the app
        keeps reading ``dossiers``). Called at start and after each dossier upload."""
        from kaieval.web.submissions import uploaded_dossiers

        stamp = self.store.objects_stamp("dossier/")
        uploaded = uploaded_dossiers(self.store, self.program)
        given = [uploaded.pop(d.team.id, d) for d in self._given]
        self.dossiers = given + [uploaded[t] for t in sorted(uploaded)]
        self._dossier_stamp = stamp

    def sync_dossiers(self) -> None:
        """Refresh ``dossiers`` if the stored uploads changed since (in another process:
        one cheap query when nothing did)."""
        if self.store.objects_stamp("dossier/") != self._dossier_stamp:
            self.refresh_dossiers()

    def login_allowed(self, *keys: str) -> bool:
        """Count one login attempt against each key; False once any is over the rate.

        Counted in the store, not in this process: the server's worker processes (``kai
        serve --workers``) share one limit."""
        item = parse(self.login_rate)
        return self.store.count_attempt([f"login/{k}" for k in keys], item.amount,
                                        item.get_expiry())

    def dossier(self, team_id: str) -> Dossier | None:
        """The dossier of ``team_id``, or None."""
        return next((d for d in self.dossiers if d.team.id == team_id), None)
