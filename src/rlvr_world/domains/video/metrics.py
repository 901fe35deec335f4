"""Frame metrics and the video reward, on float frames in [0, 1].

Axes: N frames, F frames per rollout, R rollouts, H×W pixels (H, W >= 11 for
SSIM's window), L tokens per frame.

- MSE and MAE are on the [0, 1] pixel scale, averaged over pixels and the 3
  channels (the RLVR-World paper reports MSE on another scale; compare
  trends, not numbers).
- PSNR uses data range 1; identical frames would give +inf, so PSNR is capped
  at `PSNR_CAP` dB (MSE 1e-10).
- SSIM is the standard one (Gaussian 11×11 window, sigma 1.5, k1 0.01, k2 0.03,
  averaged over the 3 channels), from torchmetrics, which pads the borders by
  reflection (so the map covers the whole frame). In float32 its error is
  ~1e-4 (an exact copy is set to 1, see `frame_metrics`).
- LPIPS needs a network from `lpips.load_lpips` (the video domain loads the
  pretrained VGG16 one by default, `VideoData.lpips`).

Inputs may be torch tensors or numpy arrays; uint8 frames are scaled by 1/255
and float frames are clamped into [0, 1] (NaN counts as 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

PSNR_CAP = 100.0  # dB
BEST_REWARD = 0.0  # perfect prediction: MAE 0, perceptual distance 0
WORST_REWARD = -3.0  # MAE <= 1 and 1 - SSIM <= 2 on frames in [0, 1]; also the value for unusable input


def _frames(x: Any) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    t = t.float() / 255.0 if t.dtype == torch.uint8 else t.float()
    return torch.nan_to_num(t, nan=0.0).clamp(0.0, 1.0)


def frame_metrics(pred: Any, real: Any, lpips: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Per-frame `mse`, `mae`, `psnr`, `ssim` (and `lpips` if a network is given) of (..., H, W, 3) frames.

    Each value has the leading shape of the input: (N,) for (N, H, W, 3),
    (N, F) for (N, F, H, W, 3). Raises ValueError on mismatched shapes.
    """
    p, r = _frames(pred), _frames(real)
    if p.shape != r.shape or p.dim() < 4 or p.shape[-1] != 3:
        raise ValueError(f"pred and real must both be (..., H, W, 3), got {tuple(p.shape)} and {tuple(r.shape)}")
    lead = p.shape[:-3]
    p = p.reshape(-1, *p.shape[-3:]).permute(0, 3, 1, 2)  # (N, 3, H, W)
    r = r.reshape(-1, *r.shape[-3:]).permute(0, 3, 1, 2)  # (N, 3, H, W)
    out = {
        "mse": ((p - r) ** 2).mean((1, 2, 3)),
        "mae": (p - r).abs().mean((1, 2, 3)),
        "psnr": peak_signal_noise_ratio(p, r, data_range=1.0, reduction="none", dim=(1, 2, 3)).clamp(max=PSNR_CAP),
        "ssim": structural_similarity_index_measure(p, r, data_range=1.0, kernel_size=11, sigma=1.5,
                                                    reduction="none"),
    }
    # float32 rounding makes the local variance of flat regions slightly negative (torchmetrics clamps it, not
    # the covariance), so a frame scores ~0.9996 against itself; exact copies get their exact SSIM, 1
    # (float64 would fix it everywhere, at ~20x the time)
    same = (p == r).flatten(1).all(1)  # (N,)
    out["ssim"] = torch.where(same, torch.ones_like(out["ssim"]), out["ssim"])
    if lpips is not None:
        with torch.no_grad():
            out["lpips"] = lpips(p, r)  # (N,)
    return {k: v.reshape(lead) for k, v in out.items()}


def repetition_rate(token_rollouts: Any) -> float:
    """Share of rollouts (R, F, L) whose last predicted frame repeats the one before it (F >= 2); 0 for R = 0."""
    t = torch.as_tensor(np.asarray(token_rollouts) if not isinstance(token_rollouts, torch.Tensor) else token_rollouts)
    if t.dim() != 3 or t.shape[1] < 2:
        raise ValueError(f"token rollouts must be (R, F >= 2, L), got {tuple(t.shape)}")
    if len(t) == 0:
        return 0.0
    return (t[:, -1] == t[:, -2]).all(dim=1).float().mean().item()


