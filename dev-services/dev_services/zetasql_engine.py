"""Google's SQL analyzer (PyPI `zetasql`, a WASM build) loaded once per process, BigQuery's way.

Compiling the 28 MB module takes one to two minutes, so the compiled machine code is kept
next to the virtualenv (`<prefix>/.zetasql-cache/`, keyed by the module and the wasmtime
version) and later processes load it in a fraction of a second; `make install` warms it
(`python -m dev_services.zetasql_engine`). WASM instances are not thread-safe, and the
strict front analyzes from its request threads: every call holds one lock.

Requests and responses are the raw protobuf messages of ZetaSQL's local service, which
is several times faster than the package's dataclass layer.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import sys
import threading
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import TypeVar

import wasmtime
from google.protobuf import empty_pb2, message
from zetasql.core.exceptions import ServerError
from zetasql.core.wasm_client import get_tzinfo_dir
from zetasql.wasi import get_wasm_path
from zetasql.wasi._pb2.zetasql.local_service import local_service_pb2
from zetasql.wasi._pb2.zetasql.proto import options_pb2, simple_catalog_pb2
from zetasql.wasi._pb2.zetasql.public import options_pb2 as public_options_pb2
from zetasql.wasi._pb2.zetasql.resolved_ast import resolved_node_kind_pb2

from dev_services.zetasql_dialect import LANGUAGE_FEATURES, RESERVED_KEYWORDS, STATEMENT_KINDS

M = TypeVar("M", bound=message.Message)
__all__ = ["ServerError", "ZetaSQL", "bigquery_language_options", "engine", "warm_up"]


def bigquery_language_options() -> options_pb2.LanguageOptionsProto:
    """ZetaSQL's language options as BigQuery sets them (see `zetasql_dialect`)."""
    return options_pb2.LanguageOptionsProto(
        name_resolution_mode=public_options_pb2.NAME_RESOLUTION_DEFAULT,
        product_mode=public_options_pb2.PRODUCT_EXTERNAL,
        enabled_language_features=[
            public_options_pb2.LanguageFeature.Value(f"FEATURE_{name}")
            for name in LANGUAGE_FEATURES
        ],
        supported_statement_kinds=[
            resolved_node_kind_pb2.ResolvedNodeKind.Value(f"RESOLVED_{name}")
            for name in STATEMENT_KINDS
        ],
        reserved_keywords=list(RESERVED_KEYWORDS),
    )


