"""Where data lives: local paths, and object-store URLs (``s3://``, ``gs://``, any protocol fsspec knows).

The one owner of URLs and filesystems. A string is a URL when it starts with ``PROTOCOL://`` and the
protocol is not ``file`` (``file://`` paths and plain paths stay local and keep going through the
local code paths unchanged). A URL's filesystem is fsspec's, built from the config's
``storage_options:`` (:func:`configure`) on top of each store's own credential chain (s3fs and gcsfs
read the environment, including ``AWS_ENDPOINT_URL`` and ``AWS_DEFAULT_REGION``, profiles and
instance roles); a missing optional dependency is one line naming the extra to install.

Credentials never reach a message: every error about a store passes through :func:`_scrub`,
which blanks the values of ``storage_options`` out of it, and no URL object carries them (a URL with a
password is refused). What is a credential is decided here (:func:`is_secret`); tasks elsewhere get
:func:`shareable` options only.

Bytes read from stores are counted (:func:`bytes_read`) where fsspec fetches them, so a run can
report what each stage read (the keys pass of Parquet reads the score column, not the file).
"""

from __future__ import annotations

import errno
import hashlib
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from reorder_cli.errors import ReorderError

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: Protocol -> the extra of ``pip install 'reorder[EXTRA]'`` that brings its filesystem.
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}
#: Block a sequential (streamed) read fetches at once.
STREAM_BLOCK = 8 << 20

_options: dict[str, Any] = {}
_read: dict[str, int] = {}  # bytes fetched from stores, by stage
_stage = ["other"]
_lock = threading.Lock()


# ------------------------------------------------------------------ what is a URL


def protocol(text: str | Path | URL) -> str | None:
    """The protocol of a URL (``s3``), or None for a local path (``file://`` included)."""
    if isinstance(text, URL):
        return text.protocol
    if isinstance(text, Path):
        return None
    m = _URL.match(text)
    return m.group(1).lower() if m and m.group(1).lower() != "file" else None


def is_url(text: str | Path | URL) -> bool:
    return protocol(text) is not None


def local(text: str) -> Path:
    """A local path, ``file://`` removed."""
    return Path(text[len("file://"):]) if text.lower().startswith("file://") else Path(text)


class URL:
    """An object in a store, named by its URL. Quacks like the few :class:`Path` members the
    pipeline uses on an input (``name``, ``resolve()``, ``absolute()``, ``parents``), and has no
    ``__fspath__``, so that code meant for local files fails loudly rather than reading a wrong path.
    ``version`` (an ETag, a generation or a modification time) and ``size`` are what the store said at
    discovery."""

    __slots__ = ("size", "url", "version")

    def __init__(self, url: str, version: str | None = None, size: int | None = None):
        self.url = url
        self.version = version
        self.size = size

    @property
    def protocol(self) -> str:
        return protocol(self.url) or ""

    @property
    def name(self) -> str:
        return self.url.rstrip("/").rpartition("/")[2]

    @property
    def parents(self) -> tuple:
        return ()

    @property
    def parent(self) -> URL:
        return URL(self.url.rstrip("/").rpartition("/")[0])

    def resolve(self) -> URL:
        return self

    def absolute(self) -> URL:
        return self

    def __truediv__(self, part: str) -> URL:
        return URL(self.url.rstrip("/") + "/" + part)

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"URL({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, URL) and other.url == self.url

    def __lt__(self, other: URL) -> bool:
        return self.url < other.url

    def __hash__(self) -> int:
        return hash(self.url)


def location(text: str | Path | URL) -> Path | URL:
    """A local :class:`Path` or a :class:`URL`."""
    if isinstance(text, (Path, URL)):
        return text
    return URL(text) if is_url(text) else local(text)


def beside(folder: Path | URL, recorded: str) -> Path | URL:
    """A path recorded relative to ``folder`` (a manifest's input), or the URL or absolute path recorded
    as it is (the local inputs of an output on a store are recorded absolute)."""
    if is_url(recorded):
        return URL(recorded)
    return Path(recorded).resolve() if Path(recorded).is_absolute() or isinstance(folder, URL) else \
        (folder / recorded).resolve()


