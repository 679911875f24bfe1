"""`kubetune run` reads manifests as `kubectl apply` would and refuses bad ones before anything runs.

Each error must name the file, the document (index, kind/name), the camelCase field path and a fix.
"""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path

import pytest

from kubetune.api.errors import format_loc
from kubetune.local.manifests import ManifestError, load_manifests
from kubetune.status import referenced_datasets

DATASET = """\
apiVersion: kubetune.io/v1alpha1
kind: Dataset
metadata: {name: qa}
spec:
  source: {pvc: {claimName: data, path: qa.jsonl}}
  format: messages
"""

JOB = """\
apiVersion: kubetune.io/v1alpha1
kind: TuningJob
metadata: {name: demo}
spec:
  baseModel: {scratch: {}}
  datasets: {train: [{dataset: qa}], validationSplit: 0.1}
  hyperparameters: {learningRate: 1e-4, epochs: 2}
  output: {pvc: {claimName: models, path: demo}}
"""


def write(tmp_path: Path, *documents: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text("---\n".join(textwrap.dedent(d) for d in documents))
    return path


def problems_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_manifests([path], environ={} if environ is None else environ)
    return caught.value.problems


def test_valid_manifests_load_with_numeric_strings_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, DATASET, JOB, "apiVersion: v1\nkind: Namespace\nmetadata: {name: ml}\n")
    manifests = load_manifests([path], environ={})
    [job] = manifests.tuning_jobs
    # PyYAML reads 1e-4 as a string; kubectl would send it as a number: both must work.
    assert job.obj.spec.hyperparameters.learning_rate == pytest.approx(1e-4)
    assert job.ref.index == 2 and job.ref.kind == "TuningJob" and job.ref.name == "demo"
    namespace = job.obj.metadata.namespace
    assert [n for n in referenced_datasets(job.obj.spec) if (namespace, n) in manifests.datasets] == ["qa"]
    assert manifests.notes and "document 3 (Namespace/ml): skipped" in manifests.notes[0]


def test_unknown_field_is_named_with_a_suggestion(tmp_path: Path) -> None:
    bad = JOB.replace("epochs: 2", "epochs: 2, learningRat: 3")
    [problem] = problems_of(write(tmp_path, DATASET, bad))
    assert problem.startswith(f"{tmp_path / 'm.yaml'} document 2 (TuningJob/demo): spec.hyperparameters.learningRat:")
    assert "unknown field" in problem and "did you mean 'learningRate'" in problem


def test_wrong_type_and_a_word_for_the_learning_rate_are_refused(tmp_path: Path) -> None:
    bad = JOB.replace("learningRate: 1e-4", "learningRate: fast").replace("epochs: 2", "perDeviceBatchSize: [8]")
    problems = problems_of(write(tmp_path, DATASET, bad))
    assert len(problems) == 2
    rate = next(p for p in problems if "learningRate" in p)
    assert "document 2 (TuningJob/demo): spec.hyperparameters.learningRate: expected a number, got 'fast'" in rate
    assert "2e-4" in rate  # the fix shows how to write one
    batch = next(p for p in problems if "perDeviceBatchSize" in p)
    assert "expected a whole number" in batch


def test_missing_dataset_reference_is_named(tmp_path: Path) -> None:
    bad = JOB.replace("{dataset: qa}", "{dataset: qaa}")
    [problem] = problems_of(write(tmp_path, DATASET, bad))
    assert "document 2 (TuningJob/demo): spec.datasets.train[0].dataset: no Dataset 'qaa'" in problem
    assert "did you mean 'qa'" in problem and "add its manifest with -f" in problem


def test_two_sources_are_refused(tmp_path: Path) -> None:
    bad = DATASET.replace("source: {pvc: {claimName: data, path: qa.jsonl}}",
                          "source: {pvc: {claimName: data, path: qa.jsonl}, hf: {repo: org/qa}}")
    [problem] = problems_of(write(tmp_path, bad, JOB))
    assert "document 1 (Dataset/qa): spec.source: set exactly one of hf, url, configMap, pvc (found: hf, pvc)" \
        in problem


