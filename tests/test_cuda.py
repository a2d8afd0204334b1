"""The engine on a GPU: every op family computed on "cuda" must agree with the same computation on
the CPU (values and gradients). Marked `cuda`: skipped unless CuPy and an NVIDIA GPU are present."""
import numpy as np
import pytest

import engine
import engine.nn as nn
import engine.nn.functional as F

pytestmark = pytest.mark.cuda

CASES = {
    "arith": lambda m, a, b: (a + b) * a - b / (a.abs() + 1) + a ** 2,
    "unary": lambda m, a, b: a.exp().log1p() + a.tanh() + a.sigmoid() + a.relu() + a.sin() * a.cos() + a.erf(),
    "reduce": lambda m, a, b: a.sum(1) + a.mean(1) + a.var(1) + a.amax(1) + a.logsumexp(1) + a.norm(dim=1),
    "softmax": lambda m, a, b: F.log_softmax(a, 1) * F.softmax(b, 1),
    "matmul": lambda m, a, b: (a @ b.T).tanh() @ a,
    "shape": lambda m, a, b: engine.cat([a.T.reshape(-1), b.flatten()]).reshape(2, -1).flip(1),
    "index": lambda m, a, b: a[engine.tensor([0, 2, 2], device=a.device)] * 2 + a[a > 0].sum(),
    "gather": lambda m, a, b: a.gather(1, engine.tensor([[0, 1], [2, 2], [1, 0], [3, 3]], device=a.device)),
    "where": lambda m, a, b: engine.where(a > b, a, b * 2),
}


@pytest.mark.parametrize("name", list(CASES))
def test_op_family_on_cuda_matches_cpu(name):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    results = {}
    for dev in ("cpu", "cuda"):
        a = engine.tensor(x, device=dev, requires_grad=True)
        b = engine.tensor(y, device=dev, requires_grad=True)
        out = CASES[name](engine, a, b)
        out.sum().backward()
        assert out.device.type == dev and a.grad.device.type == dev
        results[dev] = (out.cpu().detach().numpy(), a.grad.cpu().numpy(), b.grad.cpu().numpy()
                        if b.grad is not None else None)
    for c, g in zip(results["cpu"], results["cuda"]):
        if c is not None:
            np.testing.assert_allclose(g, c, rtol=1e-10, atol=1e-12)


def test_model_training_step_on_cuda_matches_cpu():
    engine.manual_seed(0)
    cpu = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)).double()
    gpu = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)).double()
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("cuda")
    x = np.random.default_rng(1).standard_normal((5, 8))
    for model, dev in ((cpu, "cpu"), (gpu, "cuda")):
        model(engine.tensor(x, device=dev)).pow(2).mean().backward()
    for p, q in zip(cpu.parameters(), gpu.parameters()):
        assert q.device.type == "cuda"
        np.testing.assert_allclose(q.grad.cpu().numpy(), p.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_mixed_devices_refused():
    with pytest.raises(RuntimeError, match="same device"):
        engine.ones(2, device="cuda") + engine.ones(2)


def test_numpy_refuses_gpu_tensor():
    with pytest.raises(TypeError, match="cpu"):
        engine.ones(2, device="cuda").numpy()