# ------------------------------------------------------------------ filesystems


def configure(options: Mapping[str, Any] | None) -> None:
    """Set the ``storage_options:`` every filesystem of this process is built with. A key named after a
    protocol whose value is a mapping (``s3: {...}``) applies to that protocol alone."""
    global _options
    _options = dict(options or {})


#: ``storage_options`` keys that say where a store is and how to reach it, never who you are: the only
#: ones a task in another process gets (``run.json``); credentials come from its store's own chain.
SHAREABLE = frozenset({"endpoint_url", "anon", "requester_pays", "use_ssl", "version_aware", "project",
                       "region_name", "client_kwargs", "config_kwargs", "verify", "profile"})

#: Parts of an option's name (lower case, ``_`` and ``-`` left out) that make its value a credential, at
#: any depth: s3fs's ``key``, ``secret``, ``token``, ``password``, ``username``; botocore's
#: ``aws_access_key_id``, ``aws_secret_access_key``, ``aws_session_token`` (``client_kwargs``); gcsfs's
#: ``token``; adlfs's ``account_key``, ``sas_token``, ``client_secret``, ``connection_string``; HTTP
#: ``headers`` such as ``Authorization``, ``X-Api-Key``, cookies (fsspec itself marks ``password``).
SECRET_WORDS = ("key", "secret", "token", "password", "passwd", "credential", "auth", "username",
                "connectionstring", "cookie")
_PASSWORD_IN_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/@\s]*:[^/@\s]*)@")


def is_secret(name: str, value: Any = None) -> bool:
    """Whether option ``name`` holds a credential (:data:`SECRET_WORDS`), or ``value`` is a URL with a
    password in it (``http://user:password@host``)."""
    plain = name.lower().replace("_", "").replace("-", "")
    in_url = isinstance(value, str) and _PASSWORD_IN_URL.match(value) is not None
    return in_url or any(word in plain for word in SECRET_WORDS)


def secret_names(options: Any, prefix: str = "storage_options") -> list[str]:
    """The dotted names of the credentials in ``options`` (at every depth), in order."""
    found: list[str] = []
    if isinstance(options, Mapping):
        for key, value in options.items():
            name = f"{prefix}.{key}"
            found += [name] if is_secret(str(key), value) else secret_names(value, name)
    elif isinstance(options, (list, tuple)):
        for k, value in enumerate(options):
            found += [f"{prefix}[{k}]"] if is_secret("", value) else secret_names(value, f"{prefix}[{k}]")
    return found


def without_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part (if any) blanked."""
    return _PASSWORD_IN_URL.sub(lambda m: m.group(1) + m.group(2).partition(":")[0] + ":***@", url)


def shareable(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """What may be written into the work folder for tasks elsewhere: the :data:`SHAREABLE` keys of
    ``storage_options`` (and of a protocol's own mapping), less every credential inside them
    (:func:`is_secret`: ``client_kwargs``' ``aws_secret_access_key``, an endpoint with a password ...)."""
    out: dict[str, Any] = {}
    for key, value in (options or {}).items():
        if is_secret(key, value):
            continue
        if isinstance(value, Mapping) and key in _PROTOCOL_KEYS:
            out[key] = shareable(value)
        elif key in SHAREABLE:
            out[key] = _public(value)
    return out


def _public(value: Any) -> Any:
    """``value`` less every credential at any depth."""
    if isinstance(value, Mapping):
        return {k: _public(v) for k, v in value.items() if not is_secret(str(k), v)}
    if isinstance(value, (list, tuple)):
        return [_public(v) for v in value if not is_secret("", v)]
    return value


#: Protocol names whose mapping in ``storage_options`` applies to that protocol alone.
_PROTOCOL_KEYS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "hf", "http", "https"})


