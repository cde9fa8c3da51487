"""Shots: a survey fires several sources one after the other and records each with the same receivers.

Each shot is its own wavefield in the same medium: the sources of one shot act together (their forces add), those of
different shots never meet. In YAML a problem gives either ``sources`` (one shot, as before shots existed) or
``shots``, a list of ``{sources: [...]}``. A problem of several shots hands out one problem per shot
(:func:`shot_view`): the same domain, medium, edges and receivers with that shot's sources, so its reference solution,
body force and truth are the shot's, and the reference's cache key (the problem's content) names the shot's sources.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from pinn.physics.sources import Source


@dataclass
class Shot:
    """The sources fired together in one shot (``data.problem.init_args.shots[k]``).

    Args:
        sources: Body-force sources (:mod:`pinn.physics.sources`), at least one.
    """

    sources: list[Source] = field(default_factory=list)


def group_sources(sources: list[Source] | None, shots: list[Shot] | None) -> list[list[Source]]:
    """The sources of each shot: ``[sources]`` (one shot, possibly empty) or those of ``shots``; a ``ValueError``
    naming the bad value where the two are mixed or a shot is empty or not a :class:`Shot`."""
    if shots is None:
        return [list(sources or [])]
    if sources:
        raise ValueError("data.problem has both sources and shots: give sources for one shot, or shots: [{sources: "
                         "[...]}, ...] for several (move the sources into the shots).")
    if not isinstance(shots, (list, tuple)) or not shots:
        raise ValueError(f"data.problem.shots={shots!r} must be a non-empty list of shots, each {{sources: [...]}}.")
    grouped = []
    for k, shot in enumerate(shots):
        if not isinstance(shot, Shot):
            raise ValueError(f"data.problem.shots[{k}]={shot!r} must be a shot {{sources: [...]}}.")
        if not shot.sources or not all(isinstance(s, Source) for s in shot.sources):
            raise ValueError(f"data.problem.shots[{k}].sources={shot.sources!r} must be a non-empty list of sources "
                             "(each shot fires at least one).")
        grouped.append(list(shot.sources))
    return grouped


def source_key(shots: list[list[Source]], k: int, i: int) -> str:
    """How messages name source ``i`` of shot ``k``: ``sources[i]`` in a problem of one shot."""
    return f"sources[{i}]" if len(shots) == 1 else f"shots[{k}].sources[{i}]"


def shot_view(problem, k: int):
    """Shot ``k`` of a problem of several shots as a problem of one (a shallow copy with that shot's sources, and its
    own reference solution once loaded); shares the medium, domain, edges and receivers."""
    view = copy.copy(problem)
    view.sources = list(problem._shots[k])
    view._shots = [view.sources]
    view._reference = None
    view._views = {}
    return view
