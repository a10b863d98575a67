"""The lake: where every dataset, baseline and report of the platform lives on disk.

Datasets are parquet files laid out by asset key and partition (``<root>/<key>/<day>.parquet``)
so that Feast, DuckDB and a person with polars can all read them directly. The IO manager is
our own because dagster-polars does not work with polars 2 (see ../shared/DEPENDENCIES.md).
"""

import datetime
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
from dagster import (
    AssetKey,
    ConfigurableIOManager,
    ConfigurableResource,
    InputContext,
    MetadataValue,
    OutputContext,
)
from pydantic import Field


class BaselineNotAccepted(LookupError):
    """No baseline has been accepted yet, so there is nothing to compare a batch against."""


class Lake(ConfigurableResource):
    """Local (or mounted) parquet storage for datasets, baselines and reports.

    Attributes:
        root: Directory that holds everything the platform writes.
    """

    root: str = Field(description="Directory that holds the platform's datasets and reports.")

    def dataset_path(self, asset_key: AssetKey, partition_key: str | None = None) -> Path:
        """Where one asset (partition) is stored."""
        folder = Path(self.root).joinpath(*asset_key.path)
        return (
            folder / f"{partition_key}.parquet" if partition_key else folder.with_suffix(".parquet")
        )

    def write_dataset(
        self, frame: pl.DataFrame, asset_key: AssetKey, partition_key: str | None = None
    ) -> Path:
        """Write a frame atomically: a reader never sees half a file."""
        path = self.dataset_path(asset_key, partition_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".parquet.partial")
        frame.write_parquet(partial, statistics=True)
        partial.replace(path)
        return path

    def read_dataset(self, asset_key: AssetKey, partition_key: str | None = None) -> pl.DataFrame:
        """Read one stored asset (partition); a clear error if it was never materialized."""
        path = self.dataset_path(asset_key, partition_key)
        if not path.exists():
            where = f" partition {partition_key}" if partition_key else ""
            raise FileNotFoundError(
                f"{asset_key.to_user_string()}{where} has not been materialized: {path} is missing"
            )
        return pl.read_parquet(path)

    def stored_partitions(self, asset_key: AssetKey, partition_keys: Sequence[str]) -> list[str]:
        """Which of ``partition_keys`` of the asset are stored, in the order given."""
        return [key for key in partition_keys if self.dataset_path(asset_key, key).exists()]

    def scan_partitions(self, asset_key: AssetKey, partition_keys: Sequence[str]) -> pl.LazyFrame:
        """A lazy scan over stored partitions, so a reader pays only for the columns it uses."""
        missing = sorted(
            set(partition_keys) - set(self.stored_partitions(asset_key, partition_keys))
        )
        if missing or not partition_keys:
            raise FileNotFoundError(
                f"{asset_key.to_user_string()} partitions not materialized: "
                f"{', '.join(missing) or '(none asked for)'}"
            )
        return pl.scan_parquet([self.dataset_path(asset_key, key) for key in partition_keys])

    def row_count(self, asset_key: AssetKey, partition_key: str | None = None) -> int | None:
        """Rows of a stored partition from the parquet footer, or None if it is not stored."""
        path = self.dataset_path(asset_key, partition_key)
        if not path.exists():
            return None
        return pl.scan_parquet(path).select(pl.len()).collect().item()

    def report_path(self, *parts: str) -> Path:
        """A path under ``<root>/reports`` for HTML and other human-readable reports."""
        path = Path(self.root, "reports", *parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # Baselines: immutable versions plus one pointer to the accepted one, so a baseline is only
    # ever replaced by a person accepting a new version, and every old version stays readable.

    def _baseline_dir(self, name: str) -> Path:
        return Path(self.root, "baselines", name)

    def save_baseline(self, name: str, profile: dict[str, Any], sample: pl.DataFrame) -> str:
        """Store a new baseline version and make it the accepted one; return its version id.

        Args:
            name: Which baseline (e.g. ``transactions``).
            profile: The JSON-serialisable statistics checks compare against.
            sample: Reference rows kept with the version, for human-readable drift reports.
        """
        body = json.dumps(profile, sort_keys=True, default=str)
        digest = hashlib.sha256(body.encode())
        digest.update(sample.hash_rows(seed=0).to_numpy().tobytes())
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        version = f"{stamp}-{digest.hexdigest()[:12]}"
        folder = self._baseline_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        # "x": a version is written once; an existing one is never overwritten.
        with (folder / f"{version}.json").open("x", encoding="utf-8") as out:
            out.write(body)
        sample.write_parquet(folder / f"{version}.parquet")
        pointer = folder / "ACCEPTED"
        partial = folder / "ACCEPTED.partial"
        partial.write_text(version, encoding="utf-8")
        partial.replace(pointer)
        return version

    def accepted_baseline(self, name: str) -> tuple[str, dict[str, Any]]:
        """The accepted baseline's version id and profile; BaselineNotAccepted if none is."""
        pointer = self._baseline_dir(name) / "ACCEPTED"
        if not pointer.exists():
            raise BaselineNotAccepted(f"no {name} baseline has been accepted yet ({pointer})")
        version = pointer.read_text(encoding="utf-8").strip()
        body = (self._baseline_dir(name) / f"{version}.json").read_text(encoding="utf-8")
        return version, json.loads(body)

    def baseline_sample(self, name: str, version: str) -> pl.DataFrame:
        """The reference rows stored with a baseline version."""
        return pl.read_parquet(self._baseline_dir(name) / f"{version}.parquet")


class LakeIOManager(ConfigurableIOManager):
    """Stores polars DataFrames as parquet in the lake, one file per asset partition.

    Attributes:
        lake: The lake the files go to.
    """

    lake: Lake

    def handle_output(self, context: OutputContext, obj: pl.DataFrame) -> None:
        """Write the asset (partition) and add its path to the materialization metadata."""
        if not isinstance(obj, pl.DataFrame):
            raise TypeError(
                f"{context.asset_key.to_user_string()} returned {type(obj).__name__}; "
                "the lake stores polars DataFrames only"
            )
        partition = context.partition_key if context.has_asset_partitions else None
        path = self.lake.write_dataset(obj, context.asset_key, partition)
        context.add_output_metadata({"path": str(path)})

    def load_input(self, context: InputContext) -> pl.DataFrame:
        """Read the upstream partition(s) the downstream step asked for, concatenated in order."""
        key = context.asset_key
        if not context.has_asset_partitions:
            return self.lake.read_dataset(key)
        frames = [self.lake.read_dataset(key, p) for p in sorted(context.asset_partition_keys)]
        return pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]


