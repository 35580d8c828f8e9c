"""The layout docs/architecture.md describes, checked on the source: which module may import what.

- Only the HTTP layer (app.py, routes/, the error mapping, the body-size middleware) imports a web framework.
- Only the engine imports albumentations, and inside it the arrows run pipeline -> transforms -> functional.
- The server takes nothing from the client package but its contract, ``augserve_client.protocol``, which
  itself imports no HTTP library and nothing else of the client.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICE = ROOT / "service" / "augserve"
PROTOCOL = ROOT / "clients" / "python" / "augserve_client" / "protocol"
HTTP_LAYER = {"app.py", "routes", "http_errors.py", "body_limit.py", "request_log.py", "http_guard.py"}
WEB_FRAMEWORKS = {"fastapi", "starlette", "uvicorn"}


def imports(path: Path, package: str) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved against ``package``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


def modules(folder: Path, package: str) -> dict[str, set[str]]:
    """Every module under ``folder`` (by its path relative to it) and the names it imports."""
    found = {}
    for path in sorted(folder.rglob("*.py")):
        relative = path.relative_to(folder)
        found[str(relative)] = imports(path, ".".join([package, *relative.parts[:-1]]))
    return found


def top(name: str) -> str:
    return name.split(".")[0]


SERVER_MODULES = modules(SERVICE, "augserve")


def test_the_service_tree_was_read() -> None:
    assert {"app.py", "engine/pipeline.py", "routes/augment.py", "variants.py"} <= set(SERVER_MODULES)


@pytest.mark.parametrize("module", sorted(SERVER_MODULES))
def test_only_the_http_layer_imports_a_web_framework(module: str) -> None:
    frameworks = {name for name in SERVER_MODULES[module] if top(name) in WEB_FRAMEWORKS}
    in_http_layer = module in HTTP_LAYER or module.split("/")[0] in HTTP_LAYER
    # __main__ runs uvicorn, and devserver starts ``python -m augserve``: neither is imported by the app.
    assert in_http_layer or module in {"__main__.py"} or not frameworks, frameworks


@pytest.mark.parametrize("module", sorted(SERVER_MODULES))
def test_only_the_engine_imports_albumentations(module: str) -> None:
    heavy = {name for name in SERVER_MODULES[module] if top(name) in {"albumentations", "albucore"}}
    assert module.startswith("engine/") or not heavy, heavy


@pytest.mark.parametrize("module", sorted(SERVER_MODULES))
def test_the_server_takes_only_the_contract_from_the_client_package(module: str) -> None:
    taken = {name for name in SERVER_MODULES[module] if top(name) == "augserve_client"}
    outside = {name for name in taken if not name.startswith("augserve_client.protocol")}
    # The command line is a client of the service too (datasets, augment --url); the app never imports it.
    assert module.startswith("cli/") or not outside, outside


def test_the_app_never_imports_the_command_line() -> None:
    for module, names in SERVER_MODULES.items():
        if not module.startswith("cli/") and module != "__main__.py":
            assert not {name for name in names if name.startswith("augserve.cli")}, module


def test_the_engine_imports_nothing_of_the_service_around_it() -> None:
    for module, names in SERVER_MODULES.items():
        if module.startswith("engine/"):
            service = {name for name in names if top(name) == "augserve" and not name.startswith("augserve.engine")}
            assert not service, (module, service)


def test_the_engine_arrows_run_pipeline_to_transforms_to_functional() -> None:
    engine = {module: names for module, names in SERVER_MODULES.items() if module.startswith("engine/")}
    assert not {name for name in engine["engine/functional.py"] if name.startswith("augserve.engine")}
    assert not {name for name in engine["engine/transforms.py"] if name.startswith("augserve.engine.pipeline")}


def test_the_contract_imports_nothing_of_the_client_around_it() -> None:
    for module, names in modules(PROTOCOL, "augserve_client.protocol").items():
        client = {name for name in names if top(name) == "augserve_client" and ".protocol" not in name}
        assert not client, (module, client)
        assert not {name for name in names if top(name) in {"httpx", "torch", "fastapi"}}, module


def test_importing_the_contract_loads_no_http_library() -> None:
    code = (
        "import sys; import augserve_client.protocol.wire, augserve_client.protocol.epochs, "
        "augserve_client.protocol.errors, augserve_client.protocol.datasets; "
        "print(sorted(m for m in ('httpx', 'h11', 'httpcore', 'torch') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
