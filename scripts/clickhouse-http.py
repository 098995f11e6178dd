#!/usr/bin/env python3
"""ClickHouse's HTTP interface in front of chDB, the ClickHouse engine in-process.

Local-stack plumbing, not a product component: Debian only packages ClickHouse 18.16 and no
modern server binary can be installed here, but PyPI's chdb-core is ClickHouse 26.x as a
library. This front serves it on ClickHouse's HTTP interface, so the official `clickhouse`
Rust crate (at its defaults), curl, Grafana and other HTTP clients work as against a server:

- `GET|HEAD /ping` (and `/` without a query) answer `Ok.`;
- the SQL comes from `?query=` (GET or POST), the POST body, or both (the URL's query, a
  newline, then the body: for an INSERT, its data, text or binary);
- `multipart/form-data` bodies (the crate's `Query::param`): a `query` field and `param_*`;
- `param_<name>` are query parameters (`{name:Type}`), `database` picks the database,
  `default_format` the output format (else TabSeparated or the query's own FORMAT), any other
  URL parameter is a setting (`SET name = value`) for this request only;
- `decompress=1` request bodies (ClickHouse's native framing of LZ4 or uncompressed blocks,
  what the crate's inserts send), `Content-Encoding: gzip|deflate|lz4` request bodies, and
  responses compressed as `Accept-Encoding` asks (lz4 frames, gzip, deflate; not when
  `enable_http_compression=0`);
- errors answer a non-200 status chosen as ClickHouse does, the `X-ClickHouse-Exception-Code`
  header and the exception text `Code: N. DB::Exception: ...`; results are complete before
  the answer starts, so every answer carries `X-ClickHouse-Summary`;
- GET is read-only (`readonly=2`), as on a server.

Differences from a server: no authentication (user and password are accepted and ignored; it
listens on loopback only), no HTTP sessions (`session_id`), no `compress=1` (its checksums
need CityHash128; clients compress answers with Accept-Encoding instead), and the checksums
of `decompress=1` blocks are not verified (TCP's are).

Concurrency: each request opens its own chDB connection on the one data path (one process may
open a path; connections within it share the engine and run in parallel, about 0.1 ms to
open), so requests never see each other's settings or database; at most --max-queries run at
once, the others wait (measured: four concurrent `SELECT sleep(1)` answer together after
1.0 s; a lock around one session would take 4 s). A request's body is read whole before it runs; an INSERT's data is
spooled to a temporary file and inserted `FROM INFILE` (see `execute` for why), whether it
came in the body or inline after the statement. A client that disconnects mid-request
loses its answer and nothing else: an unfinished body is never executed, a query runs to its
end (bound it with `max_execution_time`) and its answer is dropped.
"""

import argparse
import gzip
import http.server
import json
import os
import re
import signal
import socket
import socketserver
import sys
import tempfile
import threading
import time
import uuid
import zlib
from urllib.parse import parse_qsl, urlsplit

import lz4.block
import lz4.frame

import chdb  # noqa: F401  (loads the engine library the way chdb expects)
from chdb import _chdb

# URL parameters that are part of the HTTP protocol, not settings.
PROTOCOL_PARAMS = {
    "query", "database", "default_format", "compress", "decompress", "user", "password",
    "quota_key", "query_id", "session_id", "session_timeout", "session_check", "buffer_size",
    "wait_end_of_query", "role", "stacktrace", "client_protocol_version",
}

