"""The learned L-BFGS zoo entry against ``torch.optim.LBFGS(line_search_fn="strong_wolfe")``,
the quasi-Newton a PyTorch user already has, as drop-in optimizers on the same problems.

Two problem sets, each solved instance by instance by both methods, one after the other in
this process, with the same memory (5 pairs) and no Lipschitz constant:

* ``least-squares``: the entry's training family (60 × 30, condition 100), held-out seeds;
* ``logistic``: L2-regularized logistic regression on real data, scikit-learn's breast
  cancer set (standardized, ρ = 1e-3), each instance a seeded subsample of 400 of the 569
  examples.

Printed per method: how many reached a relative suboptimality of ``--tol`` within
``--steps`` iterations, and the medians of iterations, closure calls (each one function and
gradient evaluation) and wall seconds to it.

    python scripts/compare_lbfgs.py --instances 16 --steps 100
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from l2o.optim import LearnedOptimizer
from problems import LeastSquaresFamily
from problems.base import Instances
from problems.real_data import breast_cancer_logistic


def solve(make_optimizer, instances: Instances, index: int, optimum: float, steps: int, tol: float,
          one_call: bool):
    """(iterations, closure calls, seconds) to ``tol`` on instance ``index``, or None where it
    is not reached. ``one_call``: torch's LBFGS as its documentation uses it, one
    ``step(closure)`` running ``max_iter = steps`` iterations (its iteration count read from
    its state at each call); else one ``step`` per iteration."""
    one = instances.select(index)
    w = torch.nn.Parameter(one.x0()[0].clone())
    optimizer = make_optimizer([w])
    calls, reached = 0, None

    def value_of(point: torch.Tensor) -> torch.Tensor:
        return one.f(point[None])[0]

    def closure():
        nonlocal calls, reached
        calls += 1
        optimizer.zero_grad()
        loss = value_of(w)
        if reached is None and (float(loss.detach()) - optimum) / abs(optimum) <= tol:
            iterations = optimizer.state[w].get("n_iter", 0) if one_call else None
            reached = (iterations, calls, time.perf_counter() - start)
        loss.backward()
        return loss
    start = time.perf_counter()
    if one_call:
        optimizer.step(closure)
        return reached
    for k in range(1, steps + 1):
        optimizer.step(closure)
        with torch.no_grad():
            value = float(value_of(w))
        if (value - optimum) / abs(optimum) <= tol:
            return k, calls, time.perf_counter() - start
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--seed", type=int, default=10_000)
    parser.add_argument("--problems", nargs="+", default=["least-squares", "logistic"],
                        choices=["least-squares", "logistic"])
    args = parser.parse_args()
    problem_sets = {
        "least-squares": ("least squares 60x30, condition 100", lambda: LeastSquaresFamily(
            m=60, n=30, condition_number=100.0).sample(args.instances, seed=args.seed, dtype=torch.float64)),
        "logistic": ("ridge logistic regression, breast cancer (400 of 569 rows, 30 features, rho 1e-3)",
                     lambda: breast_cancer_logistic(args.instances, seed=args.seed)),
    }
    methods = {  # name -> (factory, one step(closure) call for the whole run)
        "lbfgs-least-squares (learned, line search)":
            (lambda p: LearnedOptimizer(p, rule="lbfgs-least-squares"), False),
        "torch.optim.LBFGS (strong Wolfe, history 5)": (lambda p: torch.optim.LBFGS(
            p, lr=1.0, max_iter=args.steps, history_size=5, line_search_fn="strong_wolfe",
            tolerance_grad=0.0, tolerance_change=0.0), True),  # tolerances 0: run to the horizon
    }
    for key in args.problems:
        title, make_instances = problem_sets[key]
        instances = make_instances()
        optimum = instances.optimum()
        print(f"\n{title}; {args.instances} instances, tol {args.tol:g}, at most {args.steps} iterations\n")
        print("| method | reached | median iterations | median closure calls | median seconds |")
        print("|---|---|---|---|---|")
        for name, (make, one_call) in methods.items():
            results = [solve(make, instances, i, float(optimum[i]), args.steps, args.tol, one_call)
                       for i in range(args.instances)]
            done = [r for r in results if r is not None]
            medians = [statistics.median(r[j] for r in done) if done else float("inf") for j in range(3)]
            print(f"| {name} | {len(done)}/{args.instances} | {medians[0]:g} | {medians[1]:g} | {medians[2]:.4f} |")


if __name__ == "__main__":
    main()
