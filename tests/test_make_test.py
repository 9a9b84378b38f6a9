"""`make test` does its own set-up: the README's command needs nothing installed by hand.

The UI test's Chromium is the one piece of set-up outside the venv; `make test` gets it through
scripts/ensure_chromium.sh, and `.ci/run` is a plain call of `make test`.
"""

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "ensure_chromium.sh"


def _bare_path(tmp_path: Path, apt_get: str | None) -> dict:
    """An environment whose PATH has bash and a few core tools only (no Chromium), plus a fake apt-get if given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "id", "env", "dirname", "chmod"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    if apt_get is not None:
        fake = bin_dir / "apt-get"
        fake.write_text(apt_get)
        fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "TUNEOPS_CHROMIUM"}
    return {**env, "PATH": str(bin_dir)}


def _run(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def test_without_chromium_it_is_installed_with_apt_and_its_path_printed(tmp_path):
    # The fake apt-get records its calls and "installs" a chromium beside itself, as Debian's would on PATH.
    calls = tmp_path / "apt-calls"
    apt = f"""#!/bin/bash
echo "$@" >> {calls}
if [ "$1" = install ]; then printf '#!/bin/bash\\n' > "$(dirname "$0")/chromium"; chmod +x "$(dirname "$0")/chromium"; fi
"""
    proc = _run(_bare_path(tmp_path, apt))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "bin" / "chromium")
    assert calls.read_text().splitlines() == ["update -qq", "install -y -qq chromium"]


def test_a_chromium_on_path_or_named_by_tuneops_chromium_is_used_as_is(tmp_path):
    env = _bare_path(tmp_path, apt_get="#!/bin/bash\nexit 99\n")  # apt must not be called
    browser = tmp_path / "bin" / "chromium"
    browser.write_text("#!/bin/bash\n")
    browser.chmod(0o755)
    assert _run(env).stdout.strip() == str(browser)
    other = tmp_path / "my-chromium"
    other.write_text("#!/bin/bash\n")
    other.chmod(0o755)
    assert _run({**env, "TUNEOPS_CHROMIUM": str(other)}).stdout.strip() == str(other)


def test_a_wrong_tuneops_chromium_or_no_way_to_install_fails_naming_the_fix(tmp_path):
    env = _bare_path(tmp_path, apt_get=None)
    proc = _run({**env, "TUNEOPS_CHROMIUM": str(tmp_path / "missing")})
    assert proc.returncode == 1 and "TUNEOPS_CHROMIUM" in proc.stderr and "not an executable" in proc.stderr
    proc = _run(env)
    assert proc.returncode == 1 and "set TUNEOPS_CHROMIUM" in proc.stderr


def test_make_test_runs_the_set_up_and_ci_is_a_plain_call_of_it():
    target = subprocess.run(
        ["make", "-n", "test"], cwd=REPO, capture_output=True, text=True, env={**os.environ, "MAKEFLAGS": ""}
    )
    assert target.returncode == 0, target.stderr
    assert "scripts/ensure_chromium.sh" in target.stdout and "-m pytest" in target.stdout
    ci = [
        line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")
    ]
    assert ci[-1] == "make test" and not any("apt" in line or "chromium" in line for line in ci)
