"""Fit results as self-describing :class:`xarray.DataTree` files.

Groups: ``posterior``, ``posterior_predictive``, ``log_likelihood``, ``sample_stats``, ``observed_data``,
``constant_data`` (the law inputs), ``prior``, ``prior_predictive`` and ``references`` (published constants over the
dimension ``source``). The root attrs carry the provenance: law id, law file text and hash, data hash, priors,
likelihood, sampler settings, diagnostics, package versions; so a saved fit reloads and predicts identically.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import platform
import signal
import tempfile
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from bayescale.errors import ArgumentError, FileError

__all__ = ["save", "load", "provenance", "attr_json", "law_of", "check_destination", "content_hash"]

_PACKAGES = ("bayescale", "jax", "jaxlib", "numpyro", "arviz-base", "arviz-stats", "xarray", "numpy")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def law_data_attrs(law, ds: xr.Dataset, statistics: dict[str, float], noise_names) -> dict[str, Any]:
    """Root attributes every result carries about its law and data (law text and hash, data hash, shape, statistics),
    shared by :func:`bayescale.fit` and :func:`bayescale.validation.baseline.fit_baseline`."""
    return {
        "law_id": law.id,
        "law_title": law.title,
        "law_formula": law.formula or "<python function>",
        "law_citation": law.citation,
        "law_hash": law.source_hash,
        "law_source": law.source_text or "",
        "data_hash": ds.attrs.get("data_hash", ""),
        "data_source": ds.attrs.get("source", ""),
        "data_columns": ds.attrs.get("columns", ""),
        "n_points": int(ds.sizes["point"]),
        "n_runs": int(np.unique(ds["run"].values).size),
        "inputs": json.dumps(list(law.input_names)),
        "parameters": json.dumps(list(law.parameter_names)),
        "noise_parameters": json.dumps(list(noise_names)),
        "data_statistics": json.dumps(statistics),
        "versions": json.dumps(versions()),
    }


def attr_json(dt: xr.DataTree, key: str, default: Any = None) -> Any:
    """Read a JSON-encoded root attribute of a result."""
    raw = dt.attrs.get(key)
    return default if raw is None else json.loads(raw)


def provenance(dt: xr.DataTree) -> dict[str, Any]:
    """The provenance of a result as a plain dict (JSON attrs decoded)."""
    out = {}
    for key, value in dt.attrs.items():
        if isinstance(value, str) and value[:1] in "[{":
            try:
                out[key] = json.loads(value)
                continue
            except json.JSONDecodeError:
                pass
        out[key] = value
    return out


# ---------------------------------------------------------------------------------------------------------
# Files: checked destinations, atomic writes, no temp file left behind, a content checksum verified on load
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"  # every netCDF-4 file (HDF5 format spec, "Format Signature")
_CHECKSUM_ATTR = "content_sha256"
_LIVE_TEMPS: set[Path] = set()  # temp files this process is writing, removed on exit or SIGTERM


def _remove_live_temps() -> None:
    for tmp in list(_LIVE_TEMPS):
        tmp.unlink(missing_ok=True)
        _LIVE_TEMPS.discard(tmp)


atexit.register(_remove_live_temps)


def _value_bytes(values: np.ndarray) -> bytes:
    """Bytes of an array that survive a netCDF round trip (numbers as int64/float64, anything else as text)."""
    values = np.asarray(values)
    if values.dtype.kind in "biu":
        return np.ascontiguousarray(values, dtype=np.int64).tobytes()
    if values.dtype.kind == "f":
        return np.ascontiguousarray(values, dtype=np.float64).tobytes()
    if values.dtype.kind == "M":
        return np.ascontiguousarray(values.astype("datetime64[ns]").view(np.int64)).tobytes()
    return "\x00".join(map(str, values.ravel())).encode()


def _attr_text(value: Any) -> str:
    if isinstance(value, (str, bytes)):
        return value.decode() if isinstance(value, bytes) else value
    return json.dumps(np.asarray(value).tolist())


def content_hash(dt: xr.DataTree) -> str:
    """sha256 of a result's content: every group's variables and coordinates (names, shapes, values) and attributes,
    except the stored checksum itself. Equal before :func:`save` and after :func:`load`."""
    h = hashlib.sha256()
    for node in sorted(dt.subtree, key=lambda n: n.path):
        h.update(f"\x01{node.path}".encode())
        attrs = {k: v for k, v in node.attrs.items() if k != _CHECKSUM_ATTR}
        for key in sorted(attrs):
            h.update(f"\x02{key}={_attr_text(attrs[key])}".encode())
        ds = node.to_dataset(inherit=False)
        for name in sorted(map(str, ds.variables)):
            var = ds.variables[name]
            h.update(f"\x03{name}{var.dims}{var.shape}".encode())
            h.update(_value_bytes(var.values))
    return h.hexdigest()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_destination(path: str | os.PathLike, *, inputs=(), what: str = "output", folder: bool = False) -> Path:
    """Check that ``path`` can and may be written, before any work: not one of ``inputs``, not a folder (or, with
    ``folder=True``, not a file), its parent a writable folder (created if missing); an existing file at a result
    path must be a netCDF (HDF5) file, so that a CSV or a text file is never replaced by a fit.

    Raises
    ------
    FileError
        Naming the path and what is wrong with it.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ArgumentError(f"{what} path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    for source in inputs:
        if source is not None and isinstance(source, (str, os.PathLike)) and (
                _same_file(path, Path(source)) or path.resolve() == Path(source).resolve()):
            raise FileError(f"{what} {str(path)!r} is also an input: writing it would destroy {str(source)!r}; "
                            "choose another path")
    if folder:
        if path.exists() and not path.is_dir():
            raise FileError(f"{what} {str(path)!r} exists and is a file, not a folder; choose a folder")
        parent = path
    else:
        if path.is_dir():
            raise FileError(f"{what} {str(path)!r} is a folder; give a file path such as {str(path / 'fit.nc')!r}")
        if path.exists():
            with open(path, "rb") as fh:
                if fh.read(len(_HDF5_SIGNATURE)) != _HDF5_SIGNATURE:
                    raise FileError(f"{what} {str(path)!r} exists and is not a netCDF result; refusing to overwrite "
                                    "it (remove it or choose another path)")
        parent = path.parent
    for above in [parent, *parent.parents]:  # the nearest existing ancestor must be a folder
        if above.exists():
            if not above.is_dir():
                raise FileError(f"cannot write {what} {str(path)!r}: {str(above)!r} is a file, not a folder")
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.probe.", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise FileError(f"cannot write {what} {str(path)!r}: folder {str(parent)!r} is not writable "
                        f"({err.strerror or err})") from None
    return path


