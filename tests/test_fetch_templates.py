"""Templates the way the field gets data: the SHREC recipes fetch the polnet maps (pinned SHA-256) on first use.

The public source is stood in for by a ``file://`` mirror of ``../shared/structures/polnet-10A``; no network.
"""

import shutil

import pytest
from conftest import POLNET

from sasi.errors import SasiError
from sasi.simulate import get_recipe
from sasi.simulate.fetch import POLNET_SHA256, fetch_polnet, template_folder

pytestmark = pytest.mark.skipif(not POLNET.is_dir(), reason="shared polnet templates not beside the checkout")


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    monkeypatch.delenv("SASI_TEMPLATES", raising=False)
    monkeypatch.setenv("SASI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SASI_TEMPLATES_URL", POLNET.resolve().as_uri())
    return tmp_path


def test_recipes_never_default_to_the_development_path(monkeypatch):
    monkeypatch.delenv("SASI_TEMPLATES", raising=False)
    for name in ("shrec-like-v1", "shrec-like-fast-v1"):
        templates = get_recipe(name).simulation.templates
        assert templates == "polnet-10A" and "shared" not in templates
    assert set(get_recipe("shrec-like-v1").simulation.classes) <= set(POLNET_SHA256)


def test_fetch_once_from_mirror_then_cached(mirror, capsys):
    folder = fetch_polnet(["1bxn", "3qm1"])
    assert sorted(p.name for p in folder.iterdir()) == ["1bxn.mrc", "3qm1.mrc"]
    assert (folder / "1bxn.mrc").read_bytes() == (POLNET / "1bxn.mrc").read_bytes()
    first = capsys.readouterr().err.strip().splitlines()
    assert len(first) == 1 and "fetching 2 polnet" in first[0] and "--templates" in first[0]
    assert template_folder("polnet-10A", ["1bxn"]) == str(folder)  # cached: says nothing
    assert capsys.readouterr().err == ""


def test_sasi_templates_wins_over_fetching(mirror, monkeypatch):
    monkeypatch.setenv("SASI_TEMPLATES", str(POLNET))
    assert template_folder("polnet-10A") == str(POLNET)
    assert get_recipe("shrec-like-fast-v1").simulation.templates == str(POLNET)
    assert not (mirror / "cache").exists()


def test_checksum_mismatch_and_offline_are_one_line(mirror, monkeypatch):
    bad = mirror / "bad"
    bad.mkdir()
    shutil.copy(POLNET / "3qm1.mrc", bad / "1bxn.mrc")
    monkeypatch.setenv("SASI_TEMPLATES_URL", bad.as_uri())
    with pytest.raises(SasiError, match="SHA-256") as err:
        fetch_polnet(["1bxn"])
    assert "\n" not in str(err.value)
    monkeypatch.setenv("SASI_TEMPLATES_URL", (mirror / "offline").as_uri())
    with pytest.raises(SasiError, match="--templates") as err:
        fetch_polnet(["1bxn"])
    assert "\n" not in str(err.value)


def test_simulate_cli_fetches_for_a_shrec_recipe(mirror):
    from typer.testing import CliRunner

    from sasi.cli import app

    out = mirror / "data"
    result = CliRunner().invoke(app, ["simulate", str(out), "--recipe", "shrec-like-fast-v1", "--shape", "32", "48", "48"])
    assert result.exit_code == 0, result.output
    assert (out / "dataset.yaml").is_file()
    assert len(list((mirror / "cache" / "polnet-10A").glob("*.mrc"))) == 12
