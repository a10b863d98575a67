"""The lake: where every dataset, baseline and report of the platform lives on disk.

Datasets are parquet files laid out by asset key and partition (``<root>/<key>/<day>.parquet``)
so that Feast, DuckDB and a person with polars can all read them directly. The IO manager is
our own because dagster-polars does not work with polars 2 (see ../shared/DEPENDENCIES.md).

An asset that asks for it (definition metadata ``KEEP_VERSIONS``) keeps every version of each
partition under ``<root>/<key>/versions/<day>/``; the partition's usual path is then the current
version (a hard link to it, so nothing is stored twice) and every reader reads it as before. Raw
deliveries are numbered in arrival order (``delivery-0001``, ``delivery-0002``...); training sets
are named by their content hash (their data version), so identical content is stored once and a
model's run can name the exact file it was trained on.

Every file is written whole or not at all (``atomic_write``): into a temporary file of its own in
the same folder, flushed to disk, then renamed over the old one. A reader sees the old file or
the new one, two writers of one partition leave one of theirs, and a writer killed halfway leaves
the old file as it was.
"""

import contextlib
import datetime
import filecmp
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

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

# Definition metadata of an asset whose every version the lake keeps (LakeIOManager reads it),
# and its values: how versions are named.
KEEP_VERSIONS = "flywheel/keep_versions"
EVERY_DELIVERY = "every delivery, numbered in arrival order"
BY_CONTENT = "every distinct content, named by its hash"
VERSIONS = "versions"
DELIVERY = "delivery-{:04d}"


def content_hash(frame: pl.DataFrame) -> str:
    """SHA-256 of the column names, types and every row's values, in order."""
    digest = hashlib.sha256(str(list(frame.schema.items())).encode())
    if frame.height:
        digest.update(frame.hash_rows(seed=0).to_numpy().tobytes())
    return digest.hexdigest()


class BaselineNotAccepted(LookupError):
    """No baseline has been accepted yet, so there is nothing to compare a batch against."""


