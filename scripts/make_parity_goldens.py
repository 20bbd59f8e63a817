"""Regenerate the parity golden files of ``tests/parity/goldens`` by running the official code.

    git clone https://github.com/NetX-lab/GoMathL2O-Official
    git clone https://github.com/NetX-lab/MathL2OProof-Official
    python scripts/make_parity_goldens.py --gomath GoMathL2O-Official --proof MathL2OProof-Official

For each model (GOMathL2O, CoordMathLSTM as Math-L2O-P and -PA, CoordBlackboxLSTM (L2L),
RNNprop, CoordMathDNN (NTK-GD)), and for the classical baselines Adam and Adam-HD
(``baseline_*``: trajectories only), it builds the official model and optimizee on small fixed
inputs, in float64, with fixed random weights (biases included) and a fixed initial LSTM
state, and stores in ``CASE.safetensors``: the weights (``weight.*``), the problem
(``W``, ``Y``, ``x0``, ``rho``), the state (``h0``, ``c0``), the iterates the official
code produces for ``STEPS`` steps in evaluation mode (``trajectory``, ``(STEPS + 1, B, n)``),
and the meta-gradient of the official training-mode loss ``Σ_k objective(X_k)`` over the
first ``META_STEPS`` steps (``grad.*``); the metadata holds the configuration and the
official commit. For the problem generators it stores moments of official samples
(``generator_*.safetensors``). The tests in ``tests/parity`` replay each case with
l2o's rule (weights loaded by :func:`l2o.official.load_official`) and compare.

Nothing is imported from l2o here: the goldens are the official code's numbers only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from official_checkout import commit, import_official

STEPS = 10
META_STEPS = 5
BATCH, M, N, SPARSITY, RHO = 3, 5, 8, 2, 0.1
HIDDEN = 8


def problem(seed: int, m: int = M, n: int = N) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fixed float64 inputs: W (B, m, n) (normalized by the optimizee), Y (B, m, 1), x0 (B, n, 1)."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(BATCH, m, n, generator=g, dtype=torch.float64)
    x_true = torch.randn(BATCH, n, 1, generator=g, dtype=torch.float64)
    x_true[:, SPARSITY:] = 0.0
    x0 = torch.randn(BATCH, n, 1, generator=g, dtype=torch.float64)
    W_unit = W / W.pow(2).sum(dim=1, keepdim=True).sqrt()
    return W, W_unit @ x_true, x0


def perturb(model: torch.nn.Module, seed: int) -> None:
    """Random weights everywhere (zero-initialized layers and biases included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.3 * torch.randn(param.shape, generator=g, dtype=param.dtype))


def start(optimizee, x0: torch.Tensor) -> None:
    optimizee.X = x0.clone()
    optimizee.set_var("Z", x0.clone())
    optimizee.set_var("VG", torch.zeros_like(x0))


def run_case(make_model, make_optimizee, x0, grad_method: str, state_scale: float | None, seed: int):
    """(weights, h0, c0, trajectory, meta-gradients) of one official model."""
    torch.manual_seed(seed)
    model = make_model().double()
    perturb(model, seed + 1)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def fresh(training: bool):
        model.train(training)
        model.load_state_dict(weights)
        optimizee = make_optimizee()
        start(optimizee, x0)
        model.reset_state(optimizee, None, state_scale=state_scale if state_scale is not None else 0.01)
        if getattr(model, "state", None) is not None:
            model.state = (h0.clone(), c0.clone())
        return optimizee

    g = torch.Generator().manual_seed(seed + 2)
    layers, hidden = getattr(model, "layers", 2), model.hidden_size
    rows = x0.numel()
    h0 = torch.randn(layers, rows, hidden, generator=g, dtype=torch.float64)
    c0 = torch.randn(layers, rows, hidden, generator=g, dtype=torch.float64)

    optimizee = fresh(training=False)
    trajectory = [optimizee.X.detach().clone()]
    for _ in range(STEPS):
        optimizee = model(optimizee, grad_method)
        trajectory.append(optimizee.X.detach().clone())

    optimizee = fresh(training=True)
    loss = 0.0
    for _ in range(META_STEPS):
        optimizee = model(optimizee, grad_method)
        loss = loss + optimizee.objective(compute_grad=True)
    model.zero_grad()
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    return weights, h0, c0, torch.stack(trajectory).squeeze(-1), grads


