"""What every selector (RCS and the baselines) reads from a run config, resolved once.

:class:`SelectorSettings` holds the ``selection`` section (a copy; ``candidate_batch = 0``
resolved by :func:`rcs.config.schema.resolve_candidate_batch`), the training settings the
selection objective and attack share with training (``train.method``, ``temperature``,
``attack.eps``, ``amp``, the AIR weights), the BN branch of encoder features
(``finetune.branch``) and the library-only settings. Defaults are the config dataclasses'
defaults (no config given: ``SelectionConfig()``, ``TrainConfig()``, ``FinetuneConfig()``).
Keyword overrides (library users) take any :class:`SelectionConfig` field except ``seed``,
any field of :class:`SelectorSettings`, ``air_lambda1`` / ``air_lambda2`` / ``air_variant``,
and the aliases ``batch`` (``candidate_batch``) and ``attack_steps``
(``train_attack_steps``); ``None`` means "not given".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rcs.config.schema import (
    FinetuneConfig,
    SelectionConfig,
    TrainConfig,
    resolve_candidate_batch,
)
from rcs.errors import ConfigError
from rcs.methods.registry import selection_loss_of
from rcs.selection.api import make_objective
from rcs.selection.per_sample import Objective

ALIASES = {"batch": "candidate_batch", "attack_steps": "train_attack_steps"}
"""Keyword names of the baseline selectors for SelectionConfig fields."""
AIR_KEYS = ("air_lambda1", "air_lambda2", "air_variant")


@dataclass
class SelectorSettings:
    """A selector's resolved settings (see the module docstring).

    ``seed``: the run seed of library calls (``select(train, val)``; the trainer's context
    carries its own); ``device``, ``augment`` (``aug(x, generator)``), ``model`` (modules to
    freeze or an rcs RobustModel), ``work_dir``, ``distributed``, ``sketch_kind`` and
    ``grad_chunk`` (vmap chunk of the per-sample gradients) are library settings of RCS.
    """

    selection: SelectionConfig
    method: str
    temperature: float
    eps: float
    amp: str
    air: tuple[float, float, str]
    branch: str
    grad_chunk: int = 64
    seed: int | None = None
    device: Any = None
    augment: Any = None
    model: Any = None
    work_dir: Any = None
    distributed: bool = False
    sketch_kind: str | None = None

    @property
    def batch(self) -> int:
        """Candidates per chunk of the gradient pass (``selection.candidate_batch``)."""
        return self.selection.candidate_batch

    @property
    def attack_steps(self) -> int:
        """PGD steps on the candidates' views (``selection.train_attack_steps``)."""
        return self.selection.train_attack_steps

    @property
    def objective_kind(self) -> str:
        """The selection loss of ``method`` (``Method.selection_loss()``: acl, air or sat)."""
        return selection_loss_of(self.method)

    def objective(self, bn: tuple[str | None, str | None]) -> Objective:
        """The per-sample selection objective on BN branches ``bn`` (clean, adversarial)."""
        return make_objective(self.objective_kind, self.temperature, bn, self.air)

    @classmethod
    def names(cls) -> list[str]:
        """Every keyword :meth:`resolve` accepts."""
        own = {f.name for f in dataclasses.fields(cls)} - {"selection"}
        sel = {f.name for f in dataclasses.fields(SelectionConfig)} - {"seed"}
        return sorted(own | sel | set(ALIASES) | set(AIR_KEYS))

    @classmethod
    def resolve(cls, cfg: Any = None, *, selector: str | None = None,
                **overrides: Any) -> SelectorSettings:
        """Settings from run config ``cfg`` (None: the config defaults) and ``overrides``;
        ``selector`` sets ``selection.method``. Unknown keywords and invalid values raise
        :class:`ConfigError`."""
        bad = set(overrides) - set(cls.names())
        if bad:
            who = {"rcs": "RCS"}.get(selector or "", selector or "selector")
            raise ConfigError(f"unknown {who} setting(s) {sorted(bad)}; valid: "
                              f"{', '.join(cls.names())}")
        given = {ALIASES.get(k, k): v for k, v in overrides.items() if v is not None}
        sc = dataclasses.replace(cfg.selection) if cfg is not None else SelectionConfig()
        tr = cfg.train if cfg is not None else TrainConfig()
        ft = cfg.finetune if cfg is not None else FinetuneConfig()
        own = {f.name for f in dataclasses.fields(cls)}
        for k, v in given.items():
            if hasattr(sc, k) and k not in own:
                setattr(sc, k, v)
        if selector is not None:
            sc.method = selector
        sc.candidate_batch = resolve_candidate_batch(
            sc.candidate_batch, tr.batch_size if cfg is not None else None)
        sc.validate()
        air = tuple(given.get(k, getattr(tr.air, k[len("air_"):])) for k in AIR_KEYS)
        s = cls(selection=sc, method=tr.method, temperature=tr.temperature, eps=tr.attack.eps,
                amp=tr.amp, air=air, branch=ft.branch)  # type: ignore[arg-type]
        for k, v in given.items():
            if k in own:
                setattr(s, k, v)
        s.grad_chunk, s.distributed = int(s.grad_chunk), bool(s.distributed)
        return s