def _remove_stale_temps(folder: Path, name: str) -> None:
    """Temp files of earlier saves to ``name`` whose process is gone (killed with SIGKILL, power loss)."""
    for tmp in folder.glob(f".{name}.*.tmp"):
        try:
            pid = int(tmp.name[len(name) + 2:].split(".")[0])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except OSError:  # a live process of another user: not ours to remove
            pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _TerminateOnSignal:
    """While saving in the main thread, turn SIGTERM / SIGHUP into an exception so that the ``finally`` that removes
    the temp file runs (the default action would end the process at once)."""

    _signals = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))

    def __enter__(self):
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in self._signals:
                try:
                    self.previous[sig] = signal.signal(sig, self._raise)
                except (ValueError, OSError):
                    pass
        return self

    @staticmethod
    def _raise(signum, frame):
        raise SystemExit(128 + signum)

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False


def save(dt: xr.DataTree, path: str | os.PathLike, *, inputs=()) -> Path:
    """Write a result to netCDF atomically: a temporary file in the same folder, then an atomic rename.

    The destination is checked first (:func:`check_destination`; ``inputs`` are paths it must not be). An interrupted
    or failed write never leaves a half-written file at ``path`` (an older file there is kept) nor a temporary file
    (removed on exceptions, SIGTERM/SIGHUP and interpreter exit; after a SIGKILL, by the next save to that path). The
    file gets the permissions of a newly created file (0666 minus the umask) and a content checksum
    (``attrs["content_sha256"]``) that :func:`load` verifies.

    Raises
    ------
    ArgumentError
        ``dt`` is not a result (a DataFrame, a Dataset, ...).
    FileError
        The destination is a folder, under a file, not writable, one of ``inputs``, or a file that is not a result.
    """
    if not isinstance(dt, xr.DataTree):
        raise ArgumentError(f"save needs a fit result (xarray.DataTree), got {type(dt).__name__}")
    path = check_destination(path, inputs=inputs)
    _remove_stale_temps(path.parent, path.name)
    out = dt.copy()
    out.attrs = {**dt.attrs, _CHECKSUM_ATTR: content_hash(dt)}
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    _LIVE_TEMPS.add(tmp)
    try:
        with _TerminateOnSignal():
            out.to_netcdf(tmp, engine="h5netcdf")
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
    except OSError as err:
        raise FileError(f"cannot write {str(path)!r}: {err.strerror or err}") from None
    finally:
        tmp.unlink(missing_ok=True)
        _LIVE_TEMPS.discard(tmp)
    return path


