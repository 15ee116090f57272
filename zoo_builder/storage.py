"""The zoo on disk: manifest (JSON), metadata table (Parquet), weights (safetensors).

Layout of a zoo directory (docs/zoo_format.md is the contract):

    manifest.json        format version, config, dataset fingerprints, sha256 of every file,
                         and the sha256 of the manifest itself
    networks.parquet     one row per network checkpoint
    weights/CHUNK.safetensors  the checkpoints of one training chunk, stacked

Nothing is pickled. Every file is written atomically (temporary file, fsync,
rename), so an interrupted build never leaves a half-written file under its
final name. A zoo is complete when its manifest exists; the manifest is written
last.
"""

from __future__ import annotations

import functools
import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from zoo_builder.architecture import DEFAULT_OMEGA0, DEFAULT_PADDING, ArchSpec
from zoo_builder.errors import DomainError
from zoo_builder.files import atomic_path, read_bounded, sha256_file, write_json

FORMAT = "zoobench-zoo"
# 2 added what an imported zoo needs to compute its networks' functions: the table's `padding`
# column and the config's `input_scaling`. A version-1 zoo has neither: SAME, standardised inputs.
# 3 added zoos of INRs (`config.zoo.kind = "inr"`, their own table columns); a zoo without a kind
# is of classifiers.
FORMAT_VERSION = 3
READ_FORMAT_VERSIONS = (1, 2, 3)
MANIFEST = "manifest.json"
TABLE = "networks.parquet"
WEIGHTS_DIR = "weights"
MAX_MANIFEST_BYTES = 64 << 20
# The manifest's own checksum; zoos written before it have none and are read as before.
MANIFEST_CHECKSUM = "manifest_sha256"
# The table columns zoobench itself reads (docs/zoo_format.md lists them all): a table without
# one is refused on load, naming the file, rather than failing deep inside a task.
REQUIRED_COLUMNS = ("network_id", "index", "config_id", "epoch", "final", "family", "depth", "hidden",
                    "max_width", "activation", "dataset", "dataset_base", "optimizer", "test_acc", "gen_gap",
                    "status", "weights_file", "weights_row")
# Those of a zoo of INRs (one SIREN per image): no accuracies, but the image and its reconstruction.
REQUIRED_INR_COLUMNS = ("network_id", "index", "config_id", "epoch", "final", "family", "depth", "hidden",
                        "max_width", "activation", "omega0", "output_offset", "init", "dataset",
                        "dataset_base", "image_split", "image_index", "label", "mse", "psnr", "status",
                        "weights_file", "weights_row")


def zoo_kind(config: dict) -> str:
    """"classifier" or "inr": what a zoo's networks are, from its manifest's config."""
    return config.get("zoo", {}).get("kind", "classifier")


def required_columns(config: dict) -> tuple[str, ...]:
    """The table columns zoobench reads in a zoo of this config's kind."""
    return REQUIRED_INR_COLUMNS if zoo_kind(config) == "inr" else REQUIRED_COLUMNS


class ZooError(DomainError):
    """A zoo directory is missing, corrupted or of another format; the message names the file."""


# --------------------------------------------------------------------------- writes


def write_table(path: Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), tmp)


def write_weights(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    with atomic_path(path) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, tmp, metadata=metadata)


def read_table(path: Path, required: tuple[str, ...] = REQUIRED_COLUMNS) -> pd.DataFrame:
    """A zoo's networks.parquet, refused (naming it) if unreadable or missing a `required` column."""
    try:
        table = pq.read_table(path).to_pandas()
    except (OSError, pa.ArrowException) as e:
        raise ZooError(f"{path}: not a readable Parquet table ({e})") from e
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ZooError(f"{path}: missing column(s) {missing}; expected a zoobench zoo table "
                       "(docs/zoo_format.md lists its columns)")
    return table


def tensor_name(epoch: int, layer: int, param: str) -> str:
    return f"epoch{epoch}/layer{layer}/{param}"


# --------------------------------------------------------------------------- manifest


def manifest_sha256(manifest: dict) -> str:
    """sha256 of a manifest without its own checksum field (JSON, sorted keys; see `json_sha256`).

    The fingerprints cover only the config and the weight files' checksums; this
    covers the rest too (name, datasets, num_networks, shard, library_versions,
    build, source), so a bit flipped anywhere in the file is caught.
    """
    return json_sha256({k: v for k, v in manifest.items() if k != MANIFEST_CHECKSUM})


def write_manifest(root: Path, manifest: dict) -> dict:
    """Write ROOT/manifest.json: `manifest` plus its `manifest_sha256`; return what was written.

    Every writer of zoos calls this, so every new manifest carries its checksum.
    """
    sealed = {**manifest, MANIFEST_CHECKSUM: manifest_sha256(manifest)}
    write_json(Path(root) / MANIFEST, sealed)
    return sealed


