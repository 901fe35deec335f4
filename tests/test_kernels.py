"""oneDNN linear maps against torch's own, values and gradients."""

import json

import pytest
import torch

from rlvr_world.engine import kernels

pytestmark = pytest.mark.skipif(not kernels.ONEDNN, reason="this PyTorch has no oneDNN")


@pytest.fixture(autouse=True)
def onednn_everywhere(monkeypatch):
    """These tests check oneDNN's results, whichever path this machine would choose."""
    monkeypatch.setenv("RLVR_WORLD_KERNELS", "onednn")


@pytest.mark.parametrize("bias", [True, False])
def test_onednn_linear_matches_nn_linear_in_value_and_gradient(bias):
    torch.manual_seed(0)
    plain = torch.nn.Linear(24, 40, bias=bias)
    fast = kernels.accelerate(torch.nn.Sequential(torch.nn.Linear(24, 40, bias=bias)))[0]
    fast.load_state_dict(plain.state_dict())
    assert type(fast) is kernels.OneDNNLinear and set(fast.state_dict()) == set(plain.state_dict())
    x = torch.randn(3, 7, 24)  # leading batch dims, as in a transformer
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = plain(xa), fast(xb)
    assert torch.allclose(ya, yb, atol=1e-5)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    assert torch.allclose(xa.grad, xb.grad, atol=1e-5)
    assert torch.allclose(plain.weight.grad, fast.weight.grad, atol=1e-4)
    if bias:
        assert torch.allclose(plain.bias.grad, fast.bias.grad, atol=1e-5)


def test_onednn_linear_falls_back_where_it_does_not_apply():
    torch.manual_seed(0)
    layer = kernels.accelerate(torch.nn.Sequential(torch.nn.Linear(8, 4)))[0]
    x = torch.randn(5, 8)
    assert kernels.applies(x, layer.weight)
    assert not kernels.applies(x.double(), layer.weight.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not kernels.applies(x, layer.weight)
        assert layer(x).dtype == torch.bfloat16  # autocast's own F.linear ran
    assert torch.allclose(layer.double()(x.double()), torch.nn.functional.linear(x.double(), layer.weight, layer.bias))


def test_packed_linear_fuses_maps_sharing_an_input():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(16, 8), torch.nn.Linear(16, 12)
    x = torch.randn(4, 16)
    fused = kernels.PackedLinear.of(a, b, rows=4)
    assert fused.packed is not None
    with torch.no_grad():
        assert torch.allclose(fused(x), torch.cat([a(x), b(x)], dim=-1), atol=1e-5)
        plain = kernels.PackedLinear.of(a, rows=4, pack_weight=False)
        assert plain.packed is None and torch.allclose(plain(x), a(x))


def test_the_generic_path_serves_every_use_when_chosen(monkeypatch):
    monkeypatch.setenv("RLVR_WORLD_KERNELS", "torch")
    torch.manual_seed(0)
    layer = kernels.accelerate(torch.nn.Sequential(torch.nn.Linear(8, 4)))[0]
    x = torch.randn(5, 8, requires_grad=True)
    layer(x).sum().backward()
    assert "_onednn_packed" not in layer.__dict__ and x.grad is not None
    assert kernels.PackedLinear.of(layer, rows=4).packed is None


def test_an_unknown_kernel_setting_is_one_line(monkeypatch):
    monkeypatch.setenv("RLVR_WORLD_KERNELS", "fast")
    with pytest.raises(ValueError, match="RLVR_WORLD_KERNELS='fast': use onednn, torch"):
        kernels.choice()


def test_the_measured_choice_is_kept_per_machine_and_reused(monkeypatch, tmp_path):
    monkeypatch.delenv("RLVR_WORLD_KERNELS")
    monkeypatch.setenv("RLVR_WORLD_CACHE", str(tmp_path))
    kernels._measured_choice.cache_clear()
    monkeypatch.setattr(kernels, "measure_speedup", lambda: {"decode": 0.7, "forward": 1.3, "input_grad": 1.05})
    try:
        assert kernels.choice() == {"decode": False, "forward": True, "input_grad": False}  # margin 1.1
        (saved,) = (tmp_path / "kernels").glob("*.json")
        record = json.loads(saved.read_text())
        assert record["onednn_speedup"]["forward"] == 1.3 and record["threads"] == torch.get_num_threads()
        assert "model" in record["cpu"] and not list((tmp_path / "kernels").glob("*.tmp"))
        kernels._measured_choice.cache_clear()  # a new process: reads the file, measures nothing
        monkeypatch.setattr(kernels, "measure_speedup", lambda: pytest.fail("measured again"))
        assert kernels.choice()["forward"] is True
        # the same CPU limited to fewer instructions is measured on its own (an emulated AVX2 machine)
        kernels._measured_choice.cache_clear()
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
        monkeypatch.setattr(kernels, "measure_speedup", lambda: {"decode": 1.5, "forward": 0.9, "input_grad": 1.2})
        assert kernels.choice() == {"decode": True, "forward": False, "input_grad": True}
        assert len(list((tmp_path / "kernels").glob("*.json"))) == 2
    finally:
        kernels._measured_choice.cache_clear()


def test_the_measurement_times_both_paths():
    speedup = kernels.measure_speedup(repeats=1)
    assert set(speedup) == set(kernels.USES) and all(0 < v < 100 for v in speedup.values())


def test_results_name_the_machine_and_any_instruction_set_limit(monkeypatch):
    from types import SimpleNamespace

    from rlvr_world import device as dev, report

    monkeypatch.setenv("RLVR_WORLD_KERNELS", "torch")  # decided without measuring
    for k in dev.ISA_LIMITS:
        monkeypatch.delenv(k, raising=False)
    m = report.machine(SimpleNamespace(device="cpu", dtype="fp32"))
    assert m["device"] == "cpu" and m["dtype"] == "fp32" and m["threads"] == torch.get_num_threads()
    assert "isa_limits" not in m and set(m["cpu"]) == {"model", "flags"}
    if kernels.ONEDNN:
        assert m["onednn"] == {use: False for use in kernels.USES}
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # what an emulated AVX2 run sets: the results must say so
    assert report.machine(SimpleNamespace(device="cpu", dtype="fp32"))["isa_limits"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert report.machine(SimpleNamespace(device="cpu", dtype="bf16"))["dtype"] == "bf16"
