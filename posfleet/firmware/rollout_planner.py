"""Planning a rollout: who is eligible, which wave each terminal is in, and roughly when.

Pure: no I/O, the time (``now``) and randomness (``rng``, ``seed``) are passed in.

- :func:`plan` filters the candidates (the target filter, then the same checks the push
  makes: model, minimum version, already current, downgrade; plus offline too long and
  busy), sizes the waves from the policy and assigns terminals to them
  **deterministically** (a seeded hash: the same seed and fleet give the same plan) and
  **spread across sites**, so a wave never holds every terminal of a shop when that can
  be avoided: a shop keeps selling on the tills not updated yet.
- :func:`assign_joiner` places a terminal that starts matching while the rollout runs.
- :func:`preview` estimates when each planned terminal is offered and when its window
  (in its own zone) opens, from the rate limit, the earlier waves and the soak times.
- :func:`next_offer_times` and :func:`offer_budget` are the rate limit with jitter;
  :func:`action_deadline` the deadline every Action carries.

Wave sizes: a ``percent`` wave brings the share of the eligible fleet updated so far to
that percentage (rounded up), a ``count`` wave adds that many terminals; every wave gets
at least one terminal while any are left, and the last wave takes the rest.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

from posfleet.contract import FirmwareManifest
from posfleet.firmware.push_checks import TerminalInventory, check_terminal
from posfleet.firmware.rollout_model import (
    Candidate,
    Exclusion,
    Plan,
    PreviewRow,
    RolloutPolicy,
    TargetFilter,
    WaveSpec,
)
from posfleet.firmware.rollout_windows import WindowCalendar

_PUSH_REASONS = {
    "no_inventory": Exclusion.NO_INVENTORY,
    "wrong_model": Exclusion.WRONG_MODEL,
    "unknown_version": Exclusion.UNKNOWN_VERSION,
    "same_version": Exclusion.ALREADY_CURRENT,
    "below_min_version": Exclusion.BELOW_MIN_VERSION,
    "downgrade": Exclusion.DOWNGRADE,
    "downgrade_unconfirmed": Exclusion.DOWNGRADE,
}
"""The push checks' reasons in the rollout's words."""

_REPAIR_TRIES = 64
"""How many swap partners one wave is searched for before a whole shop is left as is."""


# ------------------------------------------------------------------------ eligibility


class _Eligibility:
    """The manifest's verdict per (model, version), computed once per pair."""

    def __init__(self, manifest: FirmwareManifest, *, downgrade_confirmed: bool) -> None:
        self.manifest = manifest
        self.downgrade_confirmed = downgrade_confirmed
        self._cache: dict[tuple[str | None, str | None], Exclusion | None] = {}

    def inventory_reason(self, model: str | None, version: str | None) -> Exclusion | None:
        key = (model, version)
        if key not in self._cache:
            refusal = check_terminal(
                self.manifest,
                TerminalInventory("-", model, version),
                downgrade_confirmed=self.downgrade_confirmed,
            )
            self._cache[key] = None if refusal is None else _PUSH_REASONS[refusal.reason]
        return self._cache[key]


def _exclusion(c: Candidate, checks: _Eligibility, offline_since: datetime) -> Exclusion | None:
    reason = checks.inventory_reason(c.model, c.firmware_version)
    if reason is not None:
        return reason
    if c.has_open_action:
        return Exclusion.BUSY
    if not c.online and (c.last_seen is None or c.last_seen < offline_since):
        return Exclusion.OFFLINE_TOO_LONG
    return None


def exclusion_for(
    c: Candidate,
    manifest: FirmwareManifest,
    policy: RolloutPolicy,
    *,
    now: datetime,
    downgrade_confirmed: bool = False,
) -> Exclusion | None:
    """Why ``c`` cannot take ``manifest``'s image now, or None if it can.

    The permanent reasons come first (no inventory, wrong model, unknown version,
    already current, below the minimum version, downgrade), then ``busy`` (an open
    Action) and ``offline_too_long`` (offline and not seen within ``max_offline``).
    """
    checks = _Eligibility(manifest, downgrade_confirmed=downgrade_confirmed)
    return _exclusion(c, checks, now - policy.max_offline)