def test_enum_missing_field_and_api_version(tmp_path: Path) -> None:
    bad_method = JOB.replace("baseModel: {scratch: {}}", "baseModel: {scratch: {}}\n  method: {type: Lora}")
    no_output = JOB.replace("  output: {pvc: {claimName: models, path: demo}}\n", "")
    wrong_version = DATASET.replace("kubetune.io/v1alpha1", "kubetune.io/v1").replace("name: qa", "name: other")
    problems = problems_of(write(tmp_path, DATASET, bad_method, no_output.replace("name: demo", "name: two"),
                                 wrong_version))
    text = "\n".join(problems)
    assert "document 2 (TuningJob/demo): spec.method.type: got 'Lora': use one of 'LoRA', 'QLoRA' or 'Full'" in text
    assert "document 3 (TuningJob/two): spec.output: required field is missing: add it" in text
    assert "document 4 (Dataset/other): apiVersion: expected kubetune.io/v1alpha1" in text


def test_every_file_is_checked_and_yaml_errors_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [unclosed\n")
    problems = problems_of(broken)
    assert problems[0].startswith(f"{broken}: not valid YAML")
    with pytest.raises(ManifestError) as caught:
        load_manifests([tmp_path / "absent.yaml"], environ={})
    assert "cannot read the file" in caught.value.problems[0]


def test_secret_from_string_data_or_base64_data_or_environment(tmp_path: Path) -> None:
    job = JOB.replace("  output:", "  hfTokenSecretRef: {name: hf, key: token}\n  output:")
    secret_plain = "apiVersion: v1\nkind: Secret\nmetadata: {name: hf}\nstringData: {token: hf_plain_value}\n"
    encoded = base64.b64encode(b"hf_encoded_value").decode()
    secret_b64 = f"apiVersion: v1\nkind: Secret\nmetadata: {{name: hf}}\ndata: {{token: {encoded}}}\n"

    plain = load_manifests([write(tmp_path, DATASET, job, secret_plain)], environ={})
    assert plain.secrets[("default", "hf")] == {"token": "hf_plain_value"}
    b64 = load_manifests([write(tmp_path, DATASET, job, secret_b64)], environ={})
    assert b64.secrets[("default", "hf")] == {"token": "hf_encoded_value"}

    # No Secret in the files: HF_TOKEN from the environment will do, nothing at all will not.
    load_manifests([write(tmp_path, DATASET, job)], environ={"HF_TOKEN": "hf_from_env"})
    [problem] = problems_of(write(tmp_path, DATASET, job))
    assert "spec.hfTokenSecretRef: no Secret 'hf'" in problem and "export HF_TOKEN" in problem


def test_bad_base64_never_echoes_the_secret(tmp_path: Path) -> None:
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: hf}\ndata: {token: 'hf_not*base64*at*all'}\n"
    [problem] = problems_of(write(tmp_path, DATASET, JOB, secret))
    assert "data.token: not valid base64" in problem and "hf_not" not in problem


def test_config_map_sources_need_the_config_map_and_key(tmp_path: Path) -> None:
    inline = DATASET.replace("source: {pvc: {claimName: data, path: qa.jsonl}}",
                             "source: {configMap: {name: qa-data, key: rows.jsonl}}")
    config_map = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: qa-data}\ndata: {rows.jsonl: '{}'}\n"
    manifests = load_manifests([write(tmp_path, inline, JOB, config_map)], environ={})
    assert manifests.config_maps[("default", "qa-data")] == {"rows.jsonl": "{}"}

    [problem] = problems_of(write(tmp_path, inline, JOB))
    assert "document 1 (Dataset/qa): spec.source.configMap.name: no ConfigMap 'qa-data'" in problem
    wrong_key = config_map.replace("rows.jsonl", "data.jsonl")
    [problem] = problems_of(write(tmp_path, inline, JOB, wrong_key))
    assert "spec.source.configMap.key: ConfigMap 'qa-data' has no key 'rows.jsonl' (keys: data.jsonl)" in problem


def test_nothing_to_run_and_duplicates(tmp_path: Path) -> None:
    [problem] = problems_of(write(tmp_path, "apiVersion: v1\nkind: Namespace\nmetadata: {name: ml}\n"))
    assert "no TuningJob or Dataset found" in problem
    problems = problems_of(write(tmp_path, DATASET, DATASET, JOB))
    assert "a Dataset 'qa' appears twice" in problems[0]


def test_format_loc() -> None:
    assert format_loc(("spec", "datasets", "train", 0, "source")) == "spec.datasets.train[0].source"


