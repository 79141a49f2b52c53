"""Atomic writes: a failure mid-write leaves the previous complete file and no temp file."""
import json

import pytest

from dive_hf.atomic import atomic_path, write_json


def test_write_json_replaces_whole_file(tmp_path):
    target = tmp_path / "eval_results.json"
    write_json(target, {"a": 1})
    write_json(target, {"b": 2})
    assert json.loads(target.read_text()) == {"b": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["eval_results.json"]


def test_failure_mid_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "config.json"
    write_json(target, {"ok": True})
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text('{"half": ')
            raise RuntimeError("disk full")
    assert json.loads(target.read_text()) == {"ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]
