"""create_optimizer: the fused Adam/AdamW implementation on CPU, its agreement with the loop, resume."""

from __future__ import annotations

import copy

import pytest
import torch

from w2vbert.training.config import TrainingConfig
from w2vbert.training.optim import create_optimizer, param_groups_with_scales


def _config(tmp_path, optimizer: str) -> TrainingConfig:
    return TrainingConfig(exp_dir=tmp_path, optimizer=optimizer, base_lr=1e-2, weight_decay=0.01)


def _steps(params: list[torch.nn.Parameter], opt: torch.optim.Optimizer, n: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_cpu_parameters_get_the_fused_optimizer_and_it_matches_the_for_loop(tmp_path, name):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(7))]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in params]
    config = _config(tmp_path, name)
    opt = create_optimizer(params, config)
    assert opt.param_groups[0]["fused"] is True
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    betas = (config.adam_beta1, config.adam_beta2)
    loop = cls(ref, lr=1e-2, betas=betas, eps=config.adam_eps, weight_decay=0.01, foreach=False)
    _steps(params, opt, 5, seed=1)
    _steps(ref, loop, 5, seed=1)
    for p, r in zip(params, ref):
        torch.testing.assert_close(p, r, atol=1e-6, rtol=1e-5)


def test_fused_optimizer_resumes_bit_identically_from_its_state_dict(tmp_path):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 4)), torch.nn.Parameter(torch.randn(4))]
    groups = param_groups_with_scales([("a", [params[0]], 1.0, 0), ("b", [params[1]], 0.5, 0)])
    opt = create_optimizer(groups, _config(tmp_path, "adamw"))
    _steps(params, opt, 3, seed=1)
    saved_params = [p.detach().clone() for p in params]
    saved_state = copy.deepcopy(opt.state_dict())
    _steps(params, opt, 3, seed=2)

    resumed = [torch.nn.Parameter(p.clone()) for p in saved_params]
    groups = param_groups_with_scales([("a", [resumed[0]], 1.0, 0), ("b", [resumed[1]], 0.5, 0)])
    opt2 = create_optimizer(groups, _config(tmp_path, "adamw"))
    opt2.load_state_dict(saved_state)
    _steps(resumed, opt2, 3, seed=2)
    for p, r in zip(params, resumed):
        assert torch.equal(p, r)


def test_a_state_dict_saved_by_the_loop_implementation_resumes_with_the_loop(tmp_path):
    params = [torch.nn.Parameter(torch.randn(3))]
    old = torch.optim.AdamW(params, lr=1e-2, foreach=False)
    _steps(params, old, 2, seed=1)
    opt = create_optimizer(
        [torch.nn.Parameter(params[0].detach().clone())], _config(tmp_path, "adamw")
    )
    opt.load_state_dict(old.state_dict())
    assert not opt.param_groups[0]["fused"]
