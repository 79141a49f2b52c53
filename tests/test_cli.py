"""The `dive-hf` command: `dive-hf demo` / recipes/quickstart.py end to end, and one-line errors (dive_hf.errors) for
every subcommand's bad input."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_recipe_end_to_end(tmp_path, _isolated_caches):
    out = tmp_path / "demo"
    cmd = [sys.executable, str(ROOT / "recipes" / "quickstart.py"), "--dataset", "embedded:tiny",
           "--max_steps", "3", "--per_device_train_batch_size", "16", "--many_shot_threshold", "20", "--few_shot_threshold", "8",
           "--output_dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert any(line.startswith("shot groups by training count: many > 20") for line in lines)
    rows = {line.split()[0]: line.split()[-4:] for line in lines if line.startswith(("teacher (", "student ("))}
    assert set(rows) == {"teacher", "student"}
    summary = json.loads((out / "results.json").read_text())
    for stage in ("teacher", "student"):
        assert rows[stage][0] == f"{100 * summary[stage]['eval_accuracy']:.2f}"
        assert {"config.json", "model.safetensors", "README.md", "eval_results.json"} <= {
            p.name for p in (out / stage).iterdir()}


def test_cli_usage():
    from dive_hf.cli import main

    assert main(["--help"]) == 0
    assert main(["no-such-command"]) == 2


def test_quickstart_arguments_from_yaml_and_flags(tmp_path):
    from dive_hf.quickstart import quickstart_parser

    path = tmp_path / "qs.yaml"
    path.write_text("dataset: embedded:tiny\ntemperature: 6.0\npower: 1.0\narch: resnet32_cifar\n")
    recipe, data, training = quickstart_parser().parse(["--config", str(path)])
    assert (data.dataset, training["temperature"], training["power"], recipe.arch) == (
        "embedded:tiny", 6.0, 1.0, "resnet32_cifar")
    recipe, data, training = quickstart_parser().parse(["--alpha", "0.25", "--bf16"])
    assert training["alpha"] == 0.25 and training["bf16"] and data.dataset == "embedded:demo"
    assert training["num_train_epochs"] == 6 and training["lr_scheduler_type"] == "cosine"


def test_quickstart_under_torchrun_two_cpu_processes(tmp_path, _isolated_caches):
    """A real two-process DDP (gloo) run of both stages: one table, both folders written once, world size 2."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           str(ROOT / "recipes" / "quickstart.py"), "--dataset", "embedded:tiny", "--max_steps", "3",
           "--per_device_train_batch_size", "8",
           "--many_shot_threshold", "20", "--few_shot_threshold", "8", "--output_dir", str(out)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # two CPU processes (gloo) even on a one-GPU machine
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sum(line.startswith("teacher (BSCE)") for line in proc.stdout.splitlines()) == 1
    for stage in ("teacher", "student"):
        dive = json.loads((out / stage / "config.json").read_text())["dive"]
        assert dive["training"]["processes"] == 2 and dive["training"]["effective batch"] == 16
        run_log = json.loads((out / stage / "run_log.json").read_text())
        assert run_log["world_size"] == 2 and run_log["status"] == "complete"
    import timm

    import dive_hf  # noqa: F401
    timm.create_model(f"local-dir:{out / 'student'}", pretrained=True)