def options_for(proto: str) -> dict[str, Any]:
    shared = {k: v for k, v in _options.items() if not (isinstance(v, Mapping) and k in EXTRAS)}
    own = _options.get(proto)
    return {**shared, **(dict(own) if isinstance(own, Mapping) else {})}


def filesystem(url: str | URL) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) of ``url``; one line naming the extra when it is missing."""
    url = str(url)
    proto = protocol(url)
    if proto is None:
        raise ValueError(f"{url}: not a URL")
    if _PASSWORD_IN_URL.match(url):
        raise ReorderError(f"{without_password(url)}: a password in a URL would be written into the manifest, "
                           "run.json and the cluster's scripts; remove it and give the credentials through the "
                           "store's chain (the environment, a profile) or storage_options")
    extra = EXTRAS.get(proto)
    hint = f"install the extra: pip install 'reorder[{extra}]'" if extra else None
    try:
        import fsspec

        cls = fsspec.get_filesystem_class(proto)
    except ImportError as exc:
        raise ReorderError(f"{url}: {hint or _first_line(exc)}") from None
    except ValueError:
        raise ReorderError(f"{url}: unknown storage protocol '{proto}' (local paths need no protocol; "
                           "s3://, gs:// and the other fsspec protocols are read)") from None
    try:
        fs = cls(**options_for(proto))
    except ImportError as exc:
        raise ReorderError(f"{url}: {hint or _first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - a bad storage option: one line, without its values
        raise ReorderError(f"{url}: cannot set up the {proto} store from storage_options: "
                           f"{_scrub(_first_line(exc))}") from None
    return fs, cls._strip_protocol(url)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _secrets() -> list[str]:
    found: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, Mapping):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, str) and _PASSWORD_IN_URL.match(v):
            found.append(_PASSWORD_IN_URL.match(v).group(2).partition(":")[2] or "\0")
        elif isinstance(v, str) and len(v) >= 4 and not v.startswith(("http://", "https://")):
            found.append(v)
        elif isinstance(v, int) and not isinstance(v, bool) and len(str(v)) >= 4:
            found.append(str(v))

    walk(_options)
    return sorted(found, key=len, reverse=True)


def _scrub(text: str) -> str:
    """``text`` with every value of ``storage_options`` (but endpoints, whose passwords are) blanked out."""
    for secret in _secrets():
        text = text.replace(secret, "***")
    return text


def error(url: str | URL, exc: BaseException) -> ReorderError:
    """One line about a failed store operation on ``url``, with no credential in it."""
    why = _scrub(_first_line(exc))
    if isinstance(exc, FileNotFoundError):
        return ReorderError(f"{url}: not found ({why})" if why and why != str(url) else f"{url}: not found")
    if isinstance(exc, PermissionError):
        return ReorderError(f"{url}: access denied ({why}); check the credentials (storage_options, the "
                            "environment, the profile)")
    return ReorderError(f"{url}: {why}")


@contextmanager
def errors(url: str | URL) -> Iterator[None]:
    """Turn any failure of a store operation into :func:`error`'s one line."""
    try:
        yield
    except ReorderError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the store raised (botocore, aiohttp, OSError ...)
        raise error(url, exc) from None


def info(url: str | URL) -> dict[str, Any]:
    fs, path = filesystem(url)
    with errors(url):
        return fs.info(path)


def version(meta: Mapping[str, Any]) -> str | None:
    """What changes when an object is replaced: its ETag (S3, GCS), generation, or modification time."""
    for key in ("ETag", "etag", "generation", "md5Hash", "LastModified", "mtime", "updated", "last_modified"):
        if meta.get(key) not in (None, ""):
            return f"{key.lower()}:{str(meta[key]).strip(chr(34))}"
    return None


def fingerprint(url: URL) -> str:
    """The fingerprint of an object: its size and version as the store reported them at discovery
    (asked again when not known); no byte of it is read."""
    size, known = url.size, url.version
    if size is None or known is None:
        meta = info(url)
        size, known = meta.get("size"), version(meta) or ""
    return "store:" + hashlib.sha256(f"{size}\n{known}".encode()).hexdigest()