def read_manifest(root: Path) -> dict:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise ZooError(f"{path}: missing; {root} is not a complete zoo (an unfinished build? run it again)")
    try:
        raw = read_bounded(path, MAX_MANIFEST_BYTES, "zoo manifest")
    except OSError as e:
        raise ZooError(f"{path}: cannot be read ({e.strerror or e})") from e
    except ValueError as e:
        raise ZooError(str(e)) from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ZooError(f"{path}: not valid JSON ({e}); the file is corrupted") from e
    if not isinstance(doc, dict):
        raise ZooError(f"{path}: not a zoobench zoo manifest (a JSON {type(doc).__name__}, not an object)")
    if doc.get("format") != FORMAT:
        raise ZooError(f"{path}: not a zoobench zoo manifest (format {doc.get('format')!r})")
    if doc.get("format_version") not in READ_FORMAT_VERSIONS:
        raise ZooError(f"{path}: format version {doc.get('format_version')!r}; this zoobench reads "
                       f"{' and '.join(map(str, READ_FORMAT_VERSIONS))}")
    files = doc.get("files")
    if not isinstance(files, dict) or TABLE not in files:
        raise ZooError(f"{path}: has no file checksums")
    for rel in files:
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ZooError(f"{path}: file entry {rel!r} points outside the zoo")
    # The config is recomputed into its fingerprint, so an edited or bit-flipped config (the
    # architectures, input shape and epochs every reader takes from it) is never used.
    if doc.get("config_fingerprint") != json_sha256(doc.get("config")):
        raise ZooError(f"{path}: config does not hash to config_fingerprint; the file is corrupted or edited")
    # Likewise the weights fingerprint, which splits and submissions use to name these networks.
    if doc.get("weights_fingerprint") != weights_fingerprint(files):
        raise ZooError(f"{path}: the weight files' checksums do not hash to weights_fingerprint; "
                       "the file is corrupted or edited")
    # Last, so the fingerprints' more specific messages come first; a manifest without it predates it.
    if MANIFEST_CHECKSUM in doc and doc[MANIFEST_CHECKSUM] != (actual := manifest_sha256(doc)):
        raise ZooError(f"{path}: its content does not hash to {MANIFEST_CHECKSUM} (it hashes to {actual}, "
                       f"the field holds {doc[MANIFEST_CHECKSUM]!r}); the file is corrupted or edited")
    return doc


def weights_fingerprint(files: dict[str, str]) -> str:
    """sha256 over the sorted (name, sha256) of the weight files: identifies a zoo's networks."""
    blob = json.dumps(sorted((k, v) for k, v in files.items() if k.startswith(WEIGHTS_DIR)))
    return hashlib.sha256(blob.encode()).hexdigest()


def json_sha256(doc) -> str:
    """sha256 of a JSON document with sorted keys: how a config's fingerprint is computed."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def verify_files(root: Path, manifest: dict, names: list[str] | None = None) -> list[str]:
    """Problems found checking `names` (default: every file) against the manifest's sha256."""
    root = Path(root)
    problems = []
    for rel in names if names is not None else sorted(manifest["files"]):
        expected = manifest["files"].get(rel)
        path = root / rel
        if expected is None:
            problems.append(f"{path}: not listed in the manifest")
        elif not path.is_file():
            problems.append(f"{path}: missing")
        elif sha256_file(path) != expected:
            problems.append(f"{path}: checksum mismatch (corrupted or modified)")
    return problems


def verify_zoo(root: str | Path) -> list[str]:
    """Every problem with a zoo directory; an empty list means it is intact."""
    try:
        manifest = read_manifest(Path(root))
    except ZooError as e:
        return [str(e)]
    return verify_files(Path(root), manifest)


# --------------------------------------------------------------------------- loading


