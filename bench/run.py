"""Run the benchmark: the app under gunicorn, driven by wrk, at each database size.

``python -m bench.run [--sizes 10k 100k 1m] [--duration 10] [--warmup 2]``

For each size, in the same run: a bare Flask route (the ceiling, bench/bare.py), Mes documents,
Mes patients, the viewer page, the PDF content route and ``POST /api/v1/documents`` with
200 KB PDFs, each by wrk at 32 connections; a floor for ingest (a plain psycopg loop inserting
and committing 200 KB rows); the SQL statements each route costs (counted in this process
with the test client, at two page sizes for the lists); each gunicorn worker's resident
memory; the size of every table. Figures are printed, written to bench/results/ and compared
with the targets of issue 6 — never asserted.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench import seed
from bench.common import (
    RESULTS,
    ROOT,
    SIZES,
    app_environment,
    libpq_url,
    make_bench_app,
)
from bench.targets import evaluate, markdown

VENV_BIN = Path(sys.executable).parent
BARE_PORT = 18301
APP_PORT = 18302
CONNECTIONS = 32
WORKERS = 2
INGEST_BYTES = 200 * 1024
#: Lists are counted at two page sizes: the statements must not change with it.
PAGE_SIZES = {"documents": (5, 25), "patients": (10, 50)}


# --- gunicorn -------------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int

    def workers(self) -> list[int]:
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [int(child) for child in children]


def gunicorn_args(target: str, port: int) -> list[str]:
    """The production settings (gunicorn.conf.py when present), 2 workers, our own port."""
    args = [str(VENV_BIN / "gunicorn")]
    if (ROOT / "gunicorn.conf.py").exists():
        args += ["-c", str(ROOT / "gunicorn.conf.py")]
    return [*args, "--workers", str(WORKERS), "--bind", f"127.0.0.1:{port}", target]


#: Workers are never replaced during a run (production replaces them after 2,000 requests):
#: the resident memory read at the end is then that of a worker that served every request.
GUNICORN_ENV = {"GUNICORN_MAX_REQUESTS": "0"}


@contextmanager
def serve(target: str, port: int, env: dict[str, str], probe: str) -> Iterator[Server]:
    log = Path(tempfile.gettempdir()) / f"relais-bench-{port}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(gunicorn_args(target, port), cwd=ROOT,
                                   env={**os.environ, **GUNICORN_ENV, **env},
                                   stdout=out, stderr=out)
    server = Server(process, port)
    try:
        wait_until_up(server, probe, log)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_up(server: Server, probe: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"gunicorn on {server.port} stopped: see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{probe}",
                                        timeout=2) as answer:
                if answer.status == 200 and len(server.workers()) == WORKERS:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"gunicorn on {server.port} did not answer {probe}: see {log}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


# --- wrk ------------------------------------------------------------------------------------


def wrk(port: int, script: str, env: dict[str, str], duration: int, warmup: int) -> dict[str, Any]:
    """A warm-up run (discarded), then the measured run: requests/s and latency percentiles."""
    def once(seconds: int) -> dict[str, Any]:
        out = subprocess.run(
            ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s",
             str(ROOT / "bench" / script), f"http://127.0.0.1:{port}"],
            cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, check=True,
        ).stdout
        match = re.search(r"^BENCH_JSON (.*)$", out, re.MULTILINE)
        if match is None:
            raise SystemExit(f"wrk gave no figures:\n{out}")
        figures: dict[str, Any] = json.loads(match.group(1))
        return figures

    if warmup:
        once(warmup)
    raw = once(duration)
    seconds = raw["duration_us"] / 1e6
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors",
                                  "status_errors", "timeouts", "unexpected_status"))
    return {
        "rps": round(raw["requests"] / seconds, 1),
        "requests": raw["requests"],
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p95_ms": round(raw["p95_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "errors": errors,
        "status_errors": raw["status_errors"],
    }


# --- sessions and the requests --------------------------------------------------------------


def session_cookie(app: Any, doctor_id: int, epoch: int) -> str:
    """A signed-in doctor's session, shaped as app.auth.session.start_session shapes it and
    signed with the app's own serializer (as honest as signing in, and no SMS round trip)."""
    serializer = app.session_interface.get_signing_serializer(app)
    now = time.time()
    value: str = serializer.dumps({"_user_id": f"doctor:{doctor_id}:{epoch}", "_fresh": True,
                                   "sid": secrets.token_urlsafe(32),
                                   "signed_in_at": now, "seen_at": now, "_permanent": True})
    return value