# ---- one-line errors: dive_hf.errors and every subcommand ---------------------------------------------------------
def test_errors_helpers(monkeypatch, capsys):
    import json as json_module

    from safetensors import SafetensorError

    from dive_hf.errors import PushError, exit_code, one_line, run_main, split_debug_flag

    assert one_line(ValueError("first line\n   second line\n\n")) == "first line second line"
    assert one_line(SafetensorError("header too small")) == "SafetensorError: header too small"
    assert one_line(FloatingPointError()) == "FloatingPointError"
    try:
        json_module.loads("{x")
    except json_module.JSONDecodeError as e:
        assert one_line(e).startswith("JSONDecodeError: Expecting property name")
    for error, code in ((ValueError(), 2), (FileNotFoundError(), 2), (FileExistsError(), 2), (OSError(), 1),
                        (PermissionError(), 1), (FloatingPointError(), 1), (PushError(), 1),
                        (SafetensorError(), 1), (json_module.JSONDecodeError("x", "", 0), 2)):
        assert exit_code(error) == code, error

    monkeypatch.delenv("DIVE_HF_DEBUG", raising=False)
    assert split_debug_flag(["a", "--debug", "--x", "1"]) == (["a", "--x", "1"], True)
    assert split_debug_flag(["a", "--debug"]) == (["a"], True)
    assert split_debug_flag(["--debug", "underflow_overflow"]) == (["--debug", "underflow_overflow"], False)
    monkeypatch.setenv("DIVE_HF_DEBUG", "1")
    assert split_debug_flag(["a"]) == (["a"], True)
    monkeypatch.delenv("DIVE_HF_DEBUG")

    def fails(error):
        def fn(argv):
            raise error
        return fn

    assert run_main(lambda argv: None, "prog", []) == 0
    assert run_main(lambda argv: len(argv), "prog", ["x", "y", "--debug"]) == 2  # --debug is not passed on
    assert run_main(fails(ValueError("bad value\nfor --x")), "dive-hf thing", []) == 2
    assert capsys.readouterr().err == "dive-hf thing: error: bad value for --x\n"
    assert run_main(fails(PushError("push failed")), "dive-hf push", ["--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1] == "dive-hf push: error: push failed"
    with pytest.raises(TypeError):  # a bug keeps its traceback
        run_main(fails(TypeError("bug")), "prog", [])


def _broken_model(tmp_path, kind):
    from test_hub import make_stage_folder

    folder = make_stage_folder(tmp_path / kind)
    if kind == "corrupt":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 3])
    elif kind == "pickle":
        (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    elif kind == "badconfig":
        (folder / "config.json").write_text('{"architecture": "resnet20_cifar",')
    return folder


def _sweep_inputs(tmp_path):
    from conftest import write_image

    from test_hub import make_stage_folder

    root = tmp_path / "images"
    for i in range(3):
        write_image(root / f"c{i}" / f"{i}.jpg", i)
    absurd = tmp_path / "absurd.txt"
    absurd.write_text("c0/0.jpg 0\nc1/1.jpg 1\nc2/2.jpg 1000000\n")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("c0/0.jpg 0\nc1/caf\u00e9.jpg 1\n".encode("latin-1"))
    good = tmp_path / "good.txt"
    good.write_text("c0/0.jpg 0\nc1/1.jpg 1\n")
    source = tmp_path / "release.yaml"
    source.write_text(Path(ROOT / "hub_cards" / "dive-resnet32-cifar100-lt-if100.yaml").read_text())
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("repo_id: [unclosed\n")
    bad_json = tmp_path / "eval_results.json"
    bad_json.write_text("{not json")
    partial = tmp_path / "partial_results.json"
    partial.write_text('{"metrics": {}}')
    readme = tmp_path / "README.md"
    readme.write_text("# My project\n")
    stage = make_stage_folder(tmp_path / "stage")
    return {"root": str(root), "absurd": str(absurd), "latin1": str(latin1), "good": str(good),
            "source": str(source), "bad_yaml": str(bad_yaml), "bad_json": str(bad_json), "partial": str(partial),
            "readme": str(readme), "stage": str(stage), "missing": str(tmp_path / "no_such_folder"),
            **{kind: str(_broken_model(tmp_path, kind)) for kind in ("corrupt", "pickle", "badconfig")}}


SWEEP = {
    # name: (argv with {placeholders}, exit code, what the one line must name)
    "push: repo id without a namespace": (["push", "{stage}", "--repo_id", "just-a-name"], 2,
                                          r"--repo_id 'just-a-name': expected 'user_or_org/name'"),
    "push: repo id checked before the folder": (["push", "{missing}", "--repo_id", "a/b/c"], 2, r"--repo_id 'a/b/c'"),
    "push: bad teacher repo id": (["push", "{stage}", "--repo_id", "me/x", "--teacher_repo_id", "me/bad..id"], 2,
                                  r"--teacher_repo_id 'me/bad\.\.id'"),
    "push: missing folder": (["push", "{missing}", "--repo_id", "me/x"], 2, r"stage folder .*no_such_folder not found"),
    "push: unknown flag": (["push", "{stage}", "--repo_id", "me/x", "--dry_run", "--bogus", "1"], 2,
                           r"unrecognized arguments: --bogus 1"),
    "push: abbreviated flag": (["push", "{stage}", "--repo_id", "me/x", "--dry", "--privat"], 2,  # not --private
                               r"unrecognized arguments: --dry --privat"),
    "push: bad boolean": (["push", "{stage}", "--repo_id", "me/x", "--private", "maybe"], 2,
                          r"argument --private: .*maybe"),
    "push: corrupt weights": (["push", "{corrupt}", "--repo_id", "me/x", "--dry_run"], 2,
                              r"corrupt/model\.safetensors is not a readable safetensors file"),
    "card: no --output for a release card": (["card", "{source}"], 2, r"--output is required .*release\.yaml"),
    "card: would clobber a README": (["card", "{source}", "--output", "{readme}"], 2,
                                     r"--output .*README\.md exists and is not a dive_hf model card.*--overwrite"),
    "card: invalid YAML": (["card", "{bad_yaml}", "--output", "{missing}.md"], 2,
                           r"card source .*bad\.yaml: not valid YAML"),
    "card: missing source": (["card", "{missing}.yaml", "--output", "{missing}.md"], 2,
                             r"card source .*no_such_folder\.yaml: no such file"),
    "card: invalid eval_results": (["card", "{source}", "--eval_results", "{bad_json}", "--output", "{missing}.md"],
                                   2, r"--eval_results .*eval_results\.json: not valid JSON"),
    "card: eval_results of another kind": (["card", "{source}", "--eval_results", "{partial}", "--output",
                                            "{missing}.md"], 2, r"partial_results\.json lacks 'many_shot_threshold'"),
    "evaluate: corrupt checkpoint": (["evaluate", "{corrupt}", "--dataset", "embedded:tiny"], 2,
                                     r"corrupt/model\.safetensors is not a readable safetensors file"),
    "evaluate: pickle-only folder": (["evaluate", "{pickle}", "--dataset", "embedded:tiny"], 2,
                                     r"pickle/model\.safetensors not found: .*pytorch_model\.bin.*only safetensors"),
    "evaluate: config.json not JSON": (["evaluate", "{badconfig}", "--dataset", "embedded:tiny"], 2,
                                       r"badconfig/config\.json is not valid JSON"),
    "evaluate: no model folder": (["evaluate", "{missing}", "--dataset", "embedded:tiny"], 2,
                                  r"no_such_folder' not found"),
    "virtual-examples: corrupt teacher": (["virtual-examples", "{corrupt}", "--dataset", "embedded:tiny"], 2,
                                          r"corrupt/model\.safetensors"),
    "data: absurd label": (["data", "--train_list", "{absurd}", "--image_root", "{root}"], 2,
                           r"absurd\.txt:3: label 1000000 would make 1,000,001 classes"),
    "data: not UTF-8": (["data", "--train_list", "{latin1}", "--image_root", "{root}"], 2,
                        r"latin1\.txt:2: not UTF-8 text \(byte 0xe9"),
    "data: no eval split": (["data", "--train_list", "{good}", "--image_root", "{root}", "--which", "eval"], 2,
                            r"--which eval: this data source has no eval split"),
    "data: two sources": (["data", "--train_list", "{good}", "--dataset", "embedded:tiny", "--image_root", "{root}"],
                          2, r"give exactly one data source"),
    "data: missing list": (["data", "--train_list", "{missing}.txt", "--image_root", "{root}"], 2,
                           r"split file .*no_such_folder\.txt not found"),
}


@pytest.fixture(scope="module")
def sweep_inputs(tmp_path_factory):
    return _sweep_inputs(tmp_path_factory.mktemp("sweep"))


@pytest.mark.parametrize("case", list(SWEEP))
def test_bad_input_sweep_one_line(case, sweep_inputs, capsys):
    """Each bad input of each subcommand: the exit code, one line `dive-hf CMD: error: …` naming the culprit on
    stderr, no traceback, and nothing written over the user's files."""
    from dive_hf.cli import run_cli

    argv, code, match = SWEEP[case]
    readme_before = Path(sweep_inputs["readme"]).read_text()
    assert run_cli([a.format(**sweep_inputs) for a in argv]) == code
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if "Saving the dataset" not in line]  # datasets' progress
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"dive-hf {argv[0]}: error: "), lines[0]
    assert re.search(match, lines[0]), lines[0]
    assert Path(sweep_inputs["readme"]).read_text() == readme_before
    assert not Path(sweep_inputs["missing"] + ".md").exists()


