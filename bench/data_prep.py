"""Data preparation: alpaca rows on disk -> token ids and loss masks, kubetune's trainer against trl's.

kubetune's side is the trainer's own path (kubetune_trainer.training.train): `load_mix` reads the
JSONL from a pvc source, detects the format, parses every row and takes the seed scenario's
validationSplit (0.02); `tokenize_for_generation` renders ChatML and encodes in batches with
vectorised answer masks; the length-grouped sampler orders the rows. trl's side is what a
user does by hand: `datasets.load_dataset("json")`, a batched `map` from alpaca to messages,
and constructing an `SFTTrainer` (assistant-only loss, so both sides compute answer masks;
max_length 1024 for both), which tokenizes, builds the masks and truncates.

Both start from the same file with the same tokenizer (trained on the rows) and run in fresh
processes, alternating. Goals: >= 4x trl's rows/s, <= 20 s for 100,000 rows on 2 cores.

    python -m bench.data_prep                  # 100,000 rows, 1 run per side
    python -m bench.data_prep --rows 2000 --repeats 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    Figure,
    alternate,
    emit_result,
    machine_line,
    median_of,
    package_versions,
    peak_rss_mb,
    print_table,
    run_worker,
)

MAX_LENGTH = 1024
VALIDATION_SPLIT = 0.02  # examples/ministral-alpaca.yaml
GOAL_RATIO = 4.0
GOAL_SECONDS_100K = 20.0


# --- workers (each runs in its own process) -------------------------------------------------

def kubetune_worker(data: Path, model: Path, rows: int) -> dict[str, Any]:
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from kubetune.api.contract import Mounts
    from kubetune.api.dataset import DataSource, PvcSource
    from kubetune.api.tuningjob import DatasetEntry, DatasetsSpec
    from kubetune_trainer.data.datamix import load_mix
    from kubetune_trainer.data.dataprep import tokenize_for_generation
    from kubetune_trainer.training.modelload import load_tokenizer

    tokenizer = load_tokenizer(model, log=lambda _: None)
    spec = DatasetsSpec(train=[DatasetEntry(source=DataSource(pvc=PvcSource(claim_name="data", path=data.name)))],
                        validation_split=VALIDATION_SPLIT)
    started = time.perf_counter()
    mix = load_mix(spec, ["alpaca"], mounts=Mounts(pvcs={"data": str(data.parent)}), token=None, seed=42,
                   max_samples=rows, log=lambda _: None)
    loaded = time.perf_counter()
    train = tokenize_for_generation(mix.train, tokenizer, max_length=MAX_LENGTH)
    validation = tokenize_for_generation(mix.validation, tokenizer, max_length=MAX_LENGTH)
    tokenized = time.perf_counter()
    order = list(LengthGroupedSampler(8, lengths=train.lengths.tolist()))
    finished = time.perf_counter()
    assert len(order) == len(train)
    return {
        "seconds": finished - started, "read_parse_seconds": loaded - started,
        "tokenize_seconds": tokenized - loaded, "group_seconds": finished - tokenized,
        "rows": len(train) + len(validation), "tokens": int(train.lengths.sum() + validation.lengths.sum()),
        "loss_tokens": train.trainable_tokens() + validation.trainable_tokens(), "peak_rss_mb": peak_rss_mb(),
    }


def _to_messages(batch: dict[str, list[str]]) -> dict[str, list[Any]]:
    """alpaca -> chat messages, as the trainer's alpaca parser joins instruction and input."""
    messages = []
    for instruction, context, output in zip(batch["instruction"], batch["input"], batch["output"], strict=True):
        prompt = f"{instruction}\n\n{context}" if context.strip() else instruction
        messages.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": output}])
    return {"messages": messages}


def trl_worker(data: Path, model_folder: Path, work: Path) -> dict[str, Any]:
    import datasets
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    datasets.disable_caching()  # a second run must not find the first one's cached map results
    datasets.disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    model = AutoModelForCausalLM.from_pretrained(model_folder)
    args = SFTConfig(output_dir=str(work / "out"), max_length=MAX_LENGTH, assistant_only_loss=True, bf16=False,
                     report_to="none")
    peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                             task_type="CAUSAL_LM")
    started = time.perf_counter()
    raw = datasets.load_dataset("json", data_files=str(data), split="train", cache_dir=str(work / "cache"))
    chats = raw.map(_to_messages, batched=True, remove_columns=raw.column_names)
    loaded = time.perf_counter()
    trainer = SFTTrainer(model=model, args=args, train_dataset=chats, processing_class=tokenizer,
                         peft_config=peft_config)
    finished = time.perf_counter()
    prepared: Any = trainer.train_dataset
    lengths = [len(ids) for ids in prepared["input_ids"]]
    loss_tokens = sum(sum(1 for label in labels if label != -100) for labels in prepared["labels"])
    return {
        "seconds": finished - started, "read_parse_seconds": loaded - started,
        "tokenize_seconds": finished - loaded, "rows": len(prepared), "tokens": sum(lengths),
        "loss_tokens": int(loss_tokens), "peak_rss_mb": peak_rss_mb(),
    }


