"""The top-level package: ``import l2o`` then ``l2o.zoo.list()`` (as the README writes it)."""

import subprocess
import sys


def _fresh(code: str) -> str:
    """stdout of ``code`` in a fresh interpreter (nothing of l2o imported by the test run)."""
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout


def test_import_l2o_then_use_every_subpackage_as_an_attribute():
    out = _fresh("import l2o; print(len(l2o.zoo.list()) > 0, l2o.optim.LearnedOptimizer.__name__, "
                 "l2o.rules.GoMathRule.__name__, l2o.eval.rollout.__name__)")
    assert out.split() == ["True", "LearnedOptimizer", "GoMathRule", "rollout"]


def test_import_l2o_is_lazy_and_unknown_attributes_are_attribute_errors():
    out = _fresh("import sys, l2o; print('l2o.optim' in sys.modules, 'lightning' in sys.modules)\n"
                 "try:\n    l2o.nope\nexcept AttributeError as e:\n    print('AttributeError', e)")
    lines = out.splitlines()
    assert lines[0] == "False False"
    assert lines[1].startswith("AttributeError") and "nope" in lines[1]