def test_real_dive_hf_processes_print_one_line(tmp_path):
    """The installed `dive-hf` command: one line and exit code 2 for a corrupt checkpoint (it used to end in a
    SafetensorError traceback) and for a card without --output (which used to write README.md over the project's
    own)."""
    corrupt = _broken_model(tmp_path, "corrupt")
    (tmp_path / "README.md").write_text("# My project\n")
    script = Path(sys.executable).with_name("dive-hf")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("DIVE_HF_DEBUG", None)
    runs = {
        "evaluate": [str(script), "evaluate", str(corrupt), "--dataset", "embedded:tiny"],
        "card": [str(script), "card", str(ROOT / "hub_cards" / "dive-resnet32-cifar100-lt-if100.yaml")],
    }
    for command, args in runs.items():
        proc = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        line = proc.stderr.strip().splitlines()[-1]
        assert line.startswith(f"dive-hf {command}: error: ")
        assert ("model.safetensors" in line) if command == "evaluate" else ("--output" in line)
    assert (tmp_path / "README.md").read_text() == "# My project\n"


def test_debug_flag_shows_the_traceback(tmp_path, capsys, monkeypatch):
    from dive_hf.cli import run_cli

    corrupt = str(_broken_model(tmp_path, "corrupt"))
    monkeypatch.delenv("DIVE_HF_DEBUG", raising=False)
    for argv in (["--debug", "evaluate", corrupt, "--dataset", "embedded:tiny"],
                 ["evaluate", corrupt, "--dataset", "embedded:tiny", "--debug"]):
        assert run_cli(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" in err and err.strip().splitlines()[-1].startswith("dive-hf evaluate: error: ")
        assert "DIVE_HF_DEBUG" not in os.environ  # --debug is for that command only, not for the whole process
    monkeypatch.setenv("DIVE_HF_DEBUG", "1")
    assert run_cli(["evaluate", corrupt, "--dataset", "embedded:tiny"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_card_output_never_clobbers_an_unrelated_file(tmp_path, monkeypatch, capsys):
    from dive_hf.cli import is_dive_card, run_cli

    source = str(ROOT / "hub_cards" / "dive-resnet32-cifar100-lt-if100.yaml")
    monkeypatch.chdir(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("---\ntags: [mine]\n---\n# My project\n")
    assert run_cli(["card", source]) == 2 and readme.read_text().endswith("# My project\n")
    assert run_cli(["card", source, "--output", "README.md"]) == 2 and not is_dive_card(readme)
    assert run_cli(["card", source, "--output", "README.md", "--overwrite"]) == 0 and is_dive_card(readme)
    assert run_cli(["card", source, "--output", "README.md"]) == 0  # a dive_hf card may be re-rendered
    (tmp_path / "release").mkdir()
    assert run_cli(["card", source, "--output", "release"]) == 0
    assert is_dive_card(tmp_path / "release" / "README.md")
    capsys.readouterr()


def test_card_of_a_stage_folder_is_written_into_it(tmp_path, capsys):
    from test_hub import make_stage_folder

    from dive_hf.cli import run_cli

    folder = make_stage_folder(tmp_path / "stage")
    assert run_cli(["card", str(folder), "--repo_id", "me/dive-x"]) == 0
    assert 'timm.create_model("hf-hub:me/dive-x", pretrained=True)' in (folder / "README.md").read_text()
    assert run_cli(["card", str(folder), "--output", str(tmp_path / "elsewhere.md")]) == 2
    assert "a stage folder's card is written into the folder" in capsys.readouterr().err
    (folder / "README.md").write_text("my own notes\n")
    assert run_cli(["card", str(folder)]) == 2
    assert (folder / "README.md").read_text() == "my own notes\n"


def test_data_groups_an_eval_split_by_its_training_counts(tmp_path, capsys):
    from conftest import write_imagenet_lt

    from dive_hf.cli import main

    folder, root = write_imagenet_lt(tmp_path / "data", [30, 12, 3], test_per_class=4)
    lists = ["--train_list", str(folder / "ImageNet_LT_train.txt"), "--eval_list",
             str(folder / "ImageNet_LT_test.txt"), "--image_root", str(root), "--many_shot_threshold", "20",
             "--few_shot_threshold", "5"]
    assert main(["data", *lists, "--which", "eval"]) == 0
    out = capsys.readouterr().out
    # 4 test images per class: by their own counts all would be "few"; by training counts 1 many, 1 medium, 1 few
    assert "split: ImageNet-LT" in out
    assert "shot groups (by training counts): many > 20: 1 classes (4 images) · medium: 1 (4) · few < 5: 1 (4)" in out
    assert main(["data", "--eval_list", str(folder / "ImageNet_LT_test.txt"), "--image_root", str(root),
                 "--which", "eval"]) == 0
    assert "shot groups (by this split's counts)" in capsys.readouterr().out


# ---- fast help: lazy imports --------------------------------------------------------------------------------------
HEAVY = ("torch", "timm", "transformers.training_args")


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.mark.parametrize("argv", [["--help"], [], ["push", "--help"], ["card", "--help"], ["data", "--help"],
                                  ["evaluate", "--help"], ["virtual-examples", "--help"]])
def test_help_imports_no_torch(argv):
    """`dive-hf --help`, `dive-hf` and the light subcommands' --help import neither torch nor timm (seconds each)."""
    proc = _run_python(
        "import sys\nfrom dive_hf.cli import main\ntry:\n    rc = main(%r)\nexcept SystemExit as e:\n    rc = e.code\n"
        "print('LOADED', [m for m in %r if m in sys.modules], rc)" % (argv, HEAVY))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "LOADED [] 0"
    assert "usage:" in proc.stdout


def test_import_dive_hf_is_lazy_and_still_registers_the_cifar_resnets():
    """`import dive_hf` loads no torch; importing timm afterwards (directly, or through transformers'
    TimmWrapper) registers the CIFAR ResNets, and the public names load on first use."""
    proc = _run_python(
        "import sys, dive_hf\n"
        "print('LOADED', [m for m in %r if m in sys.modules])\n"
        "import importlib.util; importlib.util.find_spec('timm')  # only looked at: must not use up the hook\n"
        "import timm\n"
        "print('REGISTERED', timm.is_model('resnet32_cifar'), timm.is_model('resnet20_cifar'))\n"
        "from dive_hf import DiVETrainer, DiVEConfig, virtual_targets\n"
        "import dive_hf.data as data\n"
        "print('NAMES', sorted(set(dive_hf.__all__) - set(dir(dive_hf))), DiVETrainer.__name__, "
        "data.make_long_tailed.__name__, dive_hf.trainer.__name__)" % (HEAVY,))
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert "LOADED []" in lines and "REGISTERED True True" in lines
    assert "NAMES [] DiVETrainer make_long_tailed dive_hf.trainer" in lines
    proc = _run_python("import timm, dive_hf\nprint(timm.is_model('resnet56_cifar'))")  # timm first: at once
    assert proc.stdout.split() == ["True"], proc.stderr[-2000:]


def test_evaluate_and_virtual_examples_default_under_outputs(two_stage_run, tmp_path, monkeypatch, capsys):
    """Without --output_dir, reports go under the ignored outputs/ folder, one subfolder per model."""
    from dive_hf.cli import main

    monkeypatch.chdir(tmp_path)
    root = two_stage_run["root"]
    assert main(["evaluate", str(root / "student"), "--dataset", "embedded:tiny", "--device", "cpu"]) == 0
    assert main(["virtual-examples", str(root / "teacher"), "--dataset", "embedded:tiny", "--device", "cpu",
                 "--temperatures", "3", "--powers", "0.5"]) == 0
    assert "wrote outputs/eval/student/eval_results.json" in capsys.readouterr().out
    assert (tmp_path / "outputs/eval/student/eval_results.json").is_file()
    assert (tmp_path / "outputs/virtual_examples/teacher/virtual_examples.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]
    assert "outputs/" in (ROOT / ".gitignore").read_text().split()