# Exception names (the `(NAME)` at the end of every engine message) → HTTP status, as
# ClickHouse's HTTP handler maps them; everything else is 500.
STATUS_BY_NAME = {
    **dict.fromkeys([
        "CANNOT_PARSE_TEXT", "CANNOT_PARSE_ESCAPE_SEQUENCE", "CANNOT_PARSE_QUOTED_STRING",
        "CANNOT_PARSE_INPUT_ASSERTION_FAILED", "CANNOT_PARSE_DATE", "CANNOT_PARSE_DATETIME",
        "CANNOT_PARSE_NUMBER", "CANNOT_PARSE_UUID", "CANNOT_PARSE_BOOL",
        "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING", "CANNOT_PARSE_IPV4", "CANNOT_PARSE_IPV6",
        "DUPLICATE_COLUMN", "ILLEGAL_COLUMN", "UNKNOWN_ELEMENT_IN_AST",
        "UNKNOWN_TYPE_OF_AST_NODE", "TOO_DEEP_AST", "TOO_BIG_AST", "UNEXPECTED_AST_STRUCTURE",
        "SYNTAX_ERROR", "INCORRECT_DATA", "TYPE_MISMATCH", "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
        "ILLEGAL_TYPE_OF_ARGUMENT", "NUMBER_OF_ARGUMENTS_DOESNT_MATCH", "BAD_ARGUMENTS",
        "UNKNOWN_QUERY_PARAMETER", "BAD_QUERY_PARAMETER", "VIOLATED_CONSTRAINT",
        "NO_SUCH_COLUMN_IN_TABLE", "THERE_IS_NO_COLUMN", "INCORRECT_QUERY",
    ], 400),
    **dict.fromkeys([
        "UNKNOWN_TABLE", "UNKNOWN_FUNCTION", "UNKNOWN_IDENTIFIER", "UNKNOWN_TYPE",
        "UNKNOWN_STORAGE", "UNKNOWN_DATABASE", "UNKNOWN_SETTING", "UNKNOWN_DIRECTION_OF_SORTING",
        "UNKNOWN_AGGREGATE_FUNCTION", "UNKNOWN_FORMAT", "UNKNOWN_DATABASE_ENGINE",
        "UNKNOWN_TYPE_OF_QUERY", "RESOURCE_NOT_FOUND",
    ], 404),
    "READONLY": 403,
    "QUERY_IS_TOO_LARGE": 413,
    "NOT_IMPLEMENTED": 501,
    "TIMEOUT_EXCEEDED": 500,
}

EXCEPTION = re.compile(r"Code: (\d+)\. DB::Exception: .*?(?:\(([A-Z_0-9]+)\))?\s*$", re.S)
# A trailing FORMAT clause (the output format, or an INSERT's input format).
TRAILING_FORMAT = re.compile(r"\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.I)
INSERT = re.compile(r"^\s*INSERT\s+INTO\b", re.I)
# An INSERT up to its FORMAT clause or VALUES keyword; whatever follows is its data.
INLINE_INSERT = re.compile(
    rb"(?P<head>\s*INSERT\s+INTO\b.*?)(?:\bFORMAT\s+(?P<format>\w+)|\bVALUES\b)", re.I | re.S)

# Native framing of `decompress=1` blocks: 16 bytes of checksum, then method (1 byte),
# compressed size including this 9-byte header, uncompressed size (both u32 little-endian).
BLOCK_CHECKSUM, BLOCK_HEADER = 16, 9
METHOD_NONE, METHOD_LZ4 = 0x02, 0x82

MAX_SQL_BYTES = 256 * 1024 * 1024


class ClickHouseError(Exception):
    """An error answered the way ClickHouse answers it."""

    def __init__(self, code, name, message, status=None):
        super().__init__(message)
        self.code, self.name = code, name
        self.status = status or STATUS_BY_NAME.get(name, 500)

    @classmethod
    def from_engine(cls, error):
        text = str(error).strip()
        match = EXCEPTION.search(text)
        if not match:
            return cls(1001, "STD_EXCEPTION", f"Code: 1001. DB::Exception: {text}. (STD_EXCEPTION)")
        return cls(int(match.group(1)), match.group(2) or "", text[match.start():])

    def body(self, version):
        return f"{self}{'' if '(version ' in str(self) else f' (version {version})'}\n".encode()


def bad_request(message):
    return ClickHouseError(27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
                           f"Code: 27. DB::Exception: {message}. (CANNOT_PARSE_INPUT_ASSERTION_FAILED)")


def unsupported(message):
    return ClickHouseError(48, "NOT_IMPLEMENTED",
                           f"Code: 48. DB::Exception: {message}. (NOT_IMPLEMENTED)")


def quote(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def content_type(fmt):
    fmt = fmt.lower()
    if fmt.startswith("tabseparated") or fmt.startswith("tsv"):
        return "text/tab-separated-values; charset=UTF-8"
    if fmt.startswith("csv"):
        return "text/csv; charset=UTF-8; header=absent"
    if fmt.startswith("json"):
        return "application/json; charset=UTF-8"
    if fmt.startswith("pretty") or fmt in ("vertical", "markdown", "values", "null"):
        return "text/plain; charset=UTF-8"
    return "application/octet-stream"


def native_blocks(chunks):
    """Decodes ClickHouse's native compression framing (`decompress=1`) as it streams in."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= BLOCK_CHECKSUM + BLOCK_HEADER:
            method = buffer[BLOCK_CHECKSUM]
            size = int.from_bytes(buffer[BLOCK_CHECKSUM + 1:BLOCK_CHECKSUM + 5], "little")
            raw = int.from_bytes(buffer[BLOCK_CHECKSUM + 5:BLOCK_CHECKSUM + 9], "little")
            if size < BLOCK_HEADER:
                raise bad_request("compressed block size is smaller than its header")
            end = BLOCK_CHECKSUM + size
            if len(buffer) < end:
                break
            data = bytes(buffer[BLOCK_CHECKSUM + BLOCK_HEADER:end])
            del buffer[:end]
            if method == METHOD_LZ4:
                yield lz4.block.decompress(data, uncompressed_size=raw)
            elif method == METHOD_NONE:
                yield data
            else:
                raise unsupported(f"compression method 0x{method:02x} of a decompress=1 block "
                                  "(the local front reads LZ4 and uncompressed blocks)")
    if buffer:
        raise bad_request("request body ends inside a compressed block")


def decoded(chunks, encoding):
    """Undoes a request's Content-Encoding while it streams in."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        yield from chunks
        return
    if encoding in ("gzip", "deflate"):
        decoder = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
        for chunk in chunks:
            yield decoder.decompress(chunk)
        yield decoder.flush()
    elif encoding == "lz4":
        decoder = lz4.frame.LZ4FrameDecompressor()
        for chunk in chunks:
            yield decoder.decompress(chunk)
    else:
        raise unsupported(f"Content-Encoding {encoding!r}")


def multipart(body, header):
    """The fields of a multipart/form-data body (the crate sends `query` and `param_*`)."""
    match = re.search(r'boundary="?([^";]+)"?', header)
    if not match:
        raise bad_request("multipart/form-data without a boundary")
    delimiter = b"--" + match.group(1).encode()
    fields = {}
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, sep, value = part.partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]*)"', head)
        if not sep or not name:
            raise bad_request("malformed multipart/form-data part")
        if b"filename=" in head:
            raise unsupported("external data in multipart/form-data")
        fields[name.group(1).decode()] = value[:-2] if value.endswith(b"\r\n") else value
    return fields