# ------------------------------------------------------------------------------ waves


def wave_sizes(eligible: int, specs: Sequence[WaveSpec]) -> list[int]:
    """How many terminals each wave holds for ``eligible`` terminals.

    Percentages are cumulative shares of the eligible fleet, rounded up; a count adds
    that many; each wave gets at least one terminal while any are left (a count or
    percentage gives way so the later waves keep one each; only a fleet smaller than the
    number of waves leaves the last ones empty) and the last wave takes the rest.
    """
    if eligible < 0:
        raise ValueError("the eligible fleet cannot be negative")
    sizes: list[int] = []
    done = 0
    for index, spec in enumerate(specs):
        if index == len(specs) - 1:
            target = eligible
        elif spec.percent is not None:
            target = math.ceil(Fraction(repr(spec.percent)) * eligible / 100)
        else:
            assert spec.count is not None
            target = done + spec.count
        # At least one terminal per wave: never fewer than one more than before, and
        # never so many that a later wave is left empty, while the fleet allows.
        later = len(specs) - 1 - index
        target = min(max(done + 1, min(target, eligible - later)), eligible)
        sizes.append(target - done)
        done = target
    return sizes


def _hasher(seed: str) -> hashlib.blake2b:
    return hashlib.blake2b(hashlib.sha256(seed.encode()).digest(), digest_size=8)


@dataclass(slots=True)
class _Spread:
    """The eligible terminals in spread order, with each shop's terminals in rank order."""

    order: list[str]
    members: dict[str, list[str]]
    site_of: dict[str, str]


def _spread_order(eligible: Sequence[Candidate], seed: str) -> _Spread:
    """The terminals sorted by a key that spreads each shop evenly over [0, 1).

    Systematic sampling per shop: a shop of ``n`` terminals gets one random offset ``u``
    and its terminals (in seeded hash order) the keys ``(rank + u) / n``. Cutting the
    sorted keys into waves then puts a shop's terminals into different waves whenever the
    wave boundaries allow; a shop of one terminal lands anywhere with equal chance. Ties
    are broken by the terminal's hash, so the input order never matters.
    """
    base = _hasher(seed)
    of_terminal, of_site = base.copy(), base.copy()
    of_terminal.update(b"t\0")
    of_site.update(b"s\0")
    from_bytes = int.from_bytes

    def hash_of(prefixed: hashlib.blake2b, text: str) -> int:
        h = prefixed.copy()
        h.update(text.encode())
        return from_bytes(h.digest(), "big")

    by_site: dict[str, list[tuple[int, str]]] = {}
    site_of: dict[str, str] = {}
    for c in eligible:
        tid = c.terminal_id
        site = c.site_id or f"terminal:{tid}"  # Candidate.spread_key, inlined: hot loop
        site_of[tid] = site
        group = by_site.get(site)
        if group is None:
            by_site[site] = group = []
        group.append((hash_of(of_terminal, tid), tid))
    keyed: list[tuple[float, int, str]] = []
    members: dict[str, list[str]] = {}
    scale = float(1 << 64)
    for site, group in by_site.items():
        group.sort()
        members[site] = [tid for _, tid in group]
        offset = hash_of(of_site, site) / scale
        n = len(group)
        keyed.extend([((rank + offset) / n, h, tid) for rank, (h, tid) in enumerate(group)])
    keyed.sort()
    return _Spread([tid for _, _, tid in keyed], members, site_of)