@dataclass(frozen=True)
class Cast:
    """The doctors the benchmark signs in as."""

    busiest: tuple[int, int]  # (doctor id, visible deliveries)
    typical: list[tuple[int, int]]
    #: (doctor id, delivery id) pairs for the viewer and content routes, over typical doctors.
    readings: list[tuple[int, int]]


def choose_cast(size: str) -> Cast:
    """The doctor with the most visible letters, and twenty around the median."""
    with psycopg.connect(libpq_url(size)) as conn:
        counts = conn.execute(
            "SELECT doctor_id, count(*) FROM deliveries WHERE status IN ('delivered', 'read') "
            "AND reported_not_my_patient_at IS NULL GROUP BY doctor_id ORDER BY 2 DESC, 1"
        ).fetchall()
        middle = len(counts) // 2
        typical = [(int(d), int(c)) for d, c in counts[middle - 10:middle + 10]]
        readings = conn.execute(
            "SELECT doctor_id, max(id) FROM deliveries WHERE status IN ('delivered', 'read') "
            "AND doctor_id = ANY(%s) GROUP BY doctor_id",
            ([d for d, _ in typical],)).fetchall()
    return Cast((int(counts[0][0]), int(counts[0][1])), typical,
                [(int(d), int(i)) for d, i in readings])


def epochs(size: str) -> dict[int, int]:
    with psycopg.connect(libpq_url(size)) as conn:
        return {int(i): int(e) for i, e in conn.execute("SELECT id, session_epoch FROM doctors")}


def request_file(lines: list[tuple[str, str]]) -> str:
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - read by wrk after this returns
        "w", prefix="relais-bench-", suffix=".tsv", delete=False)
    with handle:
        handle.writelines(f"{path}\t{cookie}\n" for path, cookie in lines)
    return handle.name


def page_requests(size: str, cast: Cast) -> dict[str, list[tuple[str, str]]]:
    """Each measured GET route with the sessions that ask for it."""
    app = make_bench_app(size)
    epoch = epochs(size)

    def cookie(doctor_id: int) -> str:
        return session_cookie(app, doctor_id, epoch[doctor_id])

    busiest = cast.busiest[0]
    typical = [d for d, _ in cast.typical]
    return {
        "documents_busiest": [("/documents", cookie(busiest))],
        "documents_typical": [("/documents", cookie(d)) for d in typical],
        "patients_busiest": [("/patients", cookie(busiest))],
        "patients_typical": [("/patients", cookie(d)) for d in typical],
        "viewer": [(f"/documents/{i}", cookie(d)) for d, i in cast.readings],
        "content": [(f"/documents/{i}/content", cookie(d)) for d, i in cast.readings],
    }


# --- ingest and its floor ---------------------------------------------------------------------


def ingest_pdf() -> bytes:
    from app.pdf import make_pdf

    base = make_pdf(["Lettre de sortie - benchmark", "Synthetic data, no patient."])
    return make_pdf(["Lettre de sortie - benchmark", "Synthetic data, no patient."],
                    padding=INGEST_BYTES - len(base))


def ingest_file(size: str, prefix: str) -> tuple[str, str]:
    """The wrk script's input: a new API client's token, the run prefix, the body, patients."""
    from app.audit import CLI
    from app.dispatch.clients import create_client
    from app.extensions import db

    app = make_bench_app(size)
    with app.app_context():
        _, token = create_client(prefix.lower(), CLI)
        db.session.commit()
        db.engine.dispose()
    with psycopg.connect(libpq_url(size)) as conn:
        patients = conn.execute(
            "SELECT dpi_id, family_name, given_name, birth_date FROM patients "
            "WHERE id % 397 = 0 ORDER BY id LIMIT 500").fetchall()
    rest = {"encounter": "outpatient", "type": "discharge_letter",
            "title": "Lettre de sortie (benchmark)", "service": "cardiologie",
            "author": "Dr Bench", "signed_at": "2026-11-20T10:00:00+01:00", "sensitive": False,
            "third_party_data": False, "category": "report", "content_type": "application/pdf",
            "content": base64.b64encode(ingest_pdf()).decode()}
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - read by wrk after this returns
        "w", prefix="relais-bench-", suffix=".ingest", delete=False)
    with handle:
        handle.write(f"{token}\n{prefix}\n")
        handle.write("," + json.dumps(rest, separators=(",", ":"))[1:] + "\n")
        for dpi, family, given, birth in patients:
            handle.write(json.dumps({"id": dpi, "family_name": family, "given_name": given,
                                     "birth_date": birth.isoformat()}) + "\n")
    return handle.name, token