def _temporary_file(path: Path) -> tuple[IO[bytes], Path]:
    """A new file next to ``path`` under a name no other writer has (created exclusively)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.partial")
        try:
            # Like tempfile.mkstemp, but with the umask's permissions rather than 0600, so that
            # whoever reads the lake (Feast, a person) can read what is renamed into place.
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        return os.fdopen(descriptor, "wb"), temporary


def _written(path: Path, write: Callable[[IO[bytes]], object]) -> Path:
    """``write`` into a new temporary file next to ``path``, flushed to disk; return its name."""
    out, temporary = _temporary_file(path)
    try:
        with out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def _sync_folder(folder: Path) -> None:
    """Flush a folder's entries to disk, so that a rename in it survives a power cut."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Replace ``path`` with what ``write`` writes, whole or not at all.

    ``write`` fills a temporary file of this writer's own in the same folder, which is flushed
    and fsynced, renamed over ``path`` (``os.replace``: atomic), and the folder fsynced.
    """
    return _replace(_written(path, write), path)


def _replace(temporary: Path, path: Path) -> Path:
    """Rename the finished ``temporary`` over ``path`` (atomic) and make the rename durable."""
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)
    return path


def _claim(temporary: Path, path: Path) -> None:
    """Give the finished ``temporary`` file the name ``path``; FileExistsError if it is taken."""
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: claim the name, then rename over it
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        os.replace(temporary, path)


def _alias(source: Path, path: Path) -> Path:
    """A new temporary file next to ``path`` that is ``source``: a hard link, else a copy."""
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.partial")
        try:
            os.link(source, temporary)
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links
            return _written(path, lambda out: _copy(source, out))
        return temporary


def _copy(source: Path, out: IO[bytes]) -> None:
    with source.open("rb") as data:
        shutil.copyfileobj(data, out)


def write_once(path: Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Create ``path`` whole with what ``write`` writes; FileExistsError if it already exists.

    The same as ``atomic_write`` but for files never replaced once written (versions): the
    temporary file is hard-linked to ``path``, which fails instead of replacing an existing one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _written(path, write)
    try:
        _claim(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _sync_folder(path.parent)
    return path


def publish(source: Path, path: Path) -> Path:
    """Make ``path`` the file ``source`` is, atomically: readers of ``path`` now read it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return _replace(_alias(source, path), path)


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
        """Write a frame atomically: a reader never sees half a file (``atomic_write``)."""
        path = self.dataset_path(asset_key, partition_key)
        return atomic_write(path, lambda out: frame.write_parquet(out, statistics=True))

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

    # Versions: every delivery of a partition kept, the partition's usual path the current one.

    def versions_dir(self, asset_key: AssetKey, partition_key: str | None = None) -> Path:
        """Where every version of an asset (partition) is kept: ``<key>/versions/[<day>/]``."""
        folder = Path(self.root).joinpath(*asset_key.path, VERSIONS)
        return folder / partition_key if partition_key else folder

    def version_path(self, asset_key: AssetKey, partition_key: str | None, version: str) -> Path:
        """The file of one kept version of an asset (partition)."""
        return self.versions_dir(asset_key, partition_key) / f"{version}.parquet"

    def versions(self, asset_key: AssetKey, partition_key: str | None = None) -> list[str]:
        """The kept versions of an asset (partition), by name (deliveries: in arrival order)."""
        folder = self.versions_dir(asset_key, partition_key)
        if not folder.is_dir():
            return []
        return sorted(path.stem for path in folder.glob("*.parquet"))

    def read_version(
        self, asset_key: AssetKey, partition_key: str | None, version: str
    ) -> pl.DataFrame:
        """One kept version of an asset (partition), as it was written."""
        path = self.version_path(asset_key, partition_key, version)
        if not path.exists():
            where = f" partition {partition_key}" if partition_key else ""
            raise FileNotFoundError(
                f"{asset_key.to_user_string()}{where} has no version {version}: {path} is missing"
            )
        return pl.read_parquet(path)

    def current_version(self, asset_key: AssetKey, partition_key: str | None = None) -> str | None:
        """Which kept version readers read now; None if none is (or nothing is stored)."""
        current = self.dataset_path(asset_key, partition_key)
        if not current.exists():
            return None
        for version in reversed(self.versions(asset_key, partition_key)):
            path = self.version_path(asset_key, partition_key, version)
            # The same file (a hard link), or its copy where the file system has no links.
            if os.path.samefile(path, current) or filecmp.cmp(path, current, shallow=False):
                return version
        return None

    def write_delivery(
        self, frame: pl.DataFrame, asset_key: AssetKey, partition_key: str | None = None
    ) -> str:
        """Keep ``frame`` as the partition's next delivery and make it current; return its name.

        Deliveries are numbered in arrival order and never replaced. A partition stored before
        its deliveries were kept becomes ``delivery-0001``, so no delivery is ever lost.
        """
        folder = self.versions_dir(asset_key, partition_key)
        current = self.dataset_path(asset_key, partition_key)
        folder.mkdir(parents=True, exist_ok=True)
        if current.exists() and not self.versions(asset_key, partition_key):
            first = self.version_path(asset_key, partition_key, DELIVERY.format(1))
            adopted = _alias(current, first)
            try:
                _claim(adopted, first)
            except FileExistsError:
                pass  # another writer numbered its delivery first
            finally:
                adopted.unlink(missing_ok=True)
        temporary = _written(folder / "delivery.parquet", lambda out: frame.write_parquet(out))
        number = len(self.versions(asset_key, partition_key)) + 1
        try:
            while True:
                path = self.version_path(asset_key, partition_key, DELIVERY.format(number))
                try:
                    _claim(temporary, path)
                    break
                except FileExistsError:
                    number += 1  # a concurrent delivery took the number
        finally:
            temporary.unlink(missing_ok=True)
        _sync_folder(folder)
        publish(path, current)
        return path.stem

    def keep_by_content(
        self, frame: pl.DataFrame, asset_key: AssetKey, partition_key: str | None = None
    ) -> str:
        """Keep ``frame`` as a version named by its content hash (once); return the hash.

        The current version does not change: ``write_by_content`` also makes it current.
        """
        version = content_hash(frame)
        path = self.version_path(asset_key, partition_key, version)
        if not path.exists():
            # FileExistsError: a concurrent writer stored the same content first.
            with contextlib.suppress(FileExistsError):
                write_once(path, lambda out: frame.write_parquet(out, statistics=True))
        return version

    def write_by_content(
        self, frame: pl.DataFrame, asset_key: AssetKey, partition_key: str | None = None
    ) -> str:
        """Keep ``frame`` by its content hash and make it current; return the hash."""
        version = self.keep_by_content(frame, asset_key, partition_key)
        publish(
            self.version_path(asset_key, partition_key, version),
            self.dataset_path(asset_key, partition_key),
        )
        return version

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
        # A version is written once; an existing one is never overwritten.
        write_once(folder / f"{version}.parquet", lambda out: sample.write_parquet(out))
        write_once(folder / f"{version}.json", lambda out: out.write(body.encode("utf-8")))
        atomic_write(folder / "ACCEPTED", lambda out: out.write(version.encode("utf-8")))
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
        """Write the asset (partition) and add its path to the materialization metadata.

        An asset whose definition metadata asks the lake to keep its versions (``KEEP_VERSIONS``)
        gets a new one that becomes current: a numbered delivery (``EVERY_DELIVERY``) or a file
        named by its content hash (``BY_CONTENT``); its metadata names it and how many are kept.
        """
        if not isinstance(obj, pl.DataFrame):
            raise TypeError(
                f"{context.asset_key.to_user_string()} returned {type(obj).__name__}; "
                "the lake stores polars DataFrames only"
            )
        key = context.asset_key
        partition = context.partition_key if context.has_asset_partitions else None
        keep = context.definition_metadata.get(KEEP_VERSIONS)
        keep = getattr(keep, "value", keep)  # a MetadataValue, or the plain value
        if keep == EVERY_DELIVERY:
            version = self.lake.write_delivery(obj, key, partition)
            names = ("current_delivery", "deliveries_kept", "delivery_path")
        elif keep == BY_CONTENT:
            version = self.lake.write_by_content(obj, key, partition)
            names = ("version", "versions_kept", "version_path")
        else:
            path = self.lake.write_dataset(obj, key, partition)
            context.add_output_metadata({"path": str(path)})
            return
        kept = self.lake.version_path(key, partition, version)
        context.add_output_metadata(
            {
                "path": str(self.lake.dataset_path(key, partition)),
                names[0]: MetadataValue.text(version),
                names[1]: MetadataValue.int(len(self.lake.versions(key, partition))),
                names[2]: MetadataValue.path(kept.relative_to(self.lake.root)),
            }
        )

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
        body = json.dumps(obj, indent=2, sort_keys=True).encode("utf-8")
        path = atomic_write(self._path(context), lambda out: out.write(body))
        context.add_output_metadata(
            {"record": MetadataValue.path(path.relative_to(self.lake.root))}
        )

    def load_input(self, context: InputContext) -> dict[str, Any]:
        """Read the upstream asset's record (of the same partition, for a partitioned one)."""
        return json.loads(self._path(context).read_text(encoding="utf-8"))