def test_the_containers_env_becomes_the_process_env(tmp_path: Path) -> None:
    from kubetune.builders import build_training_job, resolve_trainer_config
    from kubetune.local.workspace import container_of, process_args, process_env
    from kubetune.settings import Settings

    job = JOB.replace("  output:", "  hfTokenSecretRef: {name: hf, key: token}\n  output:")
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: hf}\nstringData: {token: hf_from_the_secret_file}\n"
    manifests = load_manifests([write(tmp_path, DATASET, job, secret)], environ={})
    tj = manifests.tuning_jobs[0].obj
    datasets = {n: manifests.datasets[(tj.metadata.namespace, n)].obj for n in referenced_datasets(tj.spec)}
    config = resolve_trainer_config(tj, datasets)
    container = container_of(build_training_job(tj, config, Settings(), {"kind": "TuningJob", "name": "demo",
                                                                         "uid": "local"}))
    env = process_env(container, "default", manifests, {"PATH": "/bin", "HF_TOKEN": "hf_from_the_environment"})
    assert env["HF_TOKEN"] == "hf_from_the_secret_file"  # the Secret in the files wins, as in the cluster
    assert env["PATH"] == "/bin" and env["PYTHONUNBUFFERED"] == "1"
    assert "HF_HOME" not in env  # a container path; the user's own cache is used
    assert process_args(container, tmp_path / "config.json") == ["train", "--config", str(tmp_path / "config.json")]

    no_secret = load_manifests([write(tmp_path, DATASET, job)], environ={"HF_TOKEN": "hf_from_the_environment"})
    env = process_env(container, "default", no_secret, {"HF_TOKEN": "hf_from_the_environment"})
    assert env["HF_TOKEN"] == "hf_from_the_environment"


def test_config_map_sources_are_written_to_a_folder_and_mounted(tmp_path: Path) -> None:
    from kubetune.builders import plan_work_volume, resolve_trainer_config
    from kubetune.local.workspace import Workspace, localize_trainer_config
    from kubetune.settings import Settings

    inline_job = JOB.replace("{dataset: qa}", "{source: {configMap: {name: qa-data, key: rows.jsonl}}}")
    config_map = ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: qa-data}\n"
                  "data: {rows.jsonl: '{\"text\": \"hi\"}'}\n")
    manifests = load_manifests([write(tmp_path, inline_job, config_map)], environ={})
    tj = manifests.tuning_jobs[0].obj
    workspace = Workspace(tmp_path / "out", {"models": tmp_path / "models"})
    config = localize_trainer_config(resolve_trainer_config(tj, {}), workspace, manifests,
                                     plan_work_volume(tj, Settings()))
    folder = Path(config.mounts.config_maps["qa-data"])
    assert (folder / "rows.jsonl").read_text() == '{"text": "hi"}'
    assert config.mounts.pvcs == {"models": str(tmp_path / "models")}
    assert config.work_dir == str(tmp_path / "models" / "demo")  # the output volume, as in the cluster
    assert config.work_location is None  # local paths in messages, not pvc:CLAIM/PATH
    assert config.result_path == str(tmp_path / "out" / "default" / "demo" / "result.json")


# What a cluster refuses is refused locally too (issue 16): a quoted number, a key given twice, a
# kind nobody serves. A TuningJob with one of these used to run, or to exit 0 having trained nothing.


@pytest.mark.parametrize(("written", "expected"), [
    ('learningRate: "2e-3"', "spec.hyperparameters.learningRate: expected a number, got the string '2e-3': "
                             "remove the quotes"),
    ("perDeviceBatchSize: '8'", "spec.hyperparameters.perDeviceBatchSize: expected a whole number, got the string "
                                "'8': remove the quotes"),
    ('packing: "true"', "spec.hyperparameters.packing: expected true or false, got the string 'true': "
                        "remove the quotes"),
])
def test_quoted_numbers_and_booleans_are_refused_as_the_crd_schema_refuses_them(tmp_path: Path, written: str,
                                                                                 expected: str) -> None:
    bad = JOB.replace("learningRate: 1e-4, epochs: 2", f"epochs: 2, {written}")
    [problem] = problems_of(write(tmp_path, DATASET, bad))
    assert problem.startswith(f"{tmp_path / 'm.yaml'} document 2 (TuningJob/demo): {expected}")


def test_a_number_where_the_schema_wants_a_string_is_refused(tmp_path: Path) -> None:
    bad = JOB.replace("baseModel: {scratch: {}}", "baseModel: {repo: org/model, revision: 2024}")
    [problem] = problems_of(write(tmp_path, DATASET, bad))
    assert "spec.baseModel.revision: expected a string, got 2024: quote it ('2024')" in problem


