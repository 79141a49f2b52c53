"""Pushing stage folders to a Hub and loading them back with timm, transformers and pipeline — over real HTTP
against the project's local Hub test double (tests/hub_server.py), with the real huggingface_hub client."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TOKEN = "hf_dive_test_secret_0123456789"
ROOT = Path(__file__).resolve().parents[1]


def _env(hub, home: Path) -> dict:
    env = dict(os.environ)
    env.update(HF_ENDPOINT=hub.endpoint, HF_HUB_OFFLINE="0", HF_HOME=str(home), HF_TOKEN=TOKEN,
               HF_HUB_DISABLE_TELEMETRY="1", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    env.pop("HF_HUB_CACHE", None)
    return env


def _run(args, env, check=True):
    proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _push(folder, repo_id, env, *extra, check=True):
    return _run(["-m", "dive_hf.cli", "push", str(folder), "--repo_id", repo_id, *extra], env, check)


def _digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


LOAD_SCRIPT = r"""
import json, sys
import numpy as np, torch, timm
import dive_hf
from PIL import Image
from huggingface_hub import ModelCard
from transformers import AutoModelForImageClassification, pipeline

repo_id, local = sys.argv[1], sys.argv[2]
x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    ref = timm.create_model(f"local-dir:{local}", pretrained=True).eval()(x)
    via_timm = timm.create_model(f"hf-hub:{repo_id}", pretrained=True).eval()
    t = via_timm(x)
    hf_model = AutoModelForImageClassification.from_pretrained(repo_id).eval()
    h = hf_model(pixel_values=x).logits
image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=via_timm))
with torch.no_grad():
    expected = int(via_timm(transform(image)[None]).argmax())
top = pipeline("image-classification", model=repo_id)(image, top_k=1)[0]
card = ModelCard.load(repo_id)
print(json.dumps({
    "timm_equal": bool(torch.equal(t, ref)), "transformers_equal": bool(torch.equal(h, ref)),
    "label_names": [hf_model.config.id2label[i] for i in range(hf_model.config.num_labels)],
    "pipeline_label": top["label"], "expected_label": hf_model.config.id2label[expected],
    "model_index": {r.metric_name: r.metric_value for r in card.data.eval_results},
    "card_text": card.text,
}))
"""


def test_push_then_load_everywhere(two_stage_run, hub, tmp_path):
    folders = {}
    for stage in ("teacher", "student"):
        folders[stage] = tmp_path / stage
        shutil.copytree(two_stage_run["root"] / stage, folders[stage])
    env = _env(hub, tmp_path / "push_home")
    _push(folders["teacher"], "tester/dive-tiny-teacher", env)
    _push(folders["student"], "tester/dive-tiny-student", env, "--teacher_repo_id", "tester/dive-tiny-teacher",
          "--commit_message", "DiVE student")
    assert hub.state.tokens_seen == {TOKEN}

    clean = _env(hub, tmp_path / "clean_home")  # a fresh cache: everything comes over HTTP
    for stage, repo_id in (("teacher", "tester/dive-tiny-teacher"), ("student", "tester/dive-tiny-student")):
        out = json.loads(_run(["-c", LOAD_SCRIPT, repo_id, str(folders[stage])], clean).stdout.splitlines()[-1])
        assert out["timm_equal"] and out["transformers_equal"]
        assert out["label_names"] == json.loads((folders[stage] / "config.json").read_text())["label_names"]
        assert out["pipeline_label"] == out["expected_label"]
        metrics = json.loads((folders[stage] / "eval_results.json").read_text())["metrics"]
        assert out["model_index"] == {
            "Top-1": round(100 * metrics["eval_accuracy"], 2),
            "Many-shot top-1": round(100 * metrics["eval_many_shot_accuracy"], 2),
            "Medium-shot top-1": round(100 * metrics["eval_medium_shot_accuracy"], 2),
            "Few-shot top-1": round(100 * metrics["eval_few_shot_accuracy"], 2),
            "Top-5": round(100 * metrics["eval_top5_accuracy"], 2),
        }
        assert f'timm.create_model("hf-hub:{repo_id}", pretrained=True)' in out["card_text"]
    pushed = hub.files("tester/dive-tiny-student")
    assert {"README.md", "config.json", "model.safetensors", "eval_results.json", "per_class_accuracy.png",
            "training_args.json", "run_log.json"} <= set(pushed)
    assert set(pushed) == {p.name for p in folders["student"].iterdir() if p.name in HUB_FILES}
    assert "[tester/dive-tiny-teacher](https://huggingface.co/tester/dive-tiny-teacher)" in pushed["README.md"].decode()
    for repo_id in ("tester/dive-tiny-teacher", "tester/dive-tiny-student"):
        for name, data in hub.files(repo_id).items():
            assert TOKEN.encode() not in data, f"token leaked into {repo_id}/{name}"


def test_repush_is_idempotent(two_stage_run, hub, tmp_path):
    folder = tmp_path / "teacher"
    shutil.copytree(two_stage_run["root"] / "teacher", folder)
    env = _env(hub, tmp_path / "home")
    _push(folder, "tester/again", env)
    head = hub.state.repos["tester/again"].head("main")
    commits = hub.state.commit_count
    _push(folder, "tester/again", env)
    assert hub.state.commit_count == commits  # nothing changed → no commit at all
    assert hub.state.repos["tester/again"].head("main")[0] == head[0]


def test_server_rejects_like_the_hub(hub, tmp_path):
    """The double's own contract: unknown repo → 404 RepoNotFound, duplicate create → 409, no token → 401."""
    script = r"""
import sys
from huggingface_hub import HfApi
from huggingface_hub.errors import RepositoryNotFoundError, HfHubHTTPError
api = HfApi()
api.create_repo("tester/x")
try:
    api.create_repo("tester/x")
except HfHubHTTPError as e:
    print("dup", e.response.status_code)
try:
    api.model_info("tester/nope")
except RepositoryNotFoundError:
    print("missing 404")
try:
    HfApi(token=False).create_repo("tester/y")
except HfHubHTTPError as e:
    print("anon", e.response.status_code)
"""
    out = _run(["-c", script], _env(hub, tmp_path / "home")).stdout.split("\n")
    assert "dup 409" in out and "missing 404" in out and "anon 401" in out