class Engine:
    """The chDB engine on one data path; a connection per request, at most `limit` at once."""

    def __init__(self, path, limit):
        self.path = path
        # Kept open for the life of the process, so the engine is not torn down and started
        # again whenever no request is running.
        self.anchor = _chdb.connect(path)
        self.slots = threading.BoundedSemaphore(limit)
        result = self.anchor.query("SELECT version(), timezone()", "TabSeparated")
        self.version, self.timezone = result.bytes().decode().strip().split("\t")

    def close(self):
        self.anchor.close()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ordo-clickhouse-front"
    # Idle keep-alive connections are closed after this long (the crate's pool reuses its
    # connections for 2 s); also bounds a client that stops sending mid-request.
    timeout = 60

    def log_message(self, fmt, *args):
        pass

    def handle_one_request(self):
        quickack(self.connection)
        super().handle_one_request()

    def do_GET(self):
        self.serve(read_only=True)

    def do_HEAD(self):
        self.serve(read_only=True)

    def do_POST(self):
        self.serve(read_only=False)

    # ---------------------------------------------------------------- request body ---

    def body_chunks(self):
        """The raw request body as it arrives (Content-Length or chunked)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("client closed the connection mid-body")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                chunk = self.rfile.read(size)
                if len(chunk) < size:
                    raise ConnectionError("client closed the connection mid-body")
                self.rfile.readline(3)
                quickack(self.connection)
                yield chunk
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    raise ConnectionError("client closed the connection mid-body")
                left -= len(chunk)
                yield chunk

    def data_chunks(self, params):
        chunks = decoded(self.body_chunks(), self.headers.get("Content-Encoding"))
        if params.get("decompress") in ("1", "true"):
            chunks = native_blocks(chunks)
        return chunks

    def read_all(self, chunks):
        parts, size = [], 0
        for chunk in chunks:
            size += len(chunk)
            if size > MAX_SQL_BYTES:
                raise ClickHouseError(202, "QUERY_IS_TOO_LARGE",
                                      "Code: 202. DB::Exception: request body is over 256 MiB "
                                      "(the local front's limit): send smaller inserts. "
                                      "(QUERY_IS_TOO_LARGE)")
            parts.append(chunk)
        return b"".join(parts)

    # --------------------------------------------------------------------- serving ---

    def serve(self, read_only):
        started = time.monotonic()
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if url.path in ("/ping", "/replicas_status") or (url.path == "/" and "query" not in params
                                                          and self.command != "POST"):
            return self.reply(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
        if url.path not in ("/", "/query"):
            return self.fail(ClickHouseError(
                0, "", f"There is no handle {url.path}\n\nUse / or /ping for health checks.",
                status=404))
        engine = self.server.engine
        query_id = params.get("query_id") or str(uuid.uuid4())
        body_consumed = self.command != "POST"
        try:
            sql, fields, data = params.get("query", "").encode(), {}, None
            if params.get("compress") in ("1", "true"):
                raise unsupported("compress=1 (its checksums need CityHash128); the local front "
                                  "compresses answers as Accept-Encoding asks")
            if self.command == "POST":
                body = self.read_all(self.data_chunks(params))
                body_consumed = True
                if (self.headers.get("Content-Type") or "").startswith("multipart/form-data"):
                    fields = multipart(body, self.headers["Content-Type"])
                    sql = fields.pop("query", b"") or sql
                elif sql and body:
                    # As on a server: the URL's query, then the body.
                    sql += b"\n" + body
                else:
                    sql = sql or body
                data = inline_insert(sql)
            if not sql.strip():
                raise ClickHouseError(62, "SYNTAX_ERROR",
                                      "Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)")
            query_params = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
            query_params.update({k[6:]: v.decode() for k, v in fields.items()
                                 if k.startswith("param_")})
            settings = {k: v for k, v in params.items()
                        if k not in PROTOCOL_PARAMS and not k.startswith("param_")}
            if read_only:
                settings["readonly"] = "2"
            fmt = params.get("default_format") or "TabSeparated"
            if not INSERT.match(sql[:64].decode("utf-8", "replace")):
                own_format = TRAILING_FORMAT.search(sql[-256:].decode("utf-8", "replace"))
                fmt = own_format.group(1) if own_format else fmt
            with engine.slots:
                connection = _chdb.connect(engine.path)
                try:
                    result, summary = execute(connection, params.get("database"), settings,
                                              sql, fmt, query_params, data)
                finally:
                    connection.close()
        except ClickHouseError as error:
            return self.fail(error, query_id, close=not body_consumed)
        except (ConnectionError, TimeoutError, socket.timeout):
            # The client went away mid-request: nothing of it was executed.
            self.close_connection = True
            return None
        except Exception as error:  # the engine's own errors (RuntimeError) and any other
            return self.fail(ClickHouseError.from_engine(error), query_id, close=not body_consumed)
        summary["elapsed_ns"] = str(int((time.monotonic() - started) * 1e9))
        headers = {
            "Content-Type": content_type(fmt),
            "X-ClickHouse-Format": fmt,
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": engine.timezone,
            "X-ClickHouse-Server-Display-Name": "chdb",
            "X-ClickHouse-Summary": json.dumps(summary, separators=(",", ":")),
        }
        if result and settings.get("enable_http_compression", "1") not in ("0", "false"):
            result = self.compress(result, headers)
        self.reply(200, result, headers)

    # ------------------------------------------------------------------- answering ---

    def compress(self, body, headers):
        accepted = [e.split(";")[0].strip().lower()
                    for e in (self.headers.get("Accept-Encoding") or "").split(",")]
        if "lz4" in accepted:
            headers["Content-Encoding"] = "lz4"
            return lz4.frame.compress(body)
        if "gzip" in accepted:
            headers["Content-Encoding"] = "gzip"
            return gzip.compress(body, compresslevel=3)
        if "deflate" in accepted:
            headers["Content-Encoding"] = "deflate"
            return zlib.compress(body, 3)
        return body

    def fail(self, error, query_id=None, close=False):
        if error.status >= 500:
            print(f"{self.command} {self.path[:200]}: {error}", file=sys.stderr, flush=True)
        if close:
            # The rest of the body was not read: the connection cannot carry another request.
            self.close_connection = True
        headers = {"Content-Type": "text/plain; charset=UTF-8",
                   "X-ClickHouse-Exception-Code": str(error.code)}
        if query_id:
            headers["X-ClickHouse-Query-Id"] = query_id
        if close:
            headers["Connection"] = "close"
        self.reply(error.status, error.body(self.server.engine.version), headers)

    def reply(self, status, body, headers):
        head = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}\r\n",
                f"Date: {self.date_time_string()}\r\n",
                f"Content-Length: {len(body)}\r\n"]
        if not self.close_connection:
            head.append("Connection: Keep-Alive\r\nKeep-Alive: timeout=60\r\n")
        head += [f"{name}: {value}\r\n" for name, value in headers.items()]
        head.append("\r\n")
        # One write: a second small write would wait for the client's delayed ACK (Nagle).
        payload = "".join(head).encode("latin-1") + (b"" if self.command == "HEAD" else body)
        try:
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True


def inline_insert(sql):
    """`((head, tail), data)` of an INSERT that carries its data, to run as `head FROM INFILE
    'file' tail` with the data in the file; None for other statements."""
    match = INLINE_INSERT.match(sql[:65536])
    if not match:
        return None
    head, rest = match.group("head").decode(), sql[match.end():]
    if match.group("format"):
        tail = f"FORMAT {match.group('format').decode()}"
        # Data starts after the first newline, or after the whitespace if it has none.
        space = re.match(rb"[ \t\r\n]*", rest).group(0)
        data = rest[space.index(b"\n") + 1 if b"\n" in space else len(space):]
    else:
        tail, data = "FORMAT Values", rest
    # FROM INFILE goes before an INSERT's SETTINGS clause.
    if settings := re.search(r"\sSETTINGS\s", head, re.I):
        head, tail = head[:settings.start()], f"{head[settings.start():]} {tail}"
    return (head, tail), data


def execute(connection, database, settings, sql, fmt, query_params, data):
    if database:
        connection.query(f"USE `{database.replace('`', '``')}`", "TabSeparated")
    if settings:
        assignments = ", ".join(f"{name} = {quote(value)}" for name, value in settings.items())
        connection.query(f"SET {assignments}", "TabSeparated")
    if data:
        # An INSERT's data goes through a file: chDB reads a query as clickhouse-client reads
        # several, where inline INSERT data ends at the first blank line (the rest is taken
        # for another query; binary data is cut silently at bytes 0a 0a), and its streaming
        # insert skips the table's constraints and reports rows it did not write. FROM INFILE
        # checks and writes like a server.
        (head, tail), body = data
        with tempfile.NamedTemporaryFile(prefix="ordo-clickhouse-insert-") as spool:
            spool.write(body)
            spool.flush()
            result = connection.query(f"{head} FROM INFILE {quote(spool.name)} {tail}", fmt)
    else:
        result = connection.query(sql, fmt, params=query_params)
    body = result.bytes() or b""
    return body, summary(result.storage_rows_read(), result.storage_bytes_read(),
                         result.rows_written(), result.bytes_written(), result.rows_read(),
                         len(body))


def summary(read_rows, read_bytes, written_rows, written_bytes, result_rows, result_bytes):
    values = dict(read_rows=read_rows, read_bytes=read_bytes, written_rows=written_rows,
                  written_bytes=written_bytes, total_rows_to_read=read_rows,
                  result_rows=result_rows, result_bytes=result_bytes)
    return {name: str(value) for name, value in values.items()}


def quickack(sock):
    # Linux clears quick-ACK mode after a while; set it before each read so the client's
    # request is acknowledged at once (measured: ~40 ms saved per request).
    if hasattr(socket, "TCP_QUICKACK"):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        except OSError:
            pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address, engine):
        super().__init__(address, Handler)
        self.engine = engine

    def get_request(self):
        sock, address = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        quickack(sock)
        return sock, address


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--path", required=True, help="chDB data path (one process at a time)")
    parser.add_argument("--max-queries", type=int, default=16,
                        help="queries and inserts run at once; more wait for a slot")
    args = parser.parse_args()
    # The engine resolves some paths against the working directory (RENAME and EXCHANGE
    # TABLES call getcwd): a front started from a directory deleted since fails them with
    # "getcwd failed". Its data directory outlives it.
    args.path = os.path.abspath(args.path)
    os.makedirs(args.path, exist_ok=True)
    os.chdir(args.path)
    engine = Engine(args.path, args.max_queries)
    server = Server((args.host, args.port), engine)

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"clickhouse front: ClickHouse {engine.version} (chDB) on http://{args.host}:{args.port},"
          f" data in {args.path}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        engine.close()


if __name__ == "__main__":
    main()
