"""Hub dataset repos, read with `datasets`: configs, exact splits, data_files, a pinned commit, streaming.

The repo's own description decides what a config and a split are: the README's `configs:`
(each with its `data_files`), else the Hub's file-name conventions (`data/train-00000-of-00001.parquet`,
`train.jsonl`, a `train/` folder). kubetune adds three things on top:
- the revision is resolved to a commit sha first, and every file is read at that commit;
- a config or split that does not exist fails with the names that do (`train` never stands for
  `train_sft`); in a repo without configs, `subset` may name a folder (the old convention);
- rows come out as plain dicts numbered from 1, through the same parsing as every other source.

`datasets` and huggingface_hub read their endpoint from process-wide settings fixed at import
(HF_ENDPOINT); a source may name its own Hub, so the settings are pointed at it for the duration
of the read (`_hub_settings`). Telemetry and the datasets-server lookups are switched off: only
the source's Hub is ever asked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from kubetune.api.contract import FailureReason
from kubetune.api.dataset import HubSource
from kubetune_trainer.data.filereaders import is_data_file
from kubetune_trainer.data.formats import RowDefect
from kubetune_trainer.data.sources import NumberedRecord, OpenedSource, SourceError

_ROW_BATCH = 512
_PUBLIC_HUB = "https://huggingface.co"


def open_hub(hf: HubSource, token: str | None, cache_dir: Path | None) -> OpenedSource:
    """The split's rows at the commit `hf.revision` resolves to; raises SourceError naming what to fix."""
    what = f"hf:{hf.repo}@{hf.revision}"
    sha, sizes = _resolve(hf, token, what)
    with _hub_settings(hf.endpoint, cache_dir):
        builder = _builder(hf, sha, token, cache_dir)
        splits = {str(name): list(files) for name, files in (builder.config.data_files or {}).items()}
    if hf.split not in splits:
        config = f" (config {builder.config.name})" if hf.subset else ""
        raise SourceError(FailureReason.DATASET_NOT_FOUND,
                          f"hf:{hf.repo}{config} has no split {hf.split!r}: its splits are "
                          f"{', '.join(sorted(splits)) or 'none'}; set spec.source.hf.split to one of them")
    prefix = f"hf://datasets/{hf.repo}@{sha}/"
    names = [f.removeprefix(prefix) for f in splits[hf.split]]
    opened = OpenedSource(records=iter(()), revision=sha,
                          size_bytes=sum(sizes.get(n) or 0 for n in names), files=names)
    opened.records = _rows(builder, hf, cache_dir, what)
    return opened