def test_incomplete_folder_is_not_pushed(two_stage_run, hub, tmp_path):
    folder = tmp_path / "half"
    shutil.copytree(two_stage_run["root"] / "teacher", folder)
    (folder / "model.safetensors").unlink()
    proc = _push(folder, "tester/half", _env(hub, tmp_path / "home"), check=False)
    assert proc.returncode == 2 and "missing model.safetensors" in proc.stderr and "Traceback" not in proc.stderr
    assert "tester/half" not in hub.state.repos


def test_quickstart_pushes_both_stages_and_links_the_teacher(hub, tmp_path):
    env = _env(hub, tmp_path / "home")
    env["DIVE_HF_CACHE"] = os.environ["DIVE_HF_CACHE"]
    _run([str(ROOT / "recipes" / "quickstart.py"), "--dataset", "embedded:tiny", "--max_steps", "2",
          "--per_device_train_batch_size", "16",
          "--many_shot_threshold", "20", "--few_shot_threshold", "8", "--output_dir", str(tmp_path / "demo"),
          "--push_to_hub", "--teacher_repo_id", "tester/qs-teacher", "--student_repo_id", "tester/qs-student"], env)
    teacher, student = hub.files("tester/qs-teacher"), hub.files("tester/qs-student")
    assert {"config.json", "model.safetensors", "README.md", "eval_results.json"} <= set(teacher) & set(student)
    config = json.loads(student["config.json"])
    assert config["dive"]["hub_model_id"] == "tester/qs-student"
    assert config["dive"]["teacher"]["repo_id"] == "tester/qs-teacher"
    assert "[tester/qs-teacher](https://huggingface.co/tester/qs-teacher)" in student["README.md"].decode()
    assert student["model.safetensors"] == (tmp_path / "demo" / "student" / "model.safetensors").read_bytes()
    for files in (teacher, student):
        assert all(TOKEN.encode() not in data for data in files.values())


# ---- what a push sends, and loading errors --------------------------------------------------------------------------
HUB_FILES = {"config.json", "model.safetensors", "README.md", "eval_results.json", "per_class_accuracy.png",
             "training_args.json", "run_log.json", "training_curves.png", "trainer_state.json",
             "virtual_examples.json", "virtual_examples.png"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


def make_stage_folder(folder: Path, num_classes: int = 3) -> Path:
    """A small, complete stage folder without training: ``resnet20_cifar`` weights in timm's layout, config with a
    ``dive`` block, every documented Hub file, and a card rendered from them."""
    import timm

    import dive_hf  # noqa: F401 — registers resnet20_cifar
    from dive_hf.card import write_folder_card
    from dive_hf.hub import save_checkpoint

    model = timm.create_model("resnet20_cifar", num_classes=num_classes)
    counts = [30 // (i + 1) for i in range(num_classes)]
    dive = {"stage": "teacher", "class_counts": counts, "imbalance_factor": counts[0] / counts[-1],
            "many_shot_threshold": 20, "few_shot_threshold": 8}
    save_checkpoint(model, folder, [f"class_{i}" for i in range(num_classes)], dive)
    metrics = {"eval_accuracy": 0.5, "eval_many_shot_accuracy": 0.6, "eval_medium_shot_accuracy": 0.5,
               "eval_few_shot_accuracy": 0.4}
    (folder / "eval_results.json").write_text(json.dumps({"metrics": metrics, "class_counts": counts}))
    (folder / "per_class_accuracy.png").write_bytes(PNG)
    (folder / "training_curves.png").write_bytes(PNG)
    (folder / "run_log.json").write_text(json.dumps({"status": "complete"}))
    (folder / "training_args.json").write_text(json.dumps({"learning_rate": 0.1}))
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 4}))
    (folder / "virtual_examples.json").write_text(json.dumps({"rows": []}))
    (folder / "virtual_examples.png").write_bytes(PNG)
    write_folder_card(folder)
    return folder


