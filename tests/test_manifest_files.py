"""`kubetune run -f` takes what `kubectl apply -f` takes: a file, a folder (with -R its sub-folders), `-`
for stdin; and a file in the wrong encoding, or not text at all, is one line naming it and the fix."""

from __future__ import annotations

import codecs
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubetune.local.manifest_files import STDIN_NAME, read_manifest_texts
from kubetune.local.manifests import ManifestError, load_manifests

CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{note: 'café {name}'}}\n"
DATASET = ("apiVersion: kubetune.io/v1alpha1\nkind: Dataset\nmetadata: {{name: {name}}}\n"
           "spec: {{source: {{configMap: {{name: rows, key: rows.jsonl}}}}, format: text}}\n")
ROWS = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: rows}\ndata: {rows.jsonl: '{\"text\": \"hi\"}'}\n"


def problems_of(*names: str | Path, recursive: bool = False, stdin: bytes | None = None) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_manifests(names, environ={}, recursive=recursive,
                       stdin=io.BytesIO(stdin) if stdin is not None else None)
    return caught.value.problems


@pytest.mark.parametrize(("encoding", "bom"), [("utf-8", codecs.BOM_UTF8), ("utf-16-le", codecs.BOM_UTF16_LE),
                                               ("utf-16-be", codecs.BOM_UTF16_BE)])
def test_a_byte_order_mark_selects_the_encoding_as_kubectl_does(tmp_path: Path, encoding: str, bom: bytes) -> None:
    path = tmp_path / "windows.yaml"
    path.write_bytes(bom + (DATASET.format(name="qa") + "---\n" + ROWS).encode(encoding))
    manifests = load_manifests([path], environ={})
    assert list(manifests.datasets) == [("default", "qa")]


def test_utf16_without_a_byte_order_mark_is_named(tmp_path: Path) -> None:
    path = tmp_path / "utf16.yaml"
    path.write_bytes(DATASET.format(name="qa").encode("utf-16-le"))
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}: looks like UTF-16 without a byte-order mark: save it as UTF-8")


def test_latin1_is_refused_naming_the_line_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    text = DATASET.format(name="qa") + "---\n" + CONFIG_MAP.format(name="notes")
    path.write_bytes(text.encode("latin-1"))
    [problem] = problems_of(path)
    line = next(n for n, content in enumerate(text.splitlines(), start=1) if "é" in content)
    column = text.splitlines()[line - 1].index("é") + 1
    assert problem.startswith(f"{path}: not UTF-8: byte 0xe9 on line {line}, column {column}")
    assert "save the file as UTF-8" in problem and "iconv -f LATIN1 -t UTF-8" in problem


def test_a_binary_file_is_refused_without_reading_all_of_it(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}" + os.urandom(1 << 20))
    [problem] = problems_of(path)
    assert problem == (f"{path}: a binary file, not YAML or JSON (a NUL byte at offset 1): "
                       "pass the manifest file instead")


def test_a_folder_is_read_in_name_order_and_only_its_manifest_files(tmp_path: Path) -> None:
    folder = tmp_path / "manifests"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.yml").write_text(DATASET.format(name="second"))
    (folder / "a.yaml").write_text(DATASET.format(name="first"))
    (folder / "c.json").write_text('{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rows"}, '
                                   '"data": {"rows.jsonl": "{}"}}')
    (folder / "README.md").write_text("# not a manifest: kubectl skips it too\n")
    (folder / "sub" / "nested.yaml").write_text(DATASET.format(name="nested"))

    texts, problems = read_manifest_texts([folder])
    assert problems == []
    assert [t.name for t in texts] == [str(folder / "a.yaml"), str(folder / "b.yml"), str(folder / "c.json")]
    manifests = load_manifests([folder], environ={})
    assert [name for _, name in manifests.datasets] == ["first", "second"]

    recursive = load_manifests([folder], environ={}, recursive=True)
    assert [name for _, name in recursive.datasets] == ["first", "second", "nested"]


def test_a_folder_without_manifests_says_so_and_mentions_recursion(tmp_path: Path) -> None:
    (tmp_path / "deeper").mkdir()
    (tmp_path / "deeper" / "job.yaml").write_text(DATASET.format(name="qa"))
    [problem] = problems_of(tmp_path)
    assert problem == (f"{tmp_path}: no .yaml, .yml, .json files in the folder (sub-folders are read with -R): "
                       "pass a folder holding manifests, or the files themselves")


def test_stdin_is_read_once(tmp_path: Path) -> None:
    text = (DATASET.format(name="piped") + "---\n" + ROWS).encode()
    manifests = load_manifests(["-"], environ={}, stdin=io.BytesIO(text))
    [loaded] = manifests.datasets.values()
    assert loaded.ref.file == STDIN_NAME and loaded.obj.metadata.name == "piped"

    problems = problems_of("-", "-", stdin=text)
    assert problems == ["-f -: standard input can be read only once: give -f - once"]


def test_run_reads_stdin_and_folders_from_the_command_line(tmp_path: Path) -> None:
    """Through the real CLI: `cat job.yaml | kubetune run -f - --dry-run`, and `-f DIR`."""
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "dataset.yaml").write_text(DATASET.format(name="qa").replace("format: text", "format: auto"))
    (folder / "rows.yaml").write_text(ROWS)
    job = ("apiVersion: kubetune.io/v1alpha1\nkind: TuningJob\nmetadata: {name: piped}\nspec:\n"
           "  baseModel: {scratch: {}}\n  datasets: {train: [{source: {configMap: {name: rows, key: rows.jsonl}}}]}\n"
           "  output: {pvc: {claimName: models, path: piped}}\n---\n" + ROWS)
    run = subprocess.run([sys.executable, "-m", "kubetune", "run", "-f", "-", "--workdir", "out", "--dry-run",
                          "--plain"], input=job, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr + run.stdout
    assert f"TuningJob default/piped ({STDIN_NAME})" in run.stdout and "kind: TrainerConfig" in run.stdout

    bad_kind = folder / "zz-typo.yaml"
    bad_kind.write_text("apiVersion: kubetune.io/v1alpha1\nkind: Datset\nmetadata: {name: x}\n")
    run = subprocess.run([sys.executable, "-m", "kubetune", "run", "-f", str(folder), "--workdir", "out"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"{bad_kind} document 1 (Datset/x): kind: no kind 'Datset' in kubetune.io (did you mean 'Dataset'?)" \
        in run.stderr