# ------------------------------------------------------------------ reading


def _count(n: int) -> None:
    with _lock:
        _read[_stage[0]] = _read.get(_stage[0], 0) + n


@contextmanager
def reading(stage: str) -> Iterator[None]:
    """Count the bytes fetched from stores inside the block (by any thread) under ``stage``; the
    innermost block wins."""
    before, _stage[0] = _stage[0], stage
    try:
        yield
    finally:
        _stage[0] = before


def total_read() -> int:
    """Bytes fetched from stores by this process so far, all stages."""
    with _lock:
        return sum(_read.values())


def bytes_read() -> dict[str, int]:
    """Bytes fetched from stores by this process so far, by stage (a copy)."""
    with _lock:
        return dict(_read)


def _counted(fetch):
    def fetched(start, end):
        data = fetch(start, end)
        _count(len(data))
        return data
    return fetched


def open_url(url: str | URL, mode: str = "rb", sequential: bool = False) -> IO[bytes]:
    """A file object of ``url``. Reads fetch exactly the byte ranges asked for (a Parquet footer and
    column chunks: a column projection reads that column alone), or with ``sequential`` blocks of
    :data:`STREAM_BLOCK` read ahead; every fetched byte is counted. Writing is possible (``mode="wb"``)
    but nothing writes to a store yet."""
    fs, path = filesystem(url)
    with errors(url):
        if "r" not in mode:
            return fs.open(path, mode)
        fh = fs.open(path, mode, cache_type="readahead" if sequential else "none",
                     block_size=STREAM_BLOCK if sequential else None)
    cache = getattr(fh, "cache", None)
    if cache is not None and hasattr(cache, "fetcher"):
        cache.fetcher = _counted(cache.fetcher)
    return fh


def source(path: str | Path | URL, sequential: bool = False) -> str | IO[bytes]:
    """What pyarrow and polars read: a local path as a string (their own file code, unchanged), a
    URL as an open file object (:func:`open_url`)."""
    return open_url(path, sequential=sequential) if is_url(path) else str(path)


def sources(paths: list) -> list:
    """What polars reads several files from: their paths when all are local (unchanged), else an open
    file object each (polars takes a list of one kind)."""
    if not any(is_url(p) for p in paths):
        return [str(p) for p in paths]
    return [open_url(p) if is_url(p) else open(p, "rb") for p in paths]  # noqa: SIM115 - closed by the reader


def input_stream(path: str | Path | URL, compression: str | None):
    """A pyarrow input stream over ``path`` (decompressing ``compression``), read front to back."""
    import pyarrow as pa

    return pa.input_stream(source(path, sequential=True), compression=compression)


# ------------------------------------------------------------------ listing


def listing(url: str) -> tuple[list[URL], str]:
    """(every object under a URL folder or matching a URL glob, with its size and version; "glob",
    "folder" or "file"), sorted by URL. Objects under a hidden folder (``.reorder``) are left out."""
    fs, path = filesystem(url)
    proto = protocol(url)
    with errors(url):
        if any(ch in path for ch in "*?["):
            found, kind = fs.glob(path, detail=True), "glob"
            if not found:
                fs.info(path.split("/")[0])  # a missing bucket is "not found", not an empty match
            fixed = re.split(r"[*?\[]", path, maxsplit=1)[0].rpartition("/")[0]
        else:
            meta = fs.info(path)
            if meta.get("type") != "directory":
                return [_url(proto, meta)], "file"
            found, kind, fixed = fs.find(path, detail=True), "folder", path.rstrip("/")
    out = []
    for name, meta in sorted(found.items()):
        rel = name[len(fixed):].lstrip("/") if name.startswith(fixed) else name
        if meta.get("type") == "directory" or any(part.startswith(".") for part in rel.split("/")):
            continue
        out.append(_url(proto, {**meta, "name": name}))
    return out, kind