def save_case(out: Path, case: str, weights, h0, c0, trajectory, grads, W, Y, x0, meta: dict) -> None:
    tensors = {f"weight.{k}": v.contiguous() for k, v in weights.items()}
    tensors.update({f"grad.{k}": v.contiguous() for k, v in grads.items()})
    tensors.update({"h0": h0, "c0": c0, "trajectory": trajectory.contiguous(), "W": W, "Y": Y.squeeze(-1),
                    "x0": x0.squeeze(-1)})
    save_file(tensors, str(out / f"{case}.safetensors"), metadata={"meta": json.dumps(meta, sort_keys=True)})
    print(f"{case}: {len(weights)} weights, trajectory {tuple(trajectory.shape)}, "
          f"|x_T - x_0| = {float((trajectory[-1] - trajectory[0]).norm()):.3g}, {len(grads)} meta-gradients")


def gomath_repo_cases(path: Path, out: Path) -> None:
    optimizers, optimizees = import_official(path)
    origin = f"NetX-lab/GoMathL2O-Official@{commit(path)}"
    W, Y, x0 = problem(seed=1)

    def lasso():
        return optimizees.LASSO(BATCH, W=W, Y=Y, rho=RHO, s=SPARSITY, input_dim=N, output_dim=M)

    off = dict(r_use=True, q_use=True, b_use=True, b3_use=False, b4_use=False, r_scale_learned=False,
               q_scale_learned=False, b_scale_learned=False, b3_scale_learned=False, b4_scale_learned=False)
    gomath = {
        "gomath_lasso": dict(r_norm="sigmoid", q_norm="sigmoid", b_norm="sigmoid1"),
        "gomath_logistic_squash": dict(r_norm="softplus", q_norm="softplus", b_norm="softplus", q_scale=10.0),
    }
    for seed, (case, norms) in enumerate(gomath.items(), start=10):
        result = run_case(lambda: optimizers.GOMathL2O(3, 1, HIDDEN, 2, **off, **norms), lasso, x0,
                          "smooth_grad", None, seed)
        config = {k: v for k, v in norms.items()}
        save_case(out, case, *result, W, Y, x0, {"official": origin, "model": "GOMathL2O", "rule": "gomath",
                                                "config": {"hidden_size": HIDDEN, **config}, "rho": RHO,
                                                "objective": "mean"})

    math_off = dict(p_use=True, b_use=False, b1_use=False, b2_use=False, p_scale_learned=False,
                    b_scale_learned=False, a_scale_learned=False, b1_scale_learned=False, b2_scale_learned=False)
    mathl2o = {
        "mathl2o_pa_lasso": (dict(a_use=True, p_norm="sigmoid", a_norm="sigmoid"),
                             {"extrapolation": True}),
        "mathl2o_p_lasso": (dict(a_use=False, p_norm="sigmoid", a_norm="sigmoid"), {"extrapolation": False}),
        "mathl2o_pa_logistic_squash": (dict(a_use=True, p_norm="softplus", p_scale=2.0, a_norm="softplus",
                                            a_scale=0.3),
                                       {"p_norm": "softplus", "p_scale": 2.0, "a_norm": "softplus", "a_scale": 0.3}),
    }
    for seed, (case, (kwargs, config)) in enumerate(mathl2o.items(), start=20):
        result = run_case(lambda: optimizers.CoordMathLSTM(2, 1, HIDDEN, 2, **math_off, **kwargs), lasso, x0,
                          "smooth_grad", None, seed)
        save_case(out, case, *result, W, Y, x0, {"official": origin, "model": "CoordMathLSTM", "rule": "mathl2o",
                                                "config": {"hidden_size": HIDDEN, **config}, "rho": RHO,
                                                "objective": "mean"})

    result = run_case(lambda: optimizers.CoordBlackboxLSTM(2, 1, HIDDEN, 2), lasso, x0, "bp_grad", None, 30)
    save_case(out, "l2l_lasso", *result, W, Y, x0, {"official": origin, "model": "CoordBlackboxLSTM", "rule": "l2l",
                                                    "config": {"hidden_size": HIDDEN, "grad_scale": 1.0 / BATCH},
                                                    "rho": RHO, "objective": "mean"})
    result = run_case(lambda: optimizers.RNNprop(2, 1, HIDDEN, 2, beta1=0.95, beta2=0.95), lasso, x0,
                      "bp_grad", 0.01, 40)
    save_case(out, "rnnprop_lasso", *result, W, Y, x0, {"official": origin, "model": "RNNprop", "rule": "rnnprop",
                                                        "config": {"hidden_size": HIDDEN}, "rho": RHO,
                                                        "objective": "mean"})
    generator_moments(out, origin, optimizees)
    baseline_cases(out, origin, optimizers, optimizees, W, Y, x0)