def forget_ingested(size: str, prefix: str) -> int:
    """Take the benchmark's own letters out again, so that each size keeps its size (their
    audit events stay: the trail is append-only)."""
    with psycopg.connect(libpq_url(size)) as conn:
        ids = "SELECT id FROM documents WHERE document_id LIKE %s"
        pattern = prefix + "-%"
        conn.execute(f"DELETE FROM deliveries WHERE document_id IN ({ids})",  # noqa: S608
                     (pattern,))
        conn.execute(f"DELETE FROM document_contents WHERE document_id IN ({ids})",  # noqa: S608
                     (pattern,))
        gone = conn.execute("DELETE FROM documents WHERE document_id LIKE %s",
                            (pattern,)).rowcount
        conn.execute("DELETE FROM notifications WHERE kind = 'arrival' AND sent_at IS NULL")
    # The space is reused by the next run's letters instead of growing the tables each time.
    with psycopg.connect(libpq_url(size), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) documents, document_contents, deliveries")
    return gone


def floor(size: str, seconds: float) -> dict[str, Any]:
    """The same INSERT and COMMIT of a 200 KB (incompressible) row, in a plain psycopg loop."""
    payload = os.urandom(INGEST_BYTES)
    with psycopg.connect(libpq_url(size)) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_floor "
                     "(id bigserial PRIMARY KEY, document_id text UNIQUE, ciphertext bytea)")
        conn.commit()
        count = 0
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            conn.execute("INSERT INTO bench_floor (document_id, ciphertext) VALUES (%s, %s)",
                         (secrets.token_hex(8), payload))
            conn.commit()
            count += 1
        elapsed = time.monotonic() - began
        conn.execute("DROP TABLE bench_floor")
        conn.commit()
    return {"rps": round(count / elapsed, 1), "requests": count}


# --- SQL statements per request ---------------------------------------------------------------


def count_statements(size: str, cast: Cast) -> dict[str, Any]:
    """Statements per request, counted with the test client against the same database."""
    from sqlalchemy import event

    from app.extensions import db
    from app.inbox import document_queries as documents
    from app.inbox import patient_queries as patients

    app = make_bench_app(size)
    epoch = epochs(size)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    def measure(path: str, doctor_id: int) -> int:
        client = app.test_client(use_cookies=False)
        cookie = session_cookie(app, doctor_id, epoch[doctor_id])
        headers = {"Cookie": f"__Host-relais={cookie}", "Sec-Fetch-Site": "same-origin"}
        client.get(path, headers=headers, base_url="https://127.0.0.1")  # warm
        statements.clear()
        answer = client.get(path, headers=headers, base_url="https://127.0.0.1")
        assert answer.status_code == 200, (path, answer.status_code)
        return len(statements)

    busiest = cast.busiest[0]
    reader, delivery = cast.readings[0]
    result: dict[str, Any] = {}
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", count)
        try:
            small, large = PAGE_SIZES["documents"]
            defaults = documents.list_page.__defaults__
            by_size = {}
            for page in (small, large):
                documents.list_page.__defaults__ = (page,)
                by_size[page] = measure("/documents", busiest)
            documents.list_page.__defaults__ = defaults
            result["documents"] = by_size
            small, large = PAGE_SIZES["patients"]
            kwdefaults = patients.list_patients.__kwdefaults__
            by_size = {}
            for page in (small, large):
                patients.list_patients.__kwdefaults__ = {**(kwdefaults or {}), "limit": page}
                by_size[page] = measure("/patients", busiest)
            patients.list_patients.__kwdefaults__ = kwdefaults
            result["patients"] = by_size
            result["viewer"] = measure(f"/documents/{delivery}", reader)
            result["content"] = measure(f"/documents/{delivery}/content", reader)
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
            db.engine.dispose()
    return result


