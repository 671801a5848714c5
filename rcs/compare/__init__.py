"""``rcs compare``: RCS against the other selectors at an equal budget.

Selectors x fractions x seeds (:class:`rcs.compare.spec.CompareSpec`), each run pretrained
(sharing one full-data warm-up per fraction and seed), fine-tuned and evaluated
(:mod:`rcs.compare.runs`), locally or as SLURM job arrays (:func:`rcs.compare.study.compare`),
summarised as JSON, a markdown table and a robust-accuracy-vs-time plot
(:mod:`rcs.compare.results`). The selectors themselves live in :mod:`rcs.selection`.
"""

from rcs.compare.runs import Job, reference_row, run_job
from rcs.compare.spec import CompareSpec
from rcs.compare.study import CompareResult, compare, plan

__all__ = ["CompareResult", "CompareSpec", "Job", "compare", "plan", "reference_row", "run_job"]