def test_numbers_as_kubectl_sends_them_are_accepted(tmp_path: Path) -> None:
    # 2e-3 unquoted is a number to kubectl; 10.0 reaches the API server as the integer 10.
    job = JOB.replace("learningRate: 1e-4, epochs: 2", "learningRate: 2e-3, epochs: 2, maxSteps: 10.0")
    [loaded] = load_manifests([write(tmp_path, DATASET, job)], environ={}).tuning_jobs
    assert loaded.obj.spec.hyperparameters.learning_rate == pytest.approx(2e-3)
    assert loaded.obj.spec.hyperparameters.max_steps == 10


def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path: Path) -> None:
    twice = JOB.replace("  hyperparameters: {learningRate: 1e-4, epochs: 2}\n",
                        "  hyperparameters:\n    learningRate: 1e-4\n    epochs: 2\n    learningRate: 3e-4\n")
    path = write(tmp_path, DATASET, twice)
    [problem] = problems_of(path)
    line_of_second = path.read_text().splitlines().index("    learningRate: 3e-4") + 1
    assert problem == (f"{path}: not valid YAML: line {line_of_second}, column 5: duplicate key 'learningRate' "
                       f"(first on line {line_of_second - 2}): keep one of them (a cluster refuses the document)")


def test_a_misspelt_kind_is_refused_with_the_closest_kind(tmp_path: Path) -> None:
    typo = JOB.replace("kind: TuningJob", "kind: TunningJob")
    [problem] = problems_of(write(tmp_path, DATASET, typo))
    assert problem == (f"{tmp_path / 'm.yaml'} document 2 (TunningJob/demo): kind: no kind 'TunningJob' in "
                       "kubetune.io (did you mean 'TuningJob'?): kubetune run takes TuningJob and Dataset "
                       "(and Secret and ConfigMap, which it reads)")
    # Outside our group too: a near miss of a kind we take is a typo, not someone else's kind.
    [problem] = problems_of(write(tmp_path, DATASET, JOB, "apiVersion: v1\nkind: Secrets\nmetadata: {name: hf}\n"))
    assert "document 3 (Secrets/hf): kind: no kind 'Secrets' (did you mean 'Secret'?)" in problem


def test_unknown_kubetune_kinds_and_missing_kinds_are_refused(tmp_path: Path) -> None:
    trainer_config = "apiVersion: kubetune.io/v1alpha1\nkind: TrainerConfig\nname: demo\n"
    problems = problems_of(write(tmp_path, DATASET, JOB, trainer_config,
                                 "apiVersion: kubetune.io/v1alpha1\nkind: Model\nmetadata: {name: m}\n",
                                 "apiVersion: v1\nmetadata: {name: nameless}\n"))
    assert len(problems) == 3
    assert "document 3 (TrainerConfig/?): kind: TrainerConfig is the trainer's input, not a resource" in problems[0]
    assert "kubetune-trainer train --config FILE" in problems[0]
    assert "document 4 (Model/m): kind: no kind 'Model' in kubetune.io: kubetune run takes TuningJob" in problems[1]
    assert "document 5 (?/nameless): kind: missing: every document needs one" in problems[2]


def test_other_kinds_are_skipped_with_a_note_naming_what_run_takes(tmp_path: Path) -> None:
    pvc = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\n"
    manifests = load_manifests([write(tmp_path, DATASET, JOB, pvc)], environ={})
    assert manifests.notes == [f"{tmp_path / 'm.yaml'} document 3 (PersistentVolumeClaim/data): skipped: kubetune "
                               "run takes TuningJob and Dataset (and Secret and ConfigMap, which it reads), "
                               "not PersistentVolumeClaim"]


def test_secret_and_config_map_values_must_be_strings(tmp_path: Path) -> None:
    job = JOB.replace("  output:", "  hfTokenSecretRef: {name: hf, key: token}\n  output:")
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: hf}\nstringData: {token: 123456789}\n"
    config_map = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {retries: 3}\n"
    problems = problems_of(write(tmp_path, DATASET, job, secret, config_map))
    assert "document 3 (Secret/hf): stringData.token: expected a string, got a number: quote it" in problems[0]
    assert "123456789" not in "\n".join(problems)  # a Secret's value is never echoed
    assert "document 4 (ConfigMap/settings): data.retries: expected a string, got a number 3: quote it" \
        in problems[1]
