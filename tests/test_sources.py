"""Every source kind, read through open_source: files and folders on mounts, the Hub, https URLs."""

from __future__ import annotations

import csv
import gzip
import hashlib
import http.server
import io
import ipaddress
import json
import os
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kubetune.api.contract import FailureReason, Mounts
from kubetune.api.dataset import DataSource
from kubetune_trainer.data.formats import RowDefect
from kubetune_trainer.data.sources import OpenedSource, SourceError, open_source
from kubetune_trainer.data.urlsafety import UrlRefused, address_problem, check_url, fetch_url
from support.hubserver import HubServer, hub_server_fixture  # noqa: F401

ROWS = [
    {"instruction": "Say hi", "input": "", "output": "Hi"},
    {"instruction": "Add", "input": "2, 3", "output": "5"},
    {"instruction": "Кириллица", "input": "", "output": "да"},
]


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def csv_bytes(rows: list[dict[str, Any]], delimiter: str = ",") -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), delimiter=delimiter)
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode()


def parquet_bytes(rows: list[dict[str, Any]], tmp: Path) -> bytes:
    path = tmp / "scratch.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=2)
    return path.read_bytes()


FILE_KINDS: dict[str, Callable[[Path], bytes]] = {
    "rows.jsonl": lambda _: jsonl(ROWS),
    "rows.ndjson": lambda _: jsonl(ROWS),
    "array.json": lambda _: json.dumps(ROWS, indent=2, ensure_ascii=False).encode(),
    "data.json": lambda _: json.dumps({"version": 2, "data": ROWS}).encode(),
    "rows-key.json": lambda _: json.dumps({"rows": ROWS, "total": 3}, indent=1).encode(),
    "lines-named.json": lambda _: jsonl(ROWS),
    "table.csv": lambda _: csv_bytes(ROWS),
    "table.tsv": lambda _: csv_bytes(ROWS, "\t"),
    "table.parquet": lambda tmp: parquet_bytes(ROWS, tmp),
    "rows.jsonl.gz": lambda _: gzip.compress(jsonl(ROWS)),
    "array.json.gz": lambda _: gzip.compress(json.dumps(ROWS).encode()),
    "table.csv.gz": lambda _: gzip.compress(csv_bytes(ROWS)),
}


def rows_of(opened: OpenedSource) -> list[tuple[int, Any]]:
    return [(n, r if not isinstance(r, RowDefect) else f"DEFECT {r.message}") for n, r in opened]


def pvc_source(claim: str, path: str) -> DataSource:
    return DataSource.model_validate({"pvc": {"claimName": claim, "path": path}})