def _url(proto: str | None, meta: Mapping[str, Any]) -> URL:
    return URL(f"{proto}://{meta['name']}", version(meta), int(meta.get("size") or 0))


# ------------------------------------------------------------------ files and objects alike (outputs)


def is_file(p: Path | URL) -> bool:
    if not isinstance(p, URL):
        return Path(p).is_file()
    fs, path = filesystem(p)
    with errors(p):
        fs.invalidate_cache(path)
        return bool(fs.isfile(path))


def size(p: Path | URL) -> int:
    return Path(p).stat().st_size if not isinstance(p, URL) else int(info(p).get("size") or 0)


def names(folder: Path | URL) -> list[str]:
    """The names of the files directly inside ``folder`` (objects under the prefix ``folder/``), sorted;
    none when it does not exist. A missing bucket or refused credentials are one line naming the URL."""
    if not isinstance(folder, URL):
        return sorted(p.name for p in Path(folder).iterdir() if p.is_file()) if Path(folder).is_dir() else []
    fs, path = filesystem(folder)
    with errors(folder):
        fs.invalidate_cache(path)
        fs.info(path.split("/")[0])  # the bucket: "not found" or "access denied" here, not an empty folder
        try:
            found = fs.ls(path, detail=True)
        except FileNotFoundError:
            return []
    return sorted(m["name"].rstrip("/").rpartition("/")[2] for m in found if m.get("type") != "directory")


def open_read(p: Path | URL) -> IO[bytes]:
    """A file or an object opened for reading front to back."""
    return open_url(p, sequential=True) if isinstance(p, URL) else open(p, "rb")  # noqa: SIM115 - the caller closes


def read_bytes(p: Path | URL) -> bytes:
    with open_read(p) as fh, errors(p):
        return fh.read()


def object_version(url: URL) -> str | None:
    """The version of an object now (its ETag ...), None when there is no such object."""
    meta = _fresh_info(url)
    return None if meta is None else f"{meta.get('size')}:{version(meta)}"


def _fresh_info(url: URL) -> dict | None:
    """An object's metadata as the store holds it now (the listing cache dropped); None when there is none."""
    fs, path = filesystem(url)
    with errors(url):
        fs.invalidate_cache(path)
        try:
            return fs.info(path)
        except FileNotFoundError:
            return None


def remove(url: URL) -> None:
    """Delete an object (nothing when there is none)."""
    fs, path = filesystem(url)
    with errors(url):
        with suppress(FileNotFoundError):
            fs.rm_file(path)
        fs.invalidate_cache(path)


def write_bytes(url: URL, data: bytes) -> None:
    """One object written whole by a single request (a PUT): it appears complete, or not at all."""
    fs, path = filesystem(url)
    with errors(url):
        fs.pipe_file(path, data)
        fs.invalidate_cache(path)


#: The part size of an upload (S3 takes parts of 5 MiB at least, but the last).
UPLOAD_BLOCK = 8 << 20


def upload(local_path: Path, url: URL, fault=lambda written: None) -> None:
    """Copy a local file to the object ``url``, streamed in parts of :data:`UPLOAD_BLOCK`.

    An exception (or a kill) before the end never completes the upload: the file object is opened with
    ``autocommit=False``, so closing it does not make the object appear; :meth:`commit` does, once
    every byte was written; on an error :meth:`discard` aborts the multipart upload. (A plain
    ``with fs.open(url, "wb")`` would commit what was written so far when the block exits on an
    exception: fsspec's ``__exit__`` closes, and closing commits.) ``fault(written)`` is the tests'
    hook, called after each part was written."""
    fs, path = filesystem(url)
    with errors(url):
        fh = fs.open(path, "wb", autocommit=False, block_size=UPLOAD_BLOCK)
        if not (hasattr(fh, "commit") and hasattr(fh, "discard")):  # a store without transactions
            fh.close()
            fs.put_file(str(local_path), path)
            return
        try:
            with open(local_path, "rb") as src:
                written = 0
                while chunk := src.read(UPLOAD_BLOCK):
                    fh.write(chunk)
                    written += len(chunk)
                    fault(written)
            fh.close()
            fh.commit()
        except BaseException:
            fh.discard()
            fh.closed = True  # never closed (and so never flushed) again, by the garbage collector either
            raise
        finally:
            fs.invalidate_cache(path)


