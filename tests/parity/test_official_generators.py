"""l2o's problem families draw from the official code's distributions.

``goldens/generator_*.safetensors`` hold moments of samples drawn by the official
optimizees (LASSO and sparse logistic of NetX-lab/GoMathL2O-Official, the QP of
NetX-lab/MathL2OProof-Official; ``scripts/make_parity_goldens.py``): per statistic its mean
over the official instances and that mean's standard error. l2o's family, with the same
parameters, must give means within 5 combined standard errors (a deterministic check: the
l2o sample is seeded). The official family and l2o's use different random streams, so
the instances differ; their distributions must not.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from problems import FAMILIES

GOLDENS = Path(__file__).parent / "goldens"
SAMPLES = {"lasso": 512, "logistic_l1": 64, "quadratic": 512}


def statistics(family: str, instances) -> dict[str, torch.Tensor]:
    """The per-instance statistics the golden file names, computed on l2o's instances."""
    A, x0 = instances.A, instances.start
    m = A.shape[1]
    common = {"A_mean": A.mean(dim=(1, 2)), "x0_mean": x0.mean(-1), "x0_sq": x0.pow(2).mean(-1),
              "lipschitz": instances.lipschitz(), "objective_x0": instances.objective(x0)}
    if family == "logistic_l1":
        signal = torch.einsum("bmn,bm->bn", A, instances.y).div(m).pow(2).sum(-1)  # ||Aᵀy||² / m²: label noise
        return {**common, "A_sq": A.pow(2).mean(dim=(1, 2)), "positive_fraction": (instances.y > 0).double().mean(-1),
                "label_signal": signal}
    return {**common, "A_sq_times_m": A.pow(2).mean(dim=(1, 2)) * m, "column_norm": A.norm(dim=1).mean(dim=1),
            "b_sq": instances.b.pow(2).sum(-1)}


@pytest.mark.parametrize("family", sorted(SAMPLES))
def test_family_moments_match_the_official_generator(family):
    path = GOLDENS / f"generator_{family}.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()["meta"])
    official = load_file(str(path))
    instances = FAMILIES[family](**meta["params"]).sample(SAMPLES[family], seed=2024, dtype=torch.float64)
    ours = statistics(family, instances)
    for name, (mean, stderr) in official.items():
        values = ours[name]
        our_stderr = values.std() / values.numel() ** 0.5
        tolerance = 5 * float((stderr**2 + our_stderr**2).sqrt()) + 1e-9 * abs(float(mean))
        assert abs(float(values.mean()) - float(mean)) <= tolerance, (
            f"{family}: {name} = {float(values.mean()):.6g} here, {float(mean):.6g} ± {float(stderr):.2g} officially")


def test_the_old_logistic_constant_is_a_quarter_of_the_official_one():
    """The official sparse-logistic L is ||AᵀA||/m; the tight bound ||A||²/(4m) is 1/4 of it."""
    family = FAMILIES["logistic_l1"](m=60, n=10, sparsity=3)
    official = family.sample(4, seed=1).lipschitz()
    tight = family.shifted(lipschitz_bound="tight").sample(4, seed=1).lipschitz()
    torch.testing.assert_close(tight * 4, official)
