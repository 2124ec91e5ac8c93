"""The installed package must carry everything the checkout has."""

from __future__ import annotations

import tomllib

from tests.conftest import ROOT


def test_every_subpackage_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "costplan").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    data_dirs = {
        "costplan._data." + ".".join(p.relative_to(ROOT).parts)
        for p in [ROOT / "schemas", *(ROOT / "schemas").rglob("*")]
        if p.is_dir() and "__pycache__" not in p.parts
    }
    found |= data_dirs
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"


def test_schemas_ship_as_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = set()
    for package, patterns in config["tool"]["setuptools"]["package-data"].items():
        directory = ROOT.joinpath(*package.split(".")[2:])
        shipped |= {str(p.relative_to(ROOT)) for pattern in patterns for p in directory.glob(pattern)}
    on_disk = {str(p.relative_to(ROOT)) for p in (ROOT / "schemas").glob("*.json")}
    assert on_disk and on_disk <= shipped