# ------------------------------------------------------------------ server-side copies (publishing)


def same_store(a: Path | URL | None, b: Path | URL | None) -> bool:
    """Whether ``a`` and ``b`` are objects of one store, reached with the same options: an object of one
    can be copied to the other by the store itself (:func:`copy`)."""
    return isinstance(a, URL) and isinstance(b, URL) and filesystem(a)[0] is filesystem(b)[0]


#: What a store says of an object's bytes, by the key of its metadata: S3's ETag is the MD5 of the object,
#: or of its parts' MD5s ("...-N"); GCS's md5Hash and crc32c. An ETag that is not one of these (GCS's, a
#: generation's) is left out: it says which version, not which bytes.
CONTENT_KEYS = ("ETag", "md5Hash", "crc32c")


def content_tag(url: URL) -> tuple[int, str | None] | None:
    """(size, the store's checksum of the object's bytes or None) of an object, from its metadata (no byte
    of it is read); None when there is no such object. Two objects with the same checksum hold the same
    bytes (:data:`CONTENT_KEYS`); S3 objects encrypted with KMS keys have ETags that are not checksums."""
    meta = _fresh_info(url)
    if meta is None:
        return None
    tag = next((f"{k}:{str(meta[k]).strip(chr(34))}" for k in CONTENT_KEYS if meta.get(k) not in (None, "")), None)
    return int(meta.get("size") or 0), tag


def copy(src: URL, dst: URL) -> None:
    """Copy the object ``src`` to ``dst`` on the same store (:func:`same_store`), by the store itself: no
    byte passes through this process. On S3, parts are copied at the source's own part boundaries
    (UploadPartCopy, s3fs's ``preserve_etag``), so the copy has the source's ETag (a whole-object
    CopyObject would get the MD5 of the whole: another ETag for a multipart source); other stores copy
    their way (GCS: a rewrite). A copy that fails is never completed, and its multipart upload is aborted."""
    fs, source = filesystem(src)
    _, path = filesystem(dst)
    with errors(dst):
        try:
            protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
            fs.cp_file(source, path, **({"preserve_etag": True} if "s3" in protocols else {}))
        except BaseException:
            _abort_uploads(fs, path)
            raise
        finally:
            fs.invalidate_cache(path)


def _abort_uploads(fs: Any, path: str) -> None:
    """Abort the multipart uploads pending under the key ``path`` (an S3 copy that failed half way: s3fs
    leaves its upload open); nothing on a store without them."""
    if not hasattr(fs, "call_s3"):
        return
    bucket, _, key = path.partition("/")
    with suppress(Exception):  # the copy's own error is the one to report
        pending = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key).get("Uploads") or []
        for upload in (u for u in pending if u["Key"] == key):  # a loop over the few uploads of one key
            fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload["UploadId"])


# ------------------------------------------------------------------ a work folder on a store


def read_or_none(url: URL) -> bytes | None:
    """An object's bytes, or None when there is no such object (one request)."""
    fs, path = filesystem(url)
    with errors(url):
        try:
            data = fs.cat_file(path)
        except FileNotFoundError:
            return None
    _count(len(data))
    return data