def _repair_whole_sites(
    waves: list[list[str]], site_of: dict[str, str], members: dict[str, list[str]]
) -> None:
    """Swap terminals between waves so no wave holds a whole shop, where possible.

    A swap exchanges a terminal of the whole shop with one of another wave whose own
    shop does not become whole by it; wave sizes stay as planned.
    """
    wave_of = {tid: w for w, ids in enumerate(waves) for tid in ids}
    position = {tid: i for ids in waves for i, tid in enumerate(ids)}
    nonempty = [w for w, ids in enumerate(waves) if ids]
    if len(nonempty) < 2:
        return

    def whole_in(site: str, w: int, *, ignoring: str = "") -> bool:
        return all(wave_of[t] == w for t in members[site] if t != ignoring)

    for site in sorted(members):  # in a fixed order: the input's order must not matter
        tids = members[site]
        if len(tids) < 2:
            continue
        w = wave_of[tids[0]]
        if not whole_in(site, w):
            continue
        mover = tids[-1]
        others = sorted((x for x in nonempty if x != w), key=lambda x: (abs(x - w), x))
        for w2 in others:
            partner = None
            for t2 in waves[w2][:_REPAIR_TRIES]:
                s2 = site_of[t2]
                if len(members[s2]) >= 2 and whole_in(s2, w, ignoring=t2):
                    continue  # moving t2 into w would make its own shop whole there
                partner = t2
                break
            if partner is None:
                continue
            i, j = position[mover], position[partner]
            waves[w][i], waves[w2][j] = partner, mover
            wave_of[mover], wave_of[partner] = w2, w
            position[mover], position[partner] = j, i
            break


def plan(
    candidates: Iterable[Candidate],
    manifest: FirmwareManifest,
    policy: RolloutPolicy,
    *,
    now: datetime,
    seed: str,
    target: TargetFilter | None = None,
    downgrade_confirmed: bool = False,
) -> Plan:
    """The rollout's plan: each eligible terminal's wave, and every exclusion's reason.

    ``candidates`` are the terminals of the target set (pass ``target`` to filter them
    here instead; a terminal it does not match is neither planned nor excluded).
    ``seed`` (the rollout's id, say) makes the assignment repeatable. A terminal id that
    appears twice is a ``ValueError``.
    """
    checks = _Eligibility(manifest, downgrade_confirmed=downgrade_confirmed)
    offline_since = now - policy.max_offline
    eligible: list[Candidate] = []
    excluded: list[tuple[str, str]] = []
    seen: set[str] = set()
    for c in candidates:
        if c.terminal_id in seen:
            raise ValueError(f"terminal {c.terminal_id} is a candidate twice")
        seen.add(c.terminal_id)
        if target is not None and not target.matches(c):
            continue
        reason = _exclusion(c, checks, offline_since)
        if reason is None:
            eligible.append(c)
        else:
            excluded.append((c.terminal_id, reason.value))
    spread = _spread_order(eligible, seed)
    waves: list[list[str]] = []
    cursor = 0
    for size in wave_sizes(len(spread.order), policy.waves):
        waves.append(spread.order[cursor : cursor + size])
        cursor += size
    _repair_whole_sites(waves, spread.site_of, spread.members)
    excluded.sort()
    return Plan(waves=tuple(tuple(w) for w in waves), excluded=tuple(excluded))


def assign_joiner(
    plan: Plan, candidate: Candidate, current_wave: int, *, current_wave_open: bool = True
) -> int:
    """The wave a terminal that starts matching mid-rollout joins.

    The current wave while it is still open (offering), else the next one; never past
    the last wave. A terminal already in the plan keeps its wave. Check it with
    :func:`exclusion_for` first: joining does not make an ineligible terminal eligible.
    """
    planned = plan.wave_of(candidate.terminal_id)
    if planned is not None:
        return planned
    last = len(plan.waves) - 1
    if current_wave < 0 or current_wave > last:
        raise ValueError(f"wave {current_wave} is not one of the plan's {last + 1} waves")
    return current_wave if current_wave_open else min(current_wave + 1, last)


# --------------------------------------------------------------------- preview, pace