def test_push_sends_exactly_the_documented_files(hub, tmp_path):
    """Regression: any top-level .json/.md/.png/.safetensors used to be published (credentials, notes, a linked
    file's target). Now only the documented Hub files go, and the list with sizes is printed first."""
    folder = make_stage_folder(tmp_path / "stage")
    (folder / "credentials.json").write_text(json.dumps({"token": TOKEN}))
    (folder / "NOTES.md").write_text("private notes\n")
    (folder / "scratch.png").write_bytes(PNG)
    (folder / "optimizer.safetensors").write_bytes(b"not for the Hub")
    (folder / "checkpoint-2").mkdir()
    (folder / "checkpoint-2" / "config.json").write_text("{}")
    proc = _push(folder, "tester/exact", _env(hub, tmp_path / "home"))
    assert set(hub.files("tester/exact")) == HUB_FILES
    out = proc.stdout
    for name in HUB_FILES:
        size = (folder / name).stat().st_size
        assert any(line.split()[:1] == [name] and f"{size:,} B" in line for line in out.splitlines()), (name, out)
    assert "not pushed: NOTES.md, checkpoint-2/, credentials.json, optimizer.safetensors, scratch.png" in out
    assert out.index("model.safetensors") < out.index("pushed ")


def test_push_refuses_a_symlinked_file_and_publishes_nothing(hub, tmp_path):
    folder = make_stage_folder(tmp_path / "stage")
    outside = tmp_path / "elsewhere.json"
    outside.write_text(json.dumps({"secret": TOKEN}))
    (folder / "eval_results.json").unlink()
    (folder / "eval_results.json").symlink_to(outside)
    proc = _push(folder, "tester/linked", _env(hub, tmp_path / "home"), check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("dive-hf push: error: ") and "eval_results.json" in line and "symbolic link" in line
    assert str(outside) in line
    assert "tester/linked" not in hub.state.repos


def test_push_dry_run_lists_and_sends_nothing(tmp_path, capsys):
    from dive_hf.cli import run_cli

    folder = make_stage_folder(tmp_path / "stage")
    (folder / "NOTES.md").write_text("private\n")
    before = _digest(folder)
    assert run_cli(["push", str(folder), "--repo_id", "tester/dry", "--dry_run"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in HUB_FILES) and "not pushed: NOTES.md" in out
    assert "dry run: nothing was sent" in out
    assert _digest(folder) == before  # not even the card is re-rendered


def test_push_folder_lists_the_files(tmp_path):
    from dive_hf.hub import push_files

    folder = make_stage_folder(tmp_path / "stage")
    (folder / "NOTES.md").write_text("x")
    (folder / "trainer_state.json").unlink()
    assert [p.name for p in push_files(folder)] == sorted(HUB_FILES - {"trainer_state.json"})
    (folder / "README.md").unlink()
    (folder / "README.md").symlink_to(folder / "NOTES.md")  # even a link inside the folder: the card is a copy
    with pytest.raises(ValueError, match=r"README\.md is a symbolic link"):
        push_files(folder)


def test_loader_names_the_file_of_a_broken_folder(tmp_path):
    """Corrupt/truncated weights, a bad config.json and a pickle-only folder each raise an error naming the file
    (they used to surface as SafetensorError/JSONDecodeError/KeyError tracebacks from deep inside timm)."""
    from dive_hf.hub import load_stage_model

    good = make_stage_folder(tmp_path / "good")
    load_stage_model(str(good))

    def broken(name, edit):
        folder = tmp_path / name
        shutil.copytree(good, folder)
        edit(folder)
        return str(folder)

    weights = (good / "model.safetensors").read_bytes()
    cases = [
        ("truncated", lambda f: (f / "model.safetensors").write_bytes(weights[: len(weights) // 2]),
         ValueError, r"truncated/model\.safetensors.*corrupt or truncated"),
        ("garbage", lambda f: (f / "model.safetensors").write_bytes(b"hello"),
         ValueError, r"garbage/model\.safetensors.*corrupt or truncated"),
        ("badjson", lambda f: (f / "config.json").write_text("{not json"),
         ValueError, r"badjson/config\.json is not valid JSON"),
        ("noarch", lambda f: (f / "config.json").write_text(json.dumps({"num_classes": 3, "pretrained_cfg": {}})),
         ValueError, r"noarch/config\.json lacks 'architecture'"),
        ("nocfg", lambda f: (f / "config.json").write_text(json.dumps({"architecture": "resnet20_cifar",
                                                                       "num_classes": 3})),
         ValueError, r"nocfg/config\.json lacks 'pretrained_cfg'"),
        ("pickle", lambda f: ((f / "model.safetensors").rename(f / "pytorch_model.bin")),
         FileNotFoundError, r"pickle/model\.safetensors not found.*pytorch_model\.bin.*only safetensors"),
    ]
    for name, edit, error, match in cases:
        with pytest.raises(error, match=match):
            load_stage_model(broken(name, edit))
