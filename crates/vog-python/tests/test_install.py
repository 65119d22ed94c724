"""The built wheel in a fresh virtual environment: it installs with only the dependencies it
declares, and its Python API and command line score the golden MLP on the built-in backend."""

import json
import os
import subprocess
import venv

import numpy as np
import pytest

from conftest import ROOT, relative_error

WHEEL = os.environ.get("VOG_WHEEL")


def _run(args, **kw):
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    assert out.returncode == 0, f"{args}: {out.stderr[-3000:]}"
    return out.stdout


def test_the_wheel_installs_and_scores_in_a_fresh_venv(tmp_path, mlp):
    if not WHEEL:
        if os.environ.get("CI"):
            pytest.fail("VOG_WHEEL is not set: scripts/test.sh gives the wheel it built")
        pytest.skip("set VOG_WHEEL to the built wheel")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    # PYTHONPATH and the outer venv must not leak in: the fresh interpreter sees only its own.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "ORT_DYLIB_PATH")}
    _run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", WHEEL], env=env)
    listed = json.loads(_run([py, "-m", "pip", "list", "--format", "json"], env=env))
    installed = {p["name"].lower() for p in listed} - {"pip", "setuptools"}
    assert installed == {"vog", "numpy"}, installed

    script = (
        "import json, sys, vog\n"
        "r = vog.score(sys.argv[1], sys.argv[2], sys.argv[3], backend='candle', options={'arch': 'mlp'},"
        " out=sys.argv[4], progress=False)\n"
        "print(json.dumps({'vog': r.columns()['vog_all'], 'version': vog.__version__}))\n"
    )
    x, y = mlp.dir / "x.npy", mlp.dir / "y.npy"
    got = json.loads(_run([py, "-c", script, mlp.ckpt, x, y, tmp_path / "api"], env=env, cwd=tmp_path))
    assert relative_error(got["vog"], mlp.reference("true", "logit")) < 1e-5

    # The command line the wheel installs, on the repository's reference configuration.
    vog_cli = env_dir / "bin" / "vog"
    assert got["version"] in _run([vog_cli, "--version"], env=env)
    _run([vog_cli, "score", "-q", "-c", ROOT / "config" / "score-mlp.toml", "-o", tmp_path / "cli"],
         env=env, cwd=tmp_path)
    got_cli = _run([py, "-c", "import json, sys, vog; print(json.dumps(vog.Run(sys.argv[1]).columns()['vog_all']))",
                    tmp_path / "cli"], env=env)
    np.testing.assert_array_equal(json.loads(got_cli), got["vog"])
