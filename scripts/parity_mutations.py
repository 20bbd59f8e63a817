"""Show that the parity tests catch a changed formula: patch one piece of one rule at a time
(the old Math-L2O bias, what is detached, the order of RNNprop's features) and run both
parity tests of ``tests/parity/test_official_parity.py`` on that rule's cases.

    python scripts/parity_mutations.py      # prints pass / FAIL per edit, case and test

Every edit must make at least one of the two tests fail for every case it touches.
"""

import importlib.util
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from l2o.rules import blackbox, gomath, math_l2o, ntk_gd  # noqa: E402
from l2o.rules.kernels import planar_relu_network  # noqa: E402

spec = importlib.util.spec_from_file_location("parity", ROOT / "tests/parity/test_official_parity.py")
p = importlib.util.module_from_spec(spec)
spec.loader.exec_module(p)


def check(label: str, patch, unpatch, cases: list[str]) -> None:
    """Apply ``patch``, run both parity tests on each case, print the outcome, ``unpatch``."""
    patch()
    try:
        for case in cases:
            results = []
            for test in (p.test_trajectory_equals_the_official_code, p.test_meta_gradient_equals_the_official_code):
                try: test(case); results.append("pass")
                except AssertionError: results.append("FAIL")
            print(f"{label:60s} {case:28s} trajectory {results[0]:4s} meta-gradient {results[1]}")
    finally:
        unpatch()

M = math_l2o.MathL2ORule
orig_f = M.features
check("Math-L2O: features not detached", lambda: setattr(M, "features", lambda self, x, g, s, c: (torch.stack([g, x], -1), {})),
      lambda: setattr(M, "features", orig_f), ["mathl2o_pa_lasso", "mathl2o_p_lasso"])
orig_u = M.update
def biased(self, x, grad, outputs, state, ctx):
    y, st = orig_u(self, x, grad, outputs, state, ctx)
    P = 2 * torch.sigmoid(outputs["P"]) * gomath.base_step(None, ctx, "m")
    return y - P * 0.01 * grad.pow(2).mean(-1, keepdim=True).sqrt(), st
check("Math-L2O: the old bias term (0.01 x RMS grad)", lambda: setattr(M, "update", biased), lambda: setattr(M, "update", orig_u),
      ["mathl2o_pa_lasso", "mathl2o_p_lasso", "mathl2o_pa_logistic_squash"])
G = gomath.GoMathRule
orig_g = G.features
def detached(self, x, grad, state, ctx):
    f, s = orig_g(self, x, grad, state, ctx); return f.detach(), s
check("GoMathL2O: features detached", lambda: setattr(G, "features", detached), lambda: setattr(G, "features", orig_g), ["gomath_lasso", "gomath_logistic_squash"])
L2 = blackbox.L2LRule
orig_l = L2.features
def l2l_detached(self, x, grad, state, ctx):
    f, s = orig_l(self, x, grad, state, ctx); return f.detach(), s
check("L2L: x detached too", lambda: setattr(L2, "features", l2l_detached), lambda: setattr(L2, "features", orig_l), ["l2l_lasso"])
R = blackbox.RNNpropRule
orig_r = R.features
def swapped(self, x, grad, state, ctx):
    f, s = orig_r(self, x, grad, state, ctx); return f.flip(-1), s
check("RNNprop: features in the other order", lambda: setattr(R, "features", swapped), lambda: setattr(R, "features", orig_r), ["rnnprop_lasso"])
N = ntk_gd.NTKGDRule
orig_n = N.logits
def not_detached(self, x, grad):
    z = torch.stack([grad, x], dim=-1).reshape(-1, 2).to(self.output.weight.dtype)
    return planar_relu_network(torch.relu(self.layer1(z)), self.layer2.weight, self.output.weight[0], None).reshape(x.shape)
check("NTK-GD: features not detached", lambda: setattr(N, "logits", not_detached), lambda: setattr(N, "logits", orig_n), ["ntk_gd_qp"])