def video_reward(pred: Any, real: Any, perceptual: str = "ssim", lpips: torch.nn.Module | None = None
                 ) -> tuple[float, dict[str, Any]]:
    """-(MAE + perceptual distance) of predicted frames (F, H, W, 3) against real ones, averaged over F.

    The perceptual distance is 1 - SSIM (`perceptual="ssim"`, the default) or
    LPIPS (`perceptual="lpips"`, needs `lpips`). Best value 0; unusable frames
    (mismatched or wrong shapes, frames too small for SSIM) give
    `WORST_REWARD` = -3 with parts {"why": ...} instead of raising. Parts:
    mae, mse, psnr, ssim, perceptual (and lpips if a network is given), means
    over the F frames. A bad `perceptual` setting raises ValueError.
    """
    if perceptual not in ("ssim", "lpips"):
        raise ValueError(f"unknown perceptual distance {perceptual!r}; known: ssim, lpips")
    if perceptual == "lpips" and lpips is None:
        raise ValueError("perceptual='lpips' needs an LPIPS network (lpips.load_lpips)")
    try:
        p, r = _frames(pred), _frames(real)
        if p.dim() != 4 or p.shape != r.shape or len(p) == 0:
            raise ValueError(f"pred and real must both be (F, H, W, 3), got {tuple(p.shape)} and {tuple(r.shape)}")
        m = frame_metrics(p, r, lpips)
    except (ValueError, RuntimeError, TypeError) as e:
        return WORST_REWARD, {"why": str(e).splitlines()[0] if str(e) else type(e).__name__}
    parts: dict[str, Any] = {k: v.mean().item() for k, v in m.items()}
    parts["perceptual"] = 1.0 - parts["ssim"] if perceptual == "ssim" else parts["lpips"]
    return 0.0 - (parts["mae"] + parts["perceptual"]), parts  # 0.0 - x: no -0.0


def patch_rewards(pred: Any, real: Any, grid: int, lpips: torch.nn.Module | None = None) -> torch.Tensor:
    """`video_reward` split over a grid × grid tiling of each frame: (F, grid*grid), row-major.

    Each tile's value is -(its mean absolute error + its mean perceptual
    distance): 1 - SSIM from SSIM's full-frame map, or, with an `lpips`
    network, LPIPS's per-pixel map (`LPIPS.distance_map`). So the mean over a
    frame's tiles is that frame's reward (for LPIPS exactly when its feature
    maps tile the frame, as VGG16's do at 64×64). Tile (y, x) is where the
    frame tokenizer's code y*grid + x sits. Raises ValueError on mismatched
    shapes (callers score those as failures).
    """
    p, r = _frames(pred), _frames(real)
    if p.dim() != 4 or p.shape != r.shape or p.shape[1] % grid or p.shape[2] % grid:
        raise ValueError(f"pred and real must be (F, H, W, 3) tiled by {grid}x{grid}, "
                         f"got {tuple(p.shape)} and {tuple(r.shape)}")
    p, r = p.permute(0, 3, 1, 2), r.permute(0, 3, 1, 2)  # (F, 3, H, W)
    if lpips is not None:
        with torch.no_grad():
            perceptual = lpips.distance_map(p, r)  # (F, H, W)
    else:
        _, ssim_map = structural_similarity_index_measure(p, r, data_range=1.0, kernel_size=11, sigma=1.5,
                                                          reduction="none", return_full_image=True)  # (F, 3, H, W)
        same = (p == r).flatten(1).all(1)[:, None, None]  # (F, 1, 1) exact copies: SSIM 1, as in `frame_metrics`
        perceptual = 1.0 - torch.where(same, torch.ones_like(ssim_map[:, 0]), ssim_map.mean(1))  # (F, H, W)
    distance = (p - r).abs().mean(1) + perceptual  # (F, H, W)
    tiles = torch.nn.functional.avg_pool2d(distance[:, None], (p.shape[2] // grid, p.shape[3] // grid))  # (F, 1, G, G)
    return 0.0 - tiles.flatten(1)