def count_ingest_statements(size: str, token: str, body_file: str) -> int:
    from sqlalchemy import event

    from app.extensions import db

    lines = Path(body_file).read_text().splitlines()
    app = make_bench_app(size)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    def post(suffix: str) -> None:
        body = '{"document_id":"' + lines[1] + suffix + '","patient":' + lines[3] + lines[2]
        answer = app.test_client().post(
            "/api/v1/documents", data=body, base_url="https://127.0.0.1",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        assert answer.status_code == 201, answer.get_data(as_text=True)

    with app.app_context():
        post("-warm")  # the first request also opens the connection: not counted
        event.listen(db.engine, "before_cursor_execute", count)
        try:
            post("-count")
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
            db.engine.dispose()
    return len(statements)


# --- one size ------------------------------------------------------------------------------------


def table_sizes(size: str) -> dict[str, Any]:
    tables = ["documents", "document_contents", "deliveries", "audit_events", "patients",
              "consents", "doctors"]
    with psycopg.connect(libpq_url(size)) as conn:
        sizes = {t: int(conn.execute("SELECT pg_total_relation_size(%s)", (t,)).fetchone()[0])
                 for t in tables}
        counts = {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # noqa: S608
                  for t in ("documents", "deliveries", "audit_events")}
        database = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])
    return {"bytes": sizes, "rows": counts, "database_bytes": database}


def run_size(size: str, bare: Server, duration: int, warmup: int) -> dict[str, Any]:
    print(f"== {size}: choosing doctors", file=sys.stderr, flush=True)
    # Sizes on disk as seeded: measured first, before this run's ingest adds (and removes) rows.
    tables = table_sizes(size)
    cast = choose_cast(size)
    routes: dict[str, Any] = {}
    routes["bare"] = wrk(bare.port, "paths.lua",
                         {"BENCH_REQUESTS": request_file([("/bare", "")])}, duration, warmup)
    env = app_environment(size)
    prefix = f"BENCH-{datetime.now(UTC):%Y%m%d%H%M%S}-{size}"
    ingest_input, token = ingest_file(size, prefix)
    files: list[str] = [ingest_input]
    try:
        with serve("wsgi:app", APP_PORT, env, "/healthz") as app_server:
            for name, lines in page_requests(size, cast).items():
                print(f"   {name}", file=sys.stderr, flush=True)
                files.append(request_file(lines))
                routes[name] = wrk(app_server.port, "paths.lua", {"BENCH_REQUESTS": files[-1]},
                                   duration, warmup)
            print("   ingest", file=sys.stderr, flush=True)
            routes["ingest"] = wrk(app_server.port, "ingest.lua",
                                   {"BENCH_INGEST": ingest_input}, duration, warmup)
            rss = [rss_mb(pid) for pid in app_server.workers()]
        print("   floor, SQL statements", file=sys.stderr, flush=True)
        ingest_floor = floor(size, duration)
        statements = count_statements(size, cast)
        statements["ingest"] = count_ingest_statements(size, token, ingest_input)
    finally:
        for name in files:
            Path(name).unlink(missing_ok=True)
        removed = forget_ingested(size, prefix)
    ceiling = routes["bare"]["rps"]
    for figures in routes.values():
        figures["ratio_to_bare"] = round(figures["rps"] / ceiling, 3) if ceiling else None
    return {
        "documents": SIZES[size],
        "busiest_doctor_letters": cast.busiest[1],
        "typical_doctor_letters": sorted(c for _, c in cast.typical)[len(cast.typical) // 2],
        "routes": routes,
        "ingest_floor": ingest_floor,
        "sql_statements": statements,
        "worker_rss_mb": rss,
        "tables": tables,
        "ingested_then_removed": removed,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Relais benchmark (figures, never asserts)")
    parser.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per run")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the databases")
    args = parser.parse_args(argv)

    began = time.monotonic()
    built = seed.ensure(args.sizes, args.rebuild)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_before": os.getloadavg()},
        "settings": {"workers": WORKERS, "connections": CONNECTIONS, "duration_s": args.duration,
                     "warmup_s": args.warmup, "ingest_bytes": INGEST_BYTES,
                     "gunicorn_conf": (ROOT / "gunicorn.conf.py").exists(),
                     "gunicorn_threads": os.environ.get("GUNICORN_THREADS", "4 (default)"),
                     **GUNICORN_ENV},
        "built": built,
        "sizes": {},
    }
    with serve("bench.bare:app", BARE_PORT, {}, "/bare") as bare:
        for size in args.sizes:
            results["sizes"][size] = run_size(size, bare, args.duration, args.warmup)
    results["targets"] = evaluate(results)
    results["seconds"] = round(time.monotonic() - began)
    text = markdown(results)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d-%H%M")
    (RESULTS / f"{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{stamp}.md").write_text(text)
    (RESULTS / "latest.md").write_text(text)
    print(f"written: bench/results/{stamp}.json, {stamp}.md, latest.md", file=sys.stderr)


if __name__ == "__main__":
    main()