# --- the comparison ---------------------------------------------------------------------------

def prepare_inputs(rows: int, folder: Path) -> tuple[Path, Path]:
    """The rows as JSONL and a scratch model whose tokenizer was trained on them (untimed)."""
    from bench.alpaca_like import alpaca_rows, row_texts, write_jsonl
    from bench.trainer_throughput import build_model

    generated = alpaca_rows(rows)
    data = write_jsonl(generated, folder / "alpaca.jsonl")
    model = build_model(list(row_texts(generated[:5000])), folder / "model", tiny=True)
    return data, model


def compare(rows: int, repeats: int) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="bench-data-prep-") as tmp:
        folder = Path(tmp)
        data, model = prepare_inputs(rows, folder)
        print(f"data: {rows:,} alpaca-like rows, {data.stat().st_size / 2**20:.1f} MiB of JSONL; "
              f"{repeats} run(s) per side, alternating, each in a fresh process")

        def kubetune(_: int) -> dict[str, Any]:
            return run_worker("bench.data_prep", ["kubetune", str(data), str(model), str(rows)])

        def trl(repeat: int) -> dict[str, Any]:
            work = folder / f"trl-{repeat}"
            return run_worker("bench.data_prep", ["trl", str(data), str(model), str(work)])

        results = alternate({"kubetune": kubetune, "trl": trl}, repeats)
    ours, theirs = results["kubetune"], results["trl"]
    seconds, trl_seconds = median_of(ours, "seconds"), median_of(theirs, "seconds")
    scaled = seconds * 100_000 / rows
    figures = [
        Figure("kubetune: rows prepared", median_of(ours, "rows"), "rows"),
        Figure("kubetune: tokens", median_of(ours, "tokens"), "tokens"),
        Figure("kubetune: loss tokens", median_of(ours, "loss_tokens"), "tokens"),
        Figure("kubetune: read+detect+parse", median_of(ours, "read_parse_seconds"), "s"),
        Figure("kubetune: template+tokenize+mask", median_of(ours, "tokenize_seconds"), "s"),
        Figure("kubetune: length grouping", median_of(ours, "group_seconds"), "s"),
        Figure("kubetune: total", seconds, "s"),
        Figure("kubetune: total scaled to 100,000 rows", scaled, "s", ("<=", GOAL_SECONDS_100K)),
        Figure("kubetune: rows/s", rows / seconds, "rows/s"),
        Figure("kubetune: peak RSS", median_of(ours, "peak_rss_mb"), "MiB"),
        Figure("trl: rows prepared", median_of(theirs, "rows"), "rows"),
        Figure("trl: tokens", median_of(theirs, "tokens"), "tokens"),
        Figure("trl: loss tokens", median_of(theirs, "loss_tokens"), "tokens"),
        Figure("trl: load_dataset + map to messages", median_of(theirs, "read_parse_seconds"), "s"),
        Figure("trl: SFTTrainer(...) construction", median_of(theirs, "tokenize_seconds"), "s"),
        Figure("trl: total", trl_seconds, "s"),
        Figure("trl: rows/s", rows / trl_seconds, "rows/s"),
        Figure("trl: peak RSS", median_of(theirs, "peak_rss_mb"), "MiB"),
        Figure("speed-up (trl time / kubetune time)", trl_seconds / seconds, "x", (">=", GOAL_RATIO)),
    ]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="alpaca rows to prepare (default 100,000)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per side, alternating (default 1)")
    parser.add_argument("--tiny", action="store_true", help="a smoke run: 300 rows, 1 run per side")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        side, data, model, extra = args.worker[0], Path(args.worker[1]), Path(args.worker[2]), args.worker[3]
        if side == "kubetune":
            emit_result(kubetune_worker(data, model, int(extra)))
        else:
            emit_result(trl_worker(data, model, Path(extra)))
        return
    rows, repeats = (300, 1) if args.tiny else (args.rows, args.repeats)
    print("data preparation: kubetune's trainer vs trl's SFTTrainer")
    print(machine_line())
    print(package_versions("transformers", "trl", "datasets", "tokenizers"))
    figures = compare(rows, repeats)
    print_table(f"data preparation, {rows:,} rows (medians of {repeats})", figures)


if __name__ == "__main__":
    main()