#: the classical baselines of the official code: name -> (class, step size, reset_state options).
#: Adam-HD adapts one step size for the whole batch (its inner product runs over every
#: instance), so its cases use a batch of one; two β values, the larger one reaching the floor 1e-8.
BASELINES = {
    "baseline_adam": ("Adam", 1e-2, {"momentum1": 0.1, "momentum2": 0.1, "eps": 1e-8}, BATCH),
    "baseline_adamhd": ("AdamHD", 0.1, {"momentum1": 0.001, "momentum2": 0.1, "eps": 1e-8, "hyper_step": 1e-2}, 1),
    "baseline_adamhd_floor": ("AdamHD", 0.1, {"momentum1": 0.001, "momentum2": 0.1, "eps": 1e-8,
                                              "hyper_step": 5.0}, 1),
}


def baseline_cases(out: Path, origin: str, optimizers, optimizees, W, Y, x0) -> None:
    """The official Adam and Adam-HD on the LASSO case's problem, STEPS steps."""
    for case, (name, step_size, options, batch) in BASELINES.items():
        optimizee = optimizees.LASSO(batch, W=W[:batch], Y=Y[:batch], rho=RHO, s=SPARSITY, input_dim=N, output_dim=M)
        start(optimizee, x0[:batch])
        optimizer = getattr(optimizers, name)()
        optimizer.reset_state(optimizee, step_size, **options)
        trajectory = [optimizee.X.detach().clone()]
        for _ in range(STEPS):
            optimizee = optimizer(optimizee)
            trajectory.append(optimizee.X.detach().clone())
        tensors = {"trajectory": torch.stack(trajectory).squeeze(-1).contiguous(), "W": W[:batch].contiguous(),
                   "Y": Y[:batch].squeeze(-1).contiguous(), "x0": x0[:batch].squeeze(-1).contiguous()}
        meta = {"official": origin, "model": name, "step_size": step_size, "options": options, "rho": RHO}
        save_file(tensors, str(out / f"{case}.safetensors"), metadata={"meta": json.dumps(meta, sort_keys=True)})
        print(f"{case}: trajectory {tuple(tensors['trajectory'].shape)}")


def proof_repo_cases(path: Path, out: Path) -> None:
    optimizers, optimizees = import_official(path)
    origin = f"NetX-lab/MathL2OProof-Official@{commit(path)}"
    W, _, _ = problem(seed=2)
    g = torch.Generator().manual_seed(3)
    W_unit = W / W.pow(2).sum(dim=1, keepdim=True).sqrt()
    Y = W_unit @ torch.randn(BATCH, N, 1, generator=g, dtype=torch.float64)
    x0 = torch.zeros(BATCH, N, 1, dtype=torch.float64)

    def qp():
        return optimizees.QP(BATCH, W=W, Y=Y, rho=0.0, input_dim=N, output_dim=M, dtype=torch.float64)

    width = 64
    result = run_case(lambda: optimizers.CoordMathDNN(2, 1, width, 2, e=5, p_use=True, p_norm="sigmoid",
                                                      p_scale_learned=False), qp, x0, "smooth_grad", None, 50)
    save_case(out, "ntk_gd_qp", *result, W, Y, x0, {"official": origin, "model": "CoordMathDNN", "rule": "ntk_gd",
                                                    "config": {"hidden_size": width, "input_scale": 5.0},
                                                    "rho": 0.0, "objective": "sum"})
    qp_moments(out, origin, optimizees)