def load(path: str | os.PathLike) -> xr.DataTree:
    """Load a result saved by :func:`save` fully into memory (the file is closed afterwards), verifying its content
    checksum.

    Raises
    ------
    FileError
        Missing file, a folder, not a netCDF file (a CSV, a text file), truncated or corrupt, not a bayescale result,
        or content that does not match the stored checksum.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ArgumentError(f"load needs a path (str or os.PathLike), got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise FileError(f"{str(path)!r} is a folder, not a fit result (.nc file)")
    if not path.is_file():
        raise FileError(f"no fit result at {str(path)!r}")
    with open(path, "rb") as fh:
        head = fh.read(len(_HDF5_SIGNATURE))
    if head != _HDF5_SIGNATURE:
        raise FileError(f"{str(path)!r} is not a netCDF file (a fit result is written by `bayescale fit --out` or "
                        "bayescale.save; is it the run table?)")
    try:
        with xr.open_datatree(path, engine="h5netcdf") as dt:
            loaded = dt.load().copy()
    except Exception as err:  # h5py / HDF5 raise OSError, KeyError, ValueError... on damaged files
        raise FileError(f"cannot read {str(path)!r}: the file is truncated or corrupt ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else 'no detail'})") from None
    if "law_id" not in loaded.attrs:
        raise FileError(f"{str(path)!r} is not a bayescale result (no 'law_id' attribute)")
    stored = loaded.attrs.get(_CHECKSUM_ATTR)
    if stored is not None and stored != content_hash(loaded):
        raise FileError(f"{str(path)!r} is corrupt: its content does not match the checksum stored when it was saved "
                        "(the file was damaged or edited); refit or restore it from a copy")
    return loaded


#: Result kinds whose posterior is over the parameters of one law of its inputs (what predict and plan evaluate).
LAW_KINDS = ("law", "law_batch_member", "baseline")


def law_of(dt: xr.DataTree, law=None, needed_by: str = "predict"):
    """The law of a result: ``law`` if given, else rebuilt from the law file text stored in the result.

    Results of other kinds (schedule laws, per-token, shape, critical batch) raise one
    :class:`~bayescale.results.contract.ResultError` that names the read-out ``needed_by`` and what to use instead."""
    from bayescale.results.contract import require, result_kind
    from bayescale.laws.catalogue import LawError, parse_law_text

    if result_kind(dt) not in LAW_KINDS:
        require(dt, needed_by)
    if law is not None:
        return law
    text = dt.attrs.get("law_source")
    if not text:
        raise LawError(
            f"result of law {dt.attrs.get('law_id')!r} stores no law file (a Python-function law); pass law=..."
        )
    return parse_law_text(text, origin=f"result of {dt.attrs.get('law_id')}")


def posterior_arrays(dt: xr.DataTree, names) -> dict[str, np.ndarray]:
    """Posterior draws flattened over (chain, draw)."""
    post = dt["posterior"].to_dataset()
    return {n: post[n].values.reshape(-1) for n in names}