@dataclass(frozen=True, slots=True)
class WaveEstimate:
    """One wave of the preview: its size, its shops and when it roughly runs."""

    wave: int
    terminals: int
    sites: int
    first_offer: datetime | None
    last_offer: datetime | None
    last_install: datetime | None
    late: int = 0
    """Terminals whose window opens only after their Action's deadline (they would time
    out): counted when :func:`summarize` is given the deadline."""


def preview(
    plan: Plan, candidates: Iterable[Candidate], policy: RolloutPolicy, *, now: datetime
) -> list[PreviewRow]:
    """Every planned terminal with its wave and the earliest offer and install times.

    Wave 0 is offered from ``now`` at ``offers_per_minute``; each terminal installs at
    the first opening of the window in its own zone at or after its offer; a wave can
    advance no sooner than its last terminal's install plus its soak, so the next wave's
    offers start then. These are earliest times: downloads, installs and the health gate
    only add to them.
    """
    by_id = {c.terminal_id: c for c in candidates}
    calendar = WindowCalendar(policy.window, since=now)
    interval = policy.offer_interval
    rows: list[PreviewRow] = []
    start = now
    for w, ids in enumerate(plan.waves):
        latest = start
        for k, tid in enumerate(ids):
            offer = start + interval * k
            c = by_id.get(tid)
            install = calendar.install_time(c.timezone if c else "UTC", offer)
            rows.append(PreviewRow(tid, w, c.site_id if c else None, offer, install))
            if install is not None and install > latest:
                latest = install
        if ids:
            start = max(latest, start + interval * len(ids)) + policy.waves[w].soak
    return rows


def summarize(
    rows: Sequence[PreviewRow], waves: int, *, deadline: timedelta | None = None
) -> list[WaveEstimate]:
    """Per wave: terminals, distinct shops, first and last offer, last install.

    With ``deadline`` (the policy's ``action_deadline``), ``late`` counts the terminals
    whose window does not open before their Action would time out.
    """
    by_wave: list[list[PreviewRow]] = [[] for _ in range(waves)]
    for row in rows:
        by_wave[row.wave].append(row)
    out: list[WaveEstimate] = []
    for w, mine in enumerate(by_wave):
        installs = [r.earliest_install for r in mine if r.earliest_install is not None]
        late = 0
        if deadline is not None:
            late = sum(
                1
                for r in mine
                if r.earliest_install is None or r.earliest_install >= r.earliest_offer + deadline
            )
        out.append(
            WaveEstimate(
                wave=w,
                terminals=len(mine),
                sites=len({r.site_id or r.terminal_id for r in mine}),
                first_offer=min((r.earliest_offer for r in mine), default=None),
                last_offer=max((r.earliest_offer for r in mine), default=None),
                last_install=max(installs, default=None),
                late=late,
            )
        )
    return out


def next_offer_times(
    n: int, policy: RolloutPolicy, *, now: datetime, rng: random.Random
) -> list[datetime]:
    """When the next ``n`` offers' downloads may start: the rate limit plus jitter.

    Offer ``k`` gets the slot ``now + k / offers_per_minute`` and a random delay of up
    to ``jitter_s`` (use it as the offer's ``not_before``), so terminals do not all
    fetch at the same second. Sorted; never before ``now``.
    """
    if n < 0:
        raise ValueError("cannot plan a negative number of offers")
    interval = policy.offer_interval
    return sorted(
        now + interval * k + timedelta(seconds=rng.uniform(0.0, policy.jitter_s)) for k in range(n)
    )


def offer_budget(recent_offers: Iterable[datetime], policy: RolloutPolicy, *, now: datetime) -> int:
    """How many offers may go out at ``now``, given the times of the ones already sent.

    At most ``offers_per_minute`` in any minute: offers from the last 60 seconds count.
    """
    since = now - timedelta(minutes=1)
    used = sum(1 for t in recent_offers if since < t <= now)
    return max(0, policy.offers_per_minute - used)


def action_deadline(policy: RolloutPolicy, *, offered_at: datetime) -> datetime:
    """The deadline of an Action offered at ``offered_at``: it is final by then."""
    return offered_at + policy.action_deadline