def _moments(samples: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per statistic: ``[mean, standard error]`` over the sampled instances."""
    return {name: torch.stack([v.mean(), v.std() / v.numel() ** 0.5]).double() for name, v in samples.items()}


def generator_moments(out: Path, origin: str, optimizees) -> None:
    """Moments of official LASSO (toy size) and sparse-logistic (paper size) samples."""
    batch, m, n, s = 512, 20, 40, 5
    lasso = optimizees.LASSO(batch, rho=0.1, s=s, input_dim=n, output_dim=m, seed=123)
    A, b, x0 = lasso.W.double(), lasso.Y.squeeze(-1).double(), lasso.X.squeeze(-1).double()
    stats = _moments({
        "A_mean": A.mean(dim=(1, 2)), "A_sq_times_m": A.pow(2).mean(dim=(1, 2)) * m,
        "column_norm": A.norm(dim=1).mean(dim=1), "b_sq": b.pow(2).sum(-1),
        "x0_mean": x0.mean(-1), "x0_sq": x0.pow(2).mean(-1),
        "lipschitz": torch.linalg.matrix_norm(A, ord=2) ** 2,
        "objective_x0": lasso.objective_batch().double().reshape(-1),
    })
    save_file(stats, str(out / "generator_lasso.safetensors"), metadata={"meta": json.dumps(
        {"official": origin, "family": "lasso", "params": {"m": m, "n": n, "sparsity": s, "l1": 0.1},
         "batch": batch})})
    batch, m, n, s = 64, 1000, 50, 20
    logistic = optimizees.LogisticL1(batch, rho=0.1, s=s, input_dim=n, output_dim=m, seed=321)
    A, y, x0 = logistic.W.double(), logistic.Y.squeeze(-1).double(), logistic.X.squeeze(-1).double()
    stats = _moments({
        "A_mean": A.mean(dim=(1, 2)), "A_sq": A.pow(2).mean(dim=(1, 2)),
        "positive_fraction": y.mean(-1), "x0_mean": x0.mean(-1), "x0_sq": x0.pow(2).mean(-1),
        "label_signal": (A.transpose(1, 2) @ (2 * y - 1).unsqueeze(-1)).squeeze(-1).div(m).pow(2).sum(-1),
        "lipschitz": logistic.grad_lipschitz().double().reshape(-1),
        "objective_x0": logistic.objective_batch().double().reshape(-1),
    })
    save_file(stats, str(out / "generator_logistic_l1.safetensors"), metadata={"meta": json.dumps(
        {"official": origin, "family": "logistic_l1", "params": {"m": m, "n": n, "sparsity": s, "l1": 0.1},
         "batch": batch})})
    print("generator moments: lasso, logistic_l1")


def qp_moments(out: Path, origin: str, optimizees) -> None:
    batch, m, n = 512, 20, 32
    qp = optimizees.QP(batch, rho=0.0, input_dim=n, output_dim=m, seed=77)
    A, b = qp.W.double(), qp.Y.squeeze(-1).double()
    stats = _moments({
        "A_mean": A.mean(dim=(1, 2)), "A_sq_times_m": A.pow(2).mean(dim=(1, 2)) * m,
        "column_norm": A.norm(dim=1).mean(dim=1), "b_sq": b.pow(2).sum(-1),
        "x0_sq": qp.X.double().pow(2).mean(dim=(1, 2)),
        "lipschitz": qp.grad_lipschitz().double().reshape(-1),
        "objective_x0": qp.objective_batch().double().reshape(-1),
    })
    save_file(stats, str(out / "generator_quadratic.safetensors"), metadata={"meta": json.dumps(
        {"official": origin, "family": "quadratic", "params": {"m": m, "n": n}, "batch": batch})})
    print("generator moments: qp")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gomath", type=Path, required=True, help="checkout of NetX-lab/GoMathL2O-Official")
    parser.add_argument("--proof", type=Path, required=True, help="checkout of NetX-lab/MathL2OProof-Official")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/parity/goldens")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    gomath_repo_cases(args.gomath.resolve(), args.out)
    proof_repo_cases(args.proof.resolve(), args.out)


if __name__ == "__main__":
    main()