def probe_hub(hf: HubSource, token: str | None) -> str:
    """The commit `hf.revision` resolves to, once the token is seen to read the repo's files (a gated
    repo lists them to anyone): for the preflight, without `datasets` and without downloading data."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    what = f"hf:{hf.repo}@{hf.revision}"
    sha, sizes = _resolve(hf, token, what)
    data_file = next((name for name in sorted(sizes) if is_data_file(name)), None)
    if data_file is not None:
        try:
            get_hf_file_metadata(hf_hub_url(hf.repo, data_file, repo_type="dataset", revision=sha,
                                            endpoint=hf.endpoint), token=token)
        except Exception as error:
            if not is_network_error(error):
                raise
            raise hub_failure(error, f"{what}: {data_file}", token) from error
    return sha


def _resolve(hf: HubSource, token: str | None, what: str) -> tuple[str, dict[str, int | None]]:
    """The commit sha of the revision, and the size of every file at it."""
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=hf.endpoint, token=token).dataset_info(hf.repo, revision=hf.revision,
                                                                     files_metadata=True)
    except Exception as error:
        if not is_network_error(error):
            raise
        raise hub_failure(error, what, token) from error
    if not info.sha:
        raise SourceError(FailureReason.UNREACHABLE, f"{what}: the Hub did not say which commit it is")
    return info.sha, {s.rfilename: s.size for s in info.siblings or []}


@contextlib.contextmanager
def _hub_settings(endpoint: str | None, cache_dir: Path | None) -> Iterator[None]:
    """Point datasets and huggingface_hub at `endpoint` (and a cache folder) until the block ends."""
    import datasets
    import huggingface_hub.constants as hub_constants

    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False  # a request to S3 per load
    datasets.config.USE_PARQUET_EXPORT = False  # asks datasets-server.<hub>, which a self-hosted Hub lacks
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its errors reach the user through ours
    url = (endpoint or hub_constants.ENDPOINT or _PUBLIC_HUB).rstrip("/")
    settings: list[tuple[Any, str, Any]] = [
        (datasets.config, "HF_ENDPOINT", url),
        (datasets.config, "HUB_DATASETS_URL", url + "/datasets/{repo_id}/resolve/{revision}/{path}"),
        (hub_constants, "ENDPOINT", url),
        (hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"),
    ]
    if cache_dir is not None:  # the dataset card is fetched into the Hub cache, not datasets' own
        settings.append((hub_constants, "HF_HUB_CACHE", str(cache_dir / "hub")))
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in settings]
    for owner, name, value in settings:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


def _builder(hf: HubSource, sha: str, token: str | None, cache_dir: Path | None) -> Any:
    from datasets import load_dataset_builder

    data_files = {hf.split: list(hf.files)} if hf.files else None
    where = str(cache_dir / "datasets") if cache_dir is not None else None
    try:
        return load_dataset_builder(hf.repo, name=hf.subset, revision=sha, token=token, data_files=data_files,
                                    cache_dir=where)
    except ValueError as error:
        if "BuilderConfig" not in str(error) and "Config name is missing" not in str(error):
            raise _datasets_failure(error, hf, token) from error
        configs = _config_names(hf, sha, token)
        if hf.subset and configs == ["default"]:
            # No configs declared: a subset may still be a folder of the repo (the Hub's older layout).
            try:
                return load_dataset_builder(hf.repo, data_dir=hf.subset, revision=sha, token=token,
                                            data_files=data_files, cache_dir=where)
            except Exception as retry:
                raise SourceError(FailureReason.DATASET_NOT_FOUND,
                                  f"hf:{hf.repo} declares no configs and has no folder {hf.subset!r} with data "
                                  f"({_short(retry)}): remove spec.source.hf.subset or fix it", token) from retry
        if hf.subset:
            raise SourceError(FailureReason.DATASET_NOT_FOUND,
                              f"hf:{hf.repo} has no config {hf.subset!r}: its configs are {', '.join(configs)}; "
                              "set spec.source.hf.subset to one of them", token) from error
        raise SourceError(FailureReason.DATASET_NOT_FOUND,
                          f"hf:{hf.repo} has several configs and no default ({', '.join(configs)}): set "
                          "spec.source.hf.subset to one of them", token) from error
    except Exception as error:
        if isinstance(error, SourceError):
            raise
        raise _datasets_failure(error, hf, token) from error


def _config_names(hf: HubSource, sha: str, token: str | None) -> list[str]:
    from datasets import get_dataset_config_names

    try:
        return list(get_dataset_config_names(hf.repo, revision=sha, token=token))
    except Exception:
        return ["(could not be listed)"]


def _datasets_failure(error: Exception, hf: HubSource, token: str | None) -> SourceError:
    """What `datasets` raised while finding the files, as a reason and a fix."""
    from datasets.exceptions import DataFilesNotFoundError, DatasetNotFoundError

    if isinstance(error, SourceError):
        return error
    if hf.files and isinstance(error, FileNotFoundError):
        return SourceError(FailureReason.DATASET_NOT_FOUND,
                           f"hf:{hf.repo}: no data file matches files={hf.files} ({_short(error)}); patterns are "
                           "relative to the repo root, e.g. data/*.parquet", token)
    if isinstance(error, DataFilesNotFoundError | DatasetNotFoundError | FileNotFoundError):
        return SourceError(FailureReason.DATASET_NOT_FOUND, f"hf:{hf.repo}: {_short(error)}", token)
    if is_network_error(error) or isinstance(error, ConnectionError):
        return SourceError(FailureReason.UNREACHABLE, f"hf:{hf.repo}: cannot reach the Hub ({_short(error)})", token)
    return SourceError(FailureReason.DATASET_INVALID,
                       f"hf:{hf.repo}: the repo's data cannot be read ({type(error).__name__}: {_short(error)}); "
                       "name the data files with spec.source.hf.files", token)


def _rows(builder: Any, hf: HubSource, cache_dir: Path | None, what: str) -> Iterator[NumberedRecord]:
    """Rows numbered from 1; a file `datasets` cannot parse ends the stream with a row-0 defect."""
    number = 0
    with _hub_settings(hf.endpoint, cache_dir):
        try:
            if hf.streaming:
                dataset = builder.as_streaming_dataset(split=hf.split)
            else:
                builder.download_and_prepare()
                dataset = builder.as_dataset(split=hf.split)
            for batch in dataset.iter(batch_size=_ROW_BATCH):
                for row in _batch_rows(batch):
                    number += 1
                    yield number, row
        except SourceError:
            raise
        except Exception as error:
            if is_network_error(error) or isinstance(error, ConnectionError):
                raise SourceError(FailureReason.UNREACHABLE, f"{what}: the download broke off after row {number} "
                                                             f"({_short(error)})") from error
            yield 0, RowDefect("", f"{what}: cannot read on after row {number}: {_innermost(error)}; fix the file "
                                   "or name the readable files with spec.source.hf.files", row=0)


def _batch_rows(batch: Mapping[str, list[Any]]) -> Iterator[dict[str, Any]]:
    """Columns to rows. A null (or a CSV's NaN) is an absent field, as it is in a JSON line."""
    keys = list(batch)
    for values in zip(*(batch[k] for k in keys), strict=True):
        yield {k: v for k, v in zip(keys, values, strict=True)
               if v is not None and not (isinstance(v, float) and v != v)}


def _innermost(error: BaseException) -> str:
    """The parser's own words: datasets wraps them in generic errors, and for JSON it retries with pandas,
    whose message (a byte offset) says less than pyarrow's (the line)."""
    chain = [error]
    while (cause := chain[-1].__cause__ or chain[-1].__context__) is not None and len(chain) < 20:
        chain.append(cause)
    chosen = next((e for e in chain if type(e).__name__ == "ArrowInvalid"), chain[-1])
    return f"{type(chosen).__name__}: {_short(chosen)}"


def _short(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit] + "…"


# --- errors of the Hub client -----------------------------------------------------------------

def hub_failure(error: Exception, what: str, token: str | None) -> SourceError:
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(error, GatedRepoError):
        return SourceError(FailureReason.AUTH_FAILED, f"{what} is gated: accept its conditions on the Hub with "
                           "the account whose token is in tokenSecretRef", token)
    if isinstance(error, RevisionNotFoundError):
        return SourceError(FailureReason.DATASET_NOT_FOUND, f"{what}: revision not found", token)
    if status in (401, 403) or (isinstance(error, RepositoryNotFoundError) and status != 404):
        hint = "the token cannot read it" if token else "it is private and no token was given (tokenSecretRef)"
        return SourceError(FailureReason.AUTH_FAILED, f"{what}: not found or not readable ({hint})", token)
    if isinstance(error, RepositoryNotFoundError) or status == 404 or (
            isinstance(error, EntryNotFoundError) and not isinstance(error, LocalEntryNotFoundError)):
        return SourceError(FailureReason.DATASET_NOT_FOUND, f"{what}: not found on the Hub", token)
    if isinstance(error, HfHubHTTPError) and status is not None:
        return SourceError(FailureReason.UNREACHABLE, f"{what}: the Hub answered HTTP {status}", token)
    return SourceError(FailureReason.UNREACHABLE, f"{what}: cannot reach the Hub ({type(error).__name__}: "
                       f"{str(error)[:300]})", token)


def is_network_error(error: BaseException) -> bool:
    # huggingface_hub raises httpx(-fork) errors for transport failures; they are not OSErrors.
    return isinstance(error, OSError) or type(error).__module__.split(".")[0].startswith("httpx")
