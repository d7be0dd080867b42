"""`crossmodal train` end to end with the real lite-en towers on the bundled samples."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from click.testing import CliRunner

from crossmodal.cli.main import cli
from crossmodal.models.registry import load_encoder

SAMPLES = Path(str(resources.files("crossmodal") / "samples"))


def test_train_skips_bad_images_and_yields_a_usable_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = ["image,caption"]
    for path in sorted(SAMPLES.glob("*.jpg")):
        english = path.with_suffix(".txt").read_text(encoding="utf-8").splitlines()[0]
        rows.append(f"{path},{english}")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    rows.append(f"{tmp_path / 'broken.jpg'},a broken photo")
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    data = {"format": "table", "path": str(tmp_path / "pairs.csv")}
    config = {
        "model": "towers:lite-en", "train_data": data, "val_data": data,
        "output_dir": str(tmp_path / "run"), "fresh_heads": True,
        "stages": [{"name": "heads", "losses": {"infonce": 1.0, "instance": 0.5},
                    "max_epochs": 3, "batch_size": 4, "warmup": 1}],
    }
    (tmp_path / "run.json").write_text(json.dumps(config), encoding="utf-8")
    result = CliRunner().invoke(cli, ["train", "--config", "run.json"])
    assert result.exit_code == 0, result.output + str(result.exception)
    assert "best val Rsum" in result.output
    tower = tmp_path / "run" / "tower.json"
    encoder = load_encoder.__wrapped__(f"towers:{tower}")
    assert encoder.encode_texts(["a dog"]).shape == (1, 256)
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["val"]["images"] == 12  # the unreadable photo was left out, not fatal