class RecordIOManager(ConfigurableIOManager):
    """Stores small JSON records (a model version's reference, an evaluation report) in the lake.

    Model assets pass references into the registry rather than models, so that downstream
    assets receive exactly the version upstream produced and a person can read the file.

    Attributes:
        lake: The lake the records go to (``<root>/records/<key>.json``).
    """

    lake: Lake

    def _path(self, context: OutputContext | InputContext) -> Path:
        """``records/<key>.json``, or ``records/<key>/<partition>.json`` for a partitioned asset."""
        path = Path(self.lake.root, "records", *context.asset_key.path)
        if context.has_asset_partitions:
            path = path / context.asset_partition_key
        return path.with_suffix(".json")

    def handle_output(self, context: OutputContext, obj: dict[str, Any]) -> None:
        """Write the record and add its path, relative to the lake's root, to the metadata.

        Relative because the UI shows a path whole on one line: the absolute one would widen the
        asset's overview past a laptop screen and push its tables off the page.
        """
        path = self._path(context)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, indent=2, sort_keys=True), encoding="utf-8")
        context.add_output_metadata(
            {"record": MetadataValue.path(path.relative_to(self.lake.root))}
        )

    def load_input(self, context: InputContext) -> dict[str, Any]:
        """Read the upstream asset's record (of the same partition, for a partitioned one)."""
        return json.loads(self._path(context).read_text(encoding="utf-8"))