def download(url: URL, local_path: Path) -> bool:
    """Copy an object to ``local_path``, which appears only once complete (a temporary beside it, then a
    rename); False when there is no such object."""
    from reorder_cli.util import atomic  # util/atomic is local files only; imported here, where both meet

    fs, path = filesystem(url)
    local_path.parent.mkdir(parents=True, exist_ok=True)
    with errors(url):
        try:
            with atomic.open_atomic(local_path, "wb") as out, fs.open(path, "rb", block_size=STREAM_BLOCK,
                                                                      cache_type="readahead") as src:
                while chunk := src.read(STREAM_BLOCK):
                    out.write(chunk)
                    _count(len(chunk))
        except FileNotFoundError:
            return False
    return True


def find(folder: URL) -> list[str]:
    """The paths, relative to ``folder``, of every object under it (at any depth), sorted."""
    fs, path = filesystem(folder)
    with errors(folder):
        fs.invalidate_cache(path)
        found = fs.find(path)
    prefix = path.rstrip("/") + "/"
    return sorted(p[len(prefix):] for p in found if p.startswith(prefix))


def remove_tree(folder: URL, keep: tuple[str, ...] = ()) -> None:
    """Delete every object under ``folder`` but those named in ``keep`` (paths relative to it)."""
    fs, path = filesystem(folder)
    with errors(folder):
        if keep:
            prefix = path.rstrip("/") + "/"
            fs.invalidate_cache(path)
            doomed = [p for p in fs.find(path) if p[len(prefix):] not in keep]
            if doomed:
                fs.rm(doomed)
        else:
            with suppress(FileNotFoundError):
                fs.rm(path, recursive=True)
        fs.invalidate_cache(path)


# ------------------------------------------------------------------ conditional writes (a run's lock)


def create_only(url: URL, data: bytes) -> bool:
    """Write ``url`` only if no such object exists (S3: a PUT with ``If-None-Match: *``, one request);
    False when one does. A store that cannot is one line: a lock would not be a lock there."""
    fs, path = filesystem(url)
    with errors(url):
        try:
            fs.pipe_file(path, data, mode="create")
        except FileExistsError:
            return False
        except (TypeError, NotImplementedError):
            raise ReorderError(f"{url}: this store cannot create an object only when there is none (S3's "
                               "If-None-Match), which the run's lock needs; use a work_dir on S3 or on a "
                               "shared file system") from None
        finally:
            fs.invalidate_cache(path)
    return True


def read_tagged(url: URL) -> tuple[bytes, str] | None:
    """An object's bytes and its ETag (the bytes are of that version), or None when there is none."""
    fs, path = filesystem(url)
    with errors(url):
        fs.invalidate_cache(path)
        try:
            with fs.open(path, "rb") as fh:
                data = fh.read()
                tag = (getattr(fh, "details", None) or {}).get("ETag")
        except FileNotFoundError:
            return None
    if tag is None:
        raise ReorderError(f"{url}: this store gives no ETag, which the run's lock needs to replace a stale lock; "
                           "delete it by hand if its holder is gone")
    return data, tag


def replace_if(url: URL, data: bytes, tag: str) -> bool:
    """Write ``url`` only if it still is the version ``tag`` (S3: a PUT with ``If-Match``); False when it
    changed or is gone."""
    fs, path = filesystem(url)
    try:
        fs.pipe_file(path, data, IfMatch=tag)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno == errno.EINVAL and "condition" in str(exc).lower():  # s3fs: 412 Precondition Failed
            return False
        raise error(url, exc) from None
    finally:
        fs.invalidate_cache(path)
    return True


def open_random(url: URL) -> IO[bytes]:
    """An object opened for reads of the byte ranges asked for (pyarrow's IPC reader, ``seek`` and ``read``)."""
    return open_url(url, sequential=False)


def read_ranges(urls: list[URL], starts: list[int], ends: list[int]) -> list[bytes]:
    """The bytes [start, end) of each object, fetched concurrently (fsspec's ``cat_ranges``)."""
    if not urls:
        return []
    fs, _ = filesystem(urls[0])
    with errors(urls[0]):
        blocks = fs.cat_ranges([filesystem(u)[1] for u in urls], starts, ends, on_error="raise")
    _count(sum(len(b) for b in blocks))
    return blocks