class Zoo:
    """A zoo on disk: its manifest, its metadata table and lazy access to weights.

    The manifest's and the table's checksums are verified on load; each weights
    file is verified the first time it is read, so corrupted data is never used.
    """

    def __init__(self, root: str | Path, verify: bool = True):
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        source = self.manifest.get("source", {}).get("kind")
        if self.manifest["format_version"] == 1 and source == "smallcnnzoo":
            warnings.warn(
                f"{self.root / MANIFEST}: a Small CNN Zoo imported before format version 2, which reads "
                "its CNNs with SAME padding and standardised inputs; the networks were trained with VALID "
                "padding on inputs in [-1, 1]. Import it again for their own function.", stacklevel=2)
        self._verify = verify
        if verify:
            problems = verify_files(self.root, self.manifest, [TABLE])
            if problems:
                raise ZooError("; ".join(problems))
        self.table = read_table(self.root / TABLE, required_columns(self.manifest["config"]))
        self._row_of: dict[tuple[str, int], int] = {
            (nid, int(e)): i for i, (nid, e) in enumerate(
                zip(self.table["network_id"], self.table["epoch"], strict=True))
        }
        # Imported zoos end their networks at different epochs: the default checkpoint is the final row.
        finals = zip(self.table["network_id"], self.table["final"], strict=True)
        self._final_of: dict[str, int] = {nid: i for i, (nid, f) in enumerate(finals) if f}
        self._verified: set[str] = set()

    def __repr__(self) -> str:
        return f"Zoo({str(self.root)!r}, networks={self.num_networks})"

    @property
    def name(self) -> str:
        return self.manifest["config"]["zoo"]["name"]

    @property
    def kind(self) -> str:
        """"classifier" (MLPs and CNNs trained on a task) or "inr" (one SIREN per image)."""
        return zoo_kind(self.manifest["config"])

    @property
    def num_networks(self) -> int:
        return int(self.table["network_id"].nunique())

    @property
    def weights_fingerprint(self) -> str:
        return self.manifest["weights_fingerprint"]

    @property
    def final(self) -> pd.DataFrame:
        """One row per network: its final checkpoint."""
        return self.table[self.table["final"]].reset_index(drop=True)

    def row(self, network_id: str, epoch: int | None = None) -> pd.Series:
        """A network's table row at a checkpoint epoch (default: its final one, where `final` is true)."""
        i = self._final_of.get(network_id) if epoch is None else self._row_of.get((network_id, int(epoch)))
        if i is None:
            at = "its final checkpoint" if epoch is None else f"epoch {epoch}"
            raise KeyError(f"{self.root}: no network {network_id!r} at {at}")
        return self.table.iloc[i]

    @functools.cached_property
    def _arch_columns(self) -> dict[str, tuple]:
        """network id -> (family, hidden, activation, padding, omega0, output_offset), in one pass (row
        lookups are slow).

        Zoos built by zoobench have no `padding` column: their CNNs are SAME. Only INR
        zoos have `omega0` and `output_offset`.
        """
        f = self.final

        def column(name, default):
            return f[name] if name in f.columns else [default] * len(f)

        columns = (f["family"], f["hidden"], f["activation"], column("padding", DEFAULT_PADDING),
                   column("omega0", DEFAULT_OMEGA0), column("output_offset", 0.0))
        return {nid: (fam, str(hidden), *rest) for nid, fam, hidden, *rest in
                zip(f["network_id"], *columns, strict=True)}

    def arch(self, network_id: str) -> ArchSpec:
        try:
            family, hidden, activation, padding, omega0, output_offset = self._arch_columns[network_id]
        except KeyError:
            raise KeyError(f"{self.root}: no network {network_id!r}") from None
        zoo = self.manifest["config"]["zoo"]
        try:
            input_shape = tuple(zoo["input_shape"])
            return ArchSpec(
                family=family,
                input_shape=input_shape,
                hidden=tuple(int(w) for w in hidden.split("-")),
                # An INR outputs its image's channels; the zoo's labels are not its outputs.
                num_classes=int(input_shape[2] if family == "siren" else zoo["num_classes"]),
                activation=activation,
                padding=padding,
                omega0=float(omega0),
                output_offset=float(output_offset),
            )
        except ValueError as e:
            raise ZooError(f"{self.root / TABLE}: network {network_id}: {e}") from None

    def _open(self, rel: str):
        if self._verify and rel not in self._verified:
            problems = verify_files(self.root, self.manifest, [rel])
            if problems:
                raise ZooError("; ".join(problems))
            self._verified.add(rel)
        try:
            return safe_open(str(self.root / rel), framework="numpy")
        except (SafetensorError, OSError) as e:
            raise ZooError(f"{self.root / rel}: not a readable safetensors file ({e})") from e

    def params(self, network_id: str, epoch: int | None = None) -> list[dict[str, np.ndarray]]:
        """Canonical parameters (numpy, unpadded) of a network at a checkpoint (default: final)."""
        row = self.row(network_id, epoch)
        arch = self.arch(network_id)
        shapes = arch.layer_shapes()
        r = int(row["weights_row"])
        layers = []
        with self._open(row["weights_file"]) as f:
            for i, (kshape, bshape) in enumerate(shapes):
                layer = {}
                for param, shape in (("kernel", kshape), ("bias", bshape)):
                    sl = f.get_slice(tensor_name(int(row["epoch"]), i, param))
                    crop = tuple(slice(0, s) for s in shape)
                    layer[param] = np.asarray(sl[(slice(r, r + 1), *crop)])[0]
                layers.append(layer)
        return layers


def load_zoo(path: str | Path, verify: bool = True) -> Zoo:
    """Open the zoo at `path`: its table now, any network's parameters on demand."""
    return Zoo(path, verify=verify)
