"""schemathesis against our own /openapi.json over real HTTP: no 5xx, no schema violation.

The schemathesis CLI is run as a subprocess (its pytest plugin does not load under pytest 9),
bounded by example count and a time budget, against the app served by uvicorn on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.conftest import API_KEY, LiveServer

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance,negative_data_rejection,missing_required_header,unsupported_method,"
          "ignored_auth")


def schemathesis_command() -> list[str]:
    exe = Path(sys.executable).with_name("schemathesis")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("schemathesis")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("schemathesis is not installed (pip install schemathesis)")
        pytest.skip("schemathesis is not installed (pip install schemathesis)")
    return [found]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_api_honours_its_own_openapi_document(live: LiveServer, tmp_path: Path) -> None:
    command = [*schemathesis_command(), "run", f"{live.base_url}/openapi.json",
               "--header", f"Authorization: Bearer {API_KEY}", "--checks", CHECKS,
               "--max-examples", "12", "--workers", "1", "--request-timeout", "10",
               "--phases", "examples,coverage,fuzzing,stateful", "--suppress-health-check", "all", "--seed", "1",
               "--no-color"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "HOME": str(tmp_path)}

    result = subprocess.run(command, capture_output=True, text=True, timeout=200, env=env, cwd=tmp_path,
                            check=False)

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