class ZetaSQL:
    """One instance of ZetaSQL's local service; every call is serialized by a lock."""

    def __init__(self) -> None:
        """Instantiate the module (compiling it first if no cached machine code exists)."""
        config = wasmtime.Config()
        config.shared_memory = True
        engine = wasmtime.Engine(config)
        wasi = wasmtime.WasiConfig()
        wasi.inherit_stdout()
        wasi.inherit_stderr()
        zoneinfo = get_tzinfo_dir()
        if zoneinfo:
            wasi.preopen_dir(zoneinfo, "/usr/share/zoneinfo")
        self._store = wasmtime.Store(engine)
        self._store.set_wasi(wasi)
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        instance = linker.instantiate(self._store, _compiled_module(engine))
        self._exports = instance.exports(self._store)
        if "_initialize" in self._exports:
            self._exports["_initialize"](self._store)
        self._memory = self._exports["memory"]
        self._lock = threading.Lock()
        self.language = bigquery_language_options()

    def call(self, method: str, request: message.Message, response_type: type[M]) -> M:
        """Call `ZetaSqlLocalService_<method>`.

        Raises:
            ServerError: ZetaSQL's error (e.g. `Table not found: x [at 1:15]`).
        """
        data = request.SerializeToString()
        with self._lock:
            return response_type.FromString(self._invoke(f"ZetaSqlLocalService_{method}", data))

    def analyze(
        self, request: local_service_pb2.AnalyzeRequest
    ) -> local_service_pb2.AnalyzeResponse:
        """Analyze one statement (or the next one of a script, with `parse_resume_location`)."""
        return self.call("Analyze", request, local_service_pb2.AnalyzeResponse)

    @contextlib.contextmanager
    def registered(self, catalog: simple_catalog_pb2.SimpleCatalogProto) -> Iterator[int]:
        """Register `catalog` once for many analyses (its builtin functions are built once)."""
        request = local_service_pb2.RegisterCatalogRequest(simple_catalog=catalog)
        response = self.call("RegisterCatalog", request, local_service_pb2.RegisterResponse)
        try:
            yield response.registered_id
        finally:
            unregister = local_service_pb2.UnregisterRequest(registered_id=response.registered_id)
            self.call("UnregisterCatalog", unregister, empty_pb2.Empty)

    def table_names(self, script: str) -> list[tuple[str, ...]]:
        """The table paths a statement or script names, as written (parse only, no catalog).

        Raises:
            ServerError: on a syntax error.
        """
        request = local_service_pb2.ExtractTableNamesFromStatementRequest(
            sql_statement=script, options=self.language, allow_script=True
        )
        response = self.call(
            "ExtractTableNamesFromStatement",
            request,
            local_service_pb2.ExtractTableNamesFromStatementResponse,
        )
        return [tuple(name.table_name_segment) for name in response.table_name]

    def _invoke(self, method: str, data: bytes) -> bytes:
        store, exports = self._store, self._exports
        request_ptr = exports["wasm_malloc"](store, max(len(data), 1))
        size_ptr = exports["wasm_malloc"](store, 4)
        try:
            self._write(request_ptr, data)
            response_ptr = exports[method](store, request_ptr, len(data), size_ptr)
            if response_ptr == 0:
                size = exports["wasm_get_last_error_size"](store)
                error = self._read(exports["wasm_get_last_error"](store), size) if size else b""
                raise ServerError.from_error_string(error.decode("utf-8", "replace"))
            size = int.from_bytes(self._read(size_ptr, 4), "little")
            response = self._read(response_ptr, size)
            exports["wasm_free"](store, response_ptr)
            return response
        finally:
            exports["wasm_free"](store, request_ptr)
            exports["wasm_free"](store, size_ptr)

    def _base(self) -> int:
        return ctypes.cast(self._memory.data_ptr(), ctypes.c_void_p).value or 0

    def _write(self, ptr: int, data: bytes) -> None:
        ctypes.memmove(self._base() + ptr, data, len(data))

    def _read(self, ptr: int, size: int) -> bytes:
        return ctypes.string_at(self._base() + ptr, size)


def _compiled_module(engine: wasmtime.Engine) -> wasmtime.Module:
    """The module's machine code: from the cache, or compiled now and cached atomically."""
    wasm = Path(get_wasm_path())
    stat = wasm.stat()
    key = hashlib.sha256(
        f"{wasm.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{version('wasmtime')}".encode()
    ).hexdigest()[:16]
    cache = Path(sys.prefix) / ".zetasql-cache" / f"zetasql-{key}.cwasm"
    if cache.exists():
        return wasmtime.Module.deserialize_file(engine, str(cache))
    module = wasmtime.Module.from_file(engine, str(wasm))
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(f".{os.getpid()}.tmp")
    partial.write_bytes(module.serialize())
    partial.replace(cache)
    for stale in cache.parent.glob("zetasql-*.cwasm"):
        if stale != cache:
            stale.unlink(missing_ok=True)
    return module


_ENGINE: dict[str, ZetaSQL] = {}
_ENGINE_LOCK = threading.Lock()


def engine() -> ZetaSQL:
    """The process's ZetaSQL (created on first use; concurrent first callers wait for it)."""
    with _ENGINE_LOCK:
        if "zetasql" not in _ENGINE:
            _ENGINE["zetasql"] = ZetaSQL()
        return _ENGINE["zetasql"]


def warm_up() -> threading.Thread:
    """Start loading ZetaSQL in the background, so the first statement does not wait for it."""
    thread = threading.Thread(target=engine, name="zetasql-warm-up", daemon=True)
    thread.start()
    return thread


if __name__ == "__main__":
    engine()
    print("zetasql: compiled module cached under", Path(sys.prefix) / ".zetasql-cache")
