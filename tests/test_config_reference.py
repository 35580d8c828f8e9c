"""docs/configuration.md is generated from the Settings class; these fail when the page and the class drift."""

from __future__ import annotations

from pathlib import Path

import pytest
from augserve import settings_doc
from augserve.settings import Settings

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def table_rows() -> dict[str, str]:
    lines = settings_doc.render().splitlines()
    return {line.split("|")[1].strip(" `"): line for line in lines if line.startswith("| `AUGSERVE_")}


def test_the_configuration_page_is_what_the_settings_class_says() -> None:
    assert PAGE.read_text() == settings_doc.render(), (
        "docs/configuration.md differs from service/augserve/settings.py: run python -m augserve.settings_doc"
    )


def test_every_setting_has_its_row() -> None:
    assert list(table_rows()) == [f"AUGSERVE_{name.upper()}" for name in Settings.model_fields]


def test_the_page_shows_defaults_and_bounds_from_the_class() -> None:
    rows = table_rows()
    assert "| `8000` | integer, 0 to 65535 |" in rows["AUGSERVE_PORT"]
    assert "| `268435456` (256 MiB) | integer > 0 | bytes in one request body |" in rows["AUGSERVE_MAX_REQUEST_BYTES"]
    assert "| unset | path, or unset |" in rows["AUGSERVE_DATA_ROOT"]


def test_check_says_when_the_page_is_stale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "configuration.md"
    assert settings_doc.main([str(page), "--check"]) == 1
    assert "run python -m augserve.settings_doc" in capsys.readouterr().err
    assert settings_doc.main([str(page)]) == 0 and settings_doc.main([str(page), "--check"]) == 0