@pytest.mark.parametrize("name", sorted(FILE_KINDS))
def test_every_file_kind_on_a_pvc_streams_the_same_rows(name: str, tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    (volume / "sub").mkdir(parents=True)
    content = FILE_KINDS[name](tmp_path)
    (volume / "sub" / name).write_bytes(content)
    opened = open_source(pvc_source("train-data", f"sub/{name}"), mounts=Mounts(pvcs={"train-data": str(volume)}),
                         token=None)
    assert opened.size_bytes == len(content)
    assert opened.revision is None  # only known once every byte went by
    assert rows_of(opened) == list(enumerate(ROWS, start=1))
    assert opened.revision == "sha256:" + hashlib.sha256(content).hexdigest()


def test_a_folder_is_every_data_file_in_sorted_order(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    folder = volume / "corpus"
    (folder / "b").mkdir(parents=True)
    (folder / ".cache").mkdir()
    (folder / "b" / "part-1.jsonl").write_bytes(jsonl(ROWS[2:]))
    (folder / "a.json").write_bytes(json.dumps(ROWS[:1]).encode())
    (folder / "a2.csv").write_bytes(csv_bytes(ROWS[1:2]))
    (folder / "README.md").write_text("# not data\n")
    (folder / ".cache" / "stale.jsonl").write_bytes(jsonl([{"junk": 1}]))
    opened = open_source(pvc_source("data", "corpus"), mounts=Mounts(pvcs={"data": str(volume)}), token=None)
    assert opened.files == ["a.json", "a2.csv", "b/part-1.jsonl"]
    assert rows_of(opened) == list(enumerate(ROWS, start=1))
    hashed = b"".join((folder / name).read_bytes() for name in opened.files)
    assert opened.revision == "sha256:" + hashlib.sha256(hashed).hexdigest()


def test_config_map_mount_with_kubelet_symlinks_and_no_suffix(tmp_path: Path) -> None:
    # The kubelet mounts each key as a symlink through a hidden, timestamped folder.
    mount = tmp_path / "cm"
    (mount / "..2024_05_01_00_00_00.1").mkdir(parents=True)
    (mount / "..2024_05_01_00_00_00.1" / "data.jsonl").write_bytes(jsonl(ROWS))
    (mount / "..2024_05_01_00_00_00.1" / "rows").write_bytes(json.dumps(ROWS).encode())
    (mount / "..data").symlink_to("..2024_05_01_00_00_00.1")
    (mount / "data.jsonl").symlink_to("..data/data.jsonl")
    (mount / "rows").symlink_to("..data/rows")
    (mount / "..2024_05_01_00_00_00.1" / "table").write_bytes(csv_bytes(ROWS))
    (mount / "table").symlink_to("..data/table")
    mounts = Mounts(config_maps={"inline-rows": str(mount)})
    for key in ("data.jsonl", "rows"):
        source = DataSource.model_validate({"configMap": {"name": "inline-rows", "key": key}})
        assert rows_of(open_source(source, mounts=mounts, token=None)) == list(enumerate(ROWS, start=1))
    # CSV cannot be told from its first bytes: the defect says to name the key.
    source = DataSource.model_validate({"configMap": {"name": "inline-rows", "key": "table"}})
    [(number, defect)] = rows_of(open_source(source, mounts=mounts, token=None))
    assert number == 0 and "name it .csv" in defect


def test_malformed_lines_become_defects_and_the_stream_goes_on(tmp_path: Path) -> None:
    body = jsonl(ROWS[:1]) + b'{"instruction": "broken",\n' + b"\n" + b"\xff\xfe\n" + jsonl(ROWS[1:])
    (tmp_path / "d.jsonl").write_bytes(body)
    rows = rows_of(open_source(pvc_source("d", "d.jsonl"), mounts=Mounts(pvcs={"d": str(tmp_path)}), token=None))
    assert [n for n, _ in rows] == [1, 2, 3, 4, 5]
    assert rows[1][1].startswith("DEFECT d.jsonl line 2: not valid JSON")
    assert rows[2][1].startswith("DEFECT d.jsonl line 4: not UTF-8")
    assert [r for _, r in rows[3:]] == ROWS[1:]


def test_csv_rows_with_wrong_value_counts_are_defects(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text('instruction,output\n"a, b",c\nonly-one\nx,y,z\nq,r\n')
    rows = rows_of(open_source(pvc_source("d", "t.csv"), mounts=Mounts(pvcs={"d": str(tmp_path)}), token=None))
    assert rows[0] == (1, {"instruction": "a, b", "output": "c"})
    assert "fewer values" in rows[1][1] and "more values" in rows[2][1]
    assert rows[3] == (4, {"instruction": "q", "output": "r"})


def test_json_array_is_streamed_across_chunk_boundaries(tmp_path: Path) -> None:
    # Values straddle the 64 KiB read boundaries, including numbers, which could parse short.
    rows: list[Any] = [{"text": "x" * (70_000 + i), "n": 12345678901234567890 + i} for i in range(3)]
    rows += [1234567, 3.25, {"nested": [1, [2, {"deep": "y" * 200_000}]]}]
    (tmp_path / "big.json").write_text(json.dumps(rows))
    opened = open_source(pvc_source("d", "big.json"), mounts=Mounts(pvcs={"d": str(tmp_path)}), token=None)
    assert [r for _, r in opened] == rows


def test_truncated_json_keeps_rows_before_and_reports_the_file(tmp_path: Path) -> None:
    (tmp_path / "cut.json").write_text(json.dumps(ROWS)[:-30])
    rows = rows_of(open_source(pvc_source("d", "cut.json"), mounts=Mounts(pvcs={"d": str(tmp_path)}), token=None))
    assert rows[:2] == [(1, ROWS[0]), (2, ROWS[1])]
    assert rows[2][0] == 0 and "cannot read on" in rows[2][1]


def test_missing_paths_and_mounts_are_source_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no data here")
    mounts = Mounts(pvcs={"d": str(tmp_path)})
    cases = [
        (pvc_source("d", "nope.jsonl"), FailureReason.DATASET_NOT_FOUND, "no such file"),
        (pvc_source("d", "empty"), FailureReason.DATASET_NOT_FOUND, "no data files"),
        (pvc_source("other", "x.jsonl"), FailureReason.INVALID_CONFIG, "'other' is not mounted"),
        (DataSource.model_validate({"configMap": {"name": "cm"}}), FailureReason.INVALID_CONFIG, "not mounted"),
    ]
    for source, reason, words in cases:
        with pytest.raises(SourceError) as caught:
            open_source(source, mounts=mounts, token=None)
        assert caught.value.reason is reason
        assert words in caught.value.message


# --- URL safety -------------------------------------------------------------------------------

@pytest.mark.parametrize(("address", "words"), [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("169.254.169.254", "metadata"), ("169.254.1.1", "link-local"), ("fe80::1", "link-local"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("172.31.255.255", "private"),
    ("192.168.1.1", "private"), ("fd12:3456::1", "unique-local"), ("fc00::1", "unique-local"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("::ffff:10.0.0.1", "private"), ("::ffff:169.254.169.254", "metadata"), ("100.64.0.1", "private"),
])
def test_internal_addresses_are_refused(address: str, words: str) -> None:
    problem = address_problem(ipaddress.ip_address(address))
    assert problem is not None and words in problem


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "172.32.0.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


def fake_resolver(*answers: str) -> Callable[[str, int], list[Any]]:
    return lambda host, port: [ipaddress.ip_address(a) for a in answers]


def test_check_url_names_the_address_and_why() -> None:
    with pytest.raises(UrlRefused) as caught:
        check_url("https://data.example.com/x.jsonl", allow_private=False,
                  resolver=fake_resolver("93.184.216.34", "10.0.0.7"))
    assert "resolves to 10.0.0.7, a private address" in str(caught.value)
    with pytest.raises(UrlRefused, match="use https://"):
        check_url("http://data.example.com/x.jsonl", allow_private=True, resolver=fake_resolver("93.184.216.34"))
    with pytest.raises(UrlRefused, match="only https"):
        check_url("ftp://data.example.com/x", allow_private=True, resolver=fake_resolver("93.184.216.34"))
    checked = check_url("https://data.example.com:8443/x.jsonl?sig=1", allow_private=False,
                        resolver=fake_resolver("93.184.216.34"))
    assert (checked.host, checked.port, checked.target, str(checked.address)) == \
        ("data.example.com", 8443, "/x.jsonl?sig=1", "93.184.216.34")
    allowed = check_url("https://10.0.0.7/x", allow_private=True, resolver=fake_resolver("10.0.0.7"))
    assert str(allowed.address) == "10.0.0.7"


@pytest.mark.parametrize(("url", "words"), [
    ("https://127.0.0.1:9/data.jsonl", "127.0.0.1, a loopback address"),
    ("https://169.254.169.254/latest/meta-data/", "169.254.169.254, the cloud metadata service"),
    ("https://10.20.30.40/x.jsonl", "10.20.30.40, a private address"),
    ("https://[::1]/x.jsonl", "::1, a loopback address"),
    ("https://localhost/x.jsonl", "a loopback address"),
])
def test_url_sources_to_internal_addresses_are_refused_before_connecting(url: str, words: str) -> None:
    source = DataSource.model_validate({"url": {"url": url}})
    with pytest.raises(SourceError) as caught:
        open_source(source, mounts=Mounts(), token=None)
    assert caught.value.reason is FailureReason.INVALID_CONFIG
    assert words in caught.value.message


def test_plain_http_is_refused_even_for_allowed_private_hosts(tmp_path: Path) -> None:
    with (tmp_path / "sink").open("wb") as sink, pytest.raises(UrlRefused, match="use https://"):
        fetch_url("http://127.0.0.1:9/x.jsonl", sink, allow_private=True)


# --- a real https server on loopback ------------------------------------------------------------

class _Files(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, dict[str, str], bytes]]] = {}
    seen_headers: ClassVar[list[dict[str, str]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.seen_headers.append(dict(self.headers))
        status, headers, body = self.routes.get(self.path, (404, {}, b"not found"))
        self.send_response(status)
        # A route may set its own Content-Length, or "" to send none (the body then ends at close).
        for key, value in {"Content-Length": str(len(body)), **headers}.items():
            if value:
                self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", cert
    server.shutdown()


def url_source(url: str) -> DataSource:
    return DataSource.model_validate({"url": {"url": url}})


def test_https_url_is_streamed_with_redirects_and_hashed(https_server: tuple[str, Path], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    base, cert = https_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust the test certificate the usual way
    body = gzip.compress(jsonl(ROWS))
    _Files.routes.update({
        "/data/rows.jsonl.gz": (200, {}, body),
        "/moved": (302, {"Location": "/data/rows.jsonl.gz"}, b""),
        "/secret.jsonl": (401, {}, b""),
        "/to-http": (302, {"Location": base.replace("https", "http") + "/data/rows.jsonl.gz"}, b""),
    })
    cache = tmp_path / "cache"
    opened = open_source(url_source(f"{base}/data/rows.jsonl.gz"), mounts=Mounts(), token="hf_" + "s" * 30,
                         allow_private_urls=True, cache_dir=cache)
    assert opened.revision == "sha256:" + hashlib.sha256(body).hexdigest()
    assert opened.size_bytes == len(body)
    assert rows_of(opened) == list(enumerate(ROWS, start=1))
    assert list(cache.iterdir()) == []  # the temp copy is gone once read
    assert all("Authorization" not in h for h in _Files.seen_headers)  # the Hub token never goes to URLs

    # A redirect keeps the file kind of the first URL's name unknown: the content is sniffed.
    redirected = open_source(url_source(f"{base}/moved"), mounts=Mounts(), token=None, allow_private_urls=True)
    assert rows_of(redirected) == list(enumerate(ROWS, start=1))

    for path, reason, words in [
        ("/missing.jsonl", FailureReason.DATASET_NOT_FOUND, "HTTP 404"),
        ("/secret.jsonl", FailureReason.AUTH_FAILED, "HTTP 401"),
        ("/to-http", FailureReason.INVALID_CONFIG, "plain http is not allowed"),
    ]:
        with pytest.raises(SourceError) as caught:
            open_source(url_source(base + path), mounts=Mounts(), token=None, allow_private_urls=True)
        assert (caught.value.reason, words in caught.value.message) == (reason, True), caught.value.message


@pytest.mark.parametrize("length", ["announced", "not announced"])
def test_a_url_larger_than_max_size_fails_the_dataset_and_leaves_nothing(
        https_server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, length: str) -> None:
    base, cert = https_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    body = jsonl(ROWS * 500)
    assert len(body) > 64 * 1024
    route = f"/big-{length.replace(' ', '-')}.jsonl"
    _Files.routes[route] = (200, {} if length == "announced" else {"Content-Length": ""}, body)
    cache = tmp_path / "cache"
    source = DataSource.model_validate({"url": {"url": base + route, "maxSize": "64Ki"}})
    with pytest.raises(SourceError) as caught:
        open_source(source, mounts=Mounts(), token=None, allow_private_urls=True, cache_dir=cache)
    assert caught.value.reason is FailureReason.DATASET_INVALID
    message = caught.value.message
    assert "65,536-byte limit" in message and "source.url.maxSize (64Ki)" in message
    assert (f"announces {len(body):,} bytes" in message) == (length == "announced")
    assert list(cache.iterdir()) == []  # the partial download is gone

    # The same file within the limit reads in full.
    roomy = DataSource.model_validate({"url": {"url": base + route, "maxSize": "1Mi"}})
    opened = open_source(roomy, mounts=Mounts(), token=None, allow_private_urls=True, cache_dir=cache)
    assert len(list(opened.records)) == len(ROWS) * 500


def test_untrusted_certificate_is_unreachable(https_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    base, _ = https_server
    (tmp_path / "empty.pem").write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "empty.pem"))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    _Files.routes["/ok.jsonl"] = (200, {}, jsonl(ROWS))
    with pytest.raises(SourceError) as caught:
        open_source(url_source(f"{base}/ok.jsonl"), mounts=Mounts(), token=None, allow_private_urls=True)
    assert caught.value.reason is FailureReason.UNREACHABLE
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message


def test_private_url_refusal_does_not_touch_the_network(https_server: tuple[str, Path]) -> None:
    base, _ = https_server
    before = len(_Files.seen_headers)
    with pytest.raises(SourceError, match="loopback"):
        open_source(url_source(f"{base}/ok.jsonl"), mounts=Mounts(), token=None)
    assert len(_Files.seen_headers) == before


def test_temp_files_of_abandoned_streams_are_removed(https_server: tuple[str, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    base, cert = https_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    _Files.routes["/many.jsonl"] = (200, {}, jsonl(ROWS * 10))
    opened = open_source(url_source(f"{base}/many.jsonl"), mounts=Mounts(), token=None, allow_private_urls=True,
                         cache_dir=tmp_path)
    assert next(iter(opened)) == (1, ROWS[0])
    assert len(list(tmp_path.iterdir())) == 1
    opened.records.close()  # type: ignore[attr-defined]
    assert list(tmp_path.iterdir()) == []
    assert os.environ["SSL_CERT_FILE"] == str(cert)


# --- the Hub, through the real huggingface_hub client against the test server ------------------

@pytest.fixture
def hub_dataset(hub_server: HubServer, tmp_path: Path) -> tuple[HubServer, str]:
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    api.create_repo("team/chat-rows", repo_type="dataset", private=True)
    files = {
        "README.md": b"---\nlicense: mit\n---\n# rows\n",
        "data/train-00000-of-00002.parquet": parquet_bytes(ROWS[:2], tmp_path),
        "data/test-00000-of-00001.parquet": parquet_bytes(ROWS[:1], tmp_path),
        "extra/other.jsonl": jsonl([{"text": "other"}]),
    }
    # Written one by one: parquet_bytes reuses its scratch file.
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=data) for name, data in files.items()]
    operations.append(CommitOperationAdd(path_in_repo="data/train-00001-of-00002.parquet",
                                         path_or_fileobj=parquet_bytes(ROWS[2:], tmp_path)))
    api.create_commit("team/chat-rows", operations=operations, commit_message="data", repo_type="dataset")
    return hub_server, "team/chat-rows"


def hub_source(server: HubServer, repo: str, **fields: Any) -> DataSource:
    return DataSource.model_validate({"hf": {"repo": repo, "endpoint": server.endpoint, **fields}})


def test_hub_split_is_read_at_the_resolved_commit(hub_dataset: tuple[HubServer, str], tmp_path: Path) -> None:
    server, repo = hub_dataset
    opened = open_source(hub_source(server, repo), mounts=Mounts(), token=server.token, cache_dir=tmp_path)
    sha = server.commits(repo, repo_type="dataset")[0].sha
    assert opened.revision == sha and len(sha) == 40
    assert opened.files == ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]
    assert rows_of(opened) == list(enumerate(ROWS, start=1))
    assert opened.size_bytes == sum(len(data) for name, data in server.files(repo, repo_type="dataset").items()
                                    if name.startswith("data/train"))

    test_split = open_source(hub_source(server, repo, split="test", revision=sha), mounts=Mounts(),
                             token=server.token, cache_dir=tmp_path)
    assert rows_of(test_split) == [(1, ROWS[0])]
    picked = open_source(hub_source(server, repo, files=["extra/*.jsonl"]), mounts=Mounts(), token=server.token,
                         cache_dir=tmp_path)
    assert rows_of(picked) == [(1, {"text": "other"})]


@pytest.mark.parametrize(("fields", "token", "reason", "words"), [
    ({}, None, FailureReason.AUTH_FAILED, "no token was given"),
    ({}, "hf_wrongwrongwrongwrongwrong", FailureReason.AUTH_FAILED, "not readable"),
    ({"revision": "no-such-branch"}, "good", FailureReason.DATASET_NOT_FOUND, "revision not found"),
    ({"split": "validation"}, "good", FailureReason.DATASET_NOT_FOUND,
     "no split 'validation': its splits are test, train"),
    ({"files": ["*.csv"]}, "good", FailureReason.DATASET_NOT_FOUND, "no data file matches"),
])
def test_hub_failures_say_what_to_fix(hub_dataset: tuple[HubServer, str], tmp_path: Path, fields: dict[str, Any],
                                      token: str | None, reason: FailureReason, words: str) -> None:
    server, repo = hub_dataset
    token = server.token if token == "good" else token
    with pytest.raises(SourceError) as caught:
        open_source(hub_source(server, repo, **fields), mounts=Mounts(), token=token, cache_dir=tmp_path)
    assert caught.value.reason is reason, caught.value.message
    assert words in caught.value.message
    assert "hf_wrong" not in caught.value.message and server.token not in caught.value.message


def test_hub_missing_repo_and_unreachable_hub(hub_server: HubServer, tmp_path: Path) -> None:
    with pytest.raises(SourceError) as caught:
        open_source(hub_source(hub_server, "team/none"), mounts=Mounts(), token=hub_server.token,
                    cache_dir=tmp_path)
    assert caught.value.reason is FailureReason.DATASET_NOT_FOUND
    closed = DataSource.model_validate({"hf": {"repo": "team/none", "endpoint": "http://127.0.0.1:9"}})
    with pytest.raises(SourceError) as caught:
        open_source(closed, mounts=Mounts(), token=hub_server.token, cache_dir=tmp_path)
    assert caught.value.reason is FailureReason.UNREACHABLE
    assert hub_server.token not in caught.value.message


def test_hub_subset_names_a_folder_when_the_repo_declares_no_configs(hub_server: HubServer, tmp_path: Path) -> None:
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    api.create_repo("team/subsets", repo_type="dataset")
    api.create_commit("team/subsets", repo_type="dataset", commit_message="rows", operations=[
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=data) for name, data in {
            "en/alpaca.json": json.dumps(ROWS[:2]).encode(),
            "fr/alpaca.json": json.dumps(ROWS[2:]).encode(),
            "training_notes.jsonl": jsonl([{"text": "notes"}]),
        }.items()])
    # The Hub's convention (as `datasets` applies it): a file named after a split is that split.
    everything = open_source(hub_source(hub_server, "team/subsets"), mounts=Mounts(), token=None, cache_dir=tmp_path)
    assert everything.files == ["training_notes.jsonl"]
    french = open_source(hub_source(hub_server, "team/subsets", subset="fr"), mounts=Mounts(), token=None,
                         cache_dir=tmp_path)
    assert rows_of(french) == [(1, ROWS[2])]
