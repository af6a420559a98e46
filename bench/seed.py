"""Build the benchmark databases: realistic synthetic data, bulk-loaded with COPY.

``python -m bench.seed [10k 100k 1m] [--rebuild]``: each size is its own PostgreSQL database
(``relais_bench_<size>``), built only when missing (or asked), after the real migrations.

What a database holds, as the API would have left it (``app/dispatch/ingest.py``):

* 5,000 doctors (active, valid GLNs, a tenth notified at each arrival) and 200,000 patients;
* one treating-doctor consent per patient (a tenth name a second doctor); patients are spread
  over doctors unevenly (a few doctors have many patients, most have a few dozen);
* documents about 4 KB each, every one sealed on its own with the app's key ring and the
  associated data of its own ``document_id`` (sealing each costs about as much as reusing
  one, and keeps the content route's decrypt-and-verify real);
* one delivery per consented doctor: mostly delivered or read, some held, blocked, cancelled;
* the audit trail ingest writes for each document (``document.received`` and one
  ``delivery.decided`` per delivery), hash-chained, with the head on the last event. Consent,
  sign-in and staff events are left out: they are a small share of the trail.

Then ANALYZE, so that the planner sees the real row counts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from bench.common import (
    DOCTORS,
    PATIENTS,
    SIZES,
    database_name,
    libpq_url,
    make_bench_app,
)

#: Plaintext size of a stored document (a short letter with a logo is about that).
DOCUMENT_BYTES = 4096
#: The load spans two years of letters, ending a few days before now.
SPAN = timedelta(days=730)
ACTOR = "api:dpi-bench"

FAMILY = ["Muster", "Favre", "Rochat", "Meier", "Schneider", "Bonvin", "Dubois", "Keller",
          "Rossi", "Girard", "Mercier", "Baumann", "Fontana", "Perret", "Moser", "Blanc",
          "Gerber", "Brunner", "Huber", "Morel"]
GIVEN = ["Anna", "Luc", "Claire", "Marc", "Sophie", "Pierre", "Julie", "Nicolas", "Laura",
         "Thomas", "Elena", "David", "Sarah", "Paul", "Nina", "Jean"]
TYPES = ["discharge_letter", "consultation_report", "operative_report", "imaging_report",
         "lab_report", "referral_letter"]
SERVICES = ["cardiologie", "medecine-interne", "chirurgie", "orthopedie", "radiologie",
            "oncologie", "neurologie", "pediatrie", "urgences", "gynecologie"]
#: (status, rule, share): most letters delivered or read, some held, blocked, cancelled.
STATUSES = [("read", "ok", 0.55), ("delivered", "ok", 0.30), ("held", "sensitive_delay", 0.04),
            ("blocked", "no_consent", 0.05), ("blocked", "excluded_service", 0.03),
            ("cancelled", "no_consent", 0.03)]
REASONS = {"ok": "Delivered to the treating doctor.",
           "sensitive_delay": "Sensitive document: held before release.",
           "no_consent": "No consent to electronic sending.",
           "excluded_service": "The service's documents are never sent."}


def gln(n: int) -> str:
    prefix = f"76010{n:07d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(prefix))
    return prefix + str((10 - total % 10) % 10)


def letter(variant: int) -> bytes:
    """A ~4 KB PDF (the app's own PDF writer, padded): a few variants are enough."""
    from app.pdf import make_pdf

    base = make_pdf([f"Lettre de sortie - benchmark {variant}", "Synthetic data, no patient."])
    return make_pdf([f"Lettre de sortie - benchmark {variant}", "Synthetic data, no patient."],
                    padding=max(0, DOCUMENT_BYTES - len(base)))


def text_row(values: list[Any]) -> str:
    """One line of COPY text format (values here never hold tabs, newlines or backslashes)."""
    out = []
    for value in values:
        if value is None:
            out.append("\\N")
        elif isinstance(value, bool):
            out.append("t" if value else "f")
        elif isinstance(value, datetime):
            out.append(value.isoformat())
        else:
            out.append(str(value))
    return "\t".join(out) + "\n"


def copy_text(conn: psycopg.Connection, table: str, columns: list[str],
              rows: Iterator[list[Any]], chunk: int = 5000) -> int:
    count = 0
    with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        buffer: list[str] = []
        for row in rows:
            buffer.append(text_row(row))
            count += 1
            if len(buffer) >= chunk:
                copy.write("".join(buffer))
                buffer.clear()
        if buffer:
            copy.write("".join(buffer))
    return count


# --- the population -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Population:
    #: For each patient (0-based), the doctors (0-based) it consented to.
    doctors_of: list[tuple[int, ...]]


def population(rng: random.Random) -> Population:
    """Patients spread unevenly over doctors: doctor index = DOCTORS * u**1.5."""
    doctors_of = []
    for _ in range(PATIENTS):
        first = min(DOCTORS - 1, int(DOCTORS * rng.random() ** 1.5))
        if rng.random() < 0.10:
            second = rng.randrange(DOCTORS)
            doctors_of.append((first, second) if second != first else (first,))
        else:
            doctors_of.append((first,))
    return Population(doctors_of)


def load_people(conn: psycopg.Connection, people: Population, now: datetime) -> None:
    rng = random.Random(7)
    created = now - SPAN - timedelta(days=30)

    def doctors() -> Iterator[list[Any]]:
        for i in range(DOCTORS):
            immediate = i % 10 == 0
            yield [i + 1, gln(i), FAMILY[i % 20], GIVEN[i % 16],
                   f"doctor{i}@bench.invalid" if immediate else None, None, "Genève", "active",
                   created, False, False, "immediate" if immediate else "none", created]

    copy_text(conn, "doctors", ["id", "gln", "family_name", "given_name", "email", "mobile",
                                "locality", "state", "activated_at", "must_change_password",
                                "sign_in_locked", "notification_mode", "created_at"], doctors())

    def patients() -> Iterator[list[Any]]:
        for i in range(PATIENTS):
            birth = date(1930, 1, 1) + timedelta(days=rng.randrange(33000))
            yield [i + 1, f"P{i:08d}", FAMILY[rng.randrange(20)] + str(i % 97),
                   GIVEN[rng.randrange(16)], birth.isoformat(), created, created]

    copy_text(conn, "patients", ["id", "dpi_id", "family_name", "given_name", "birth_date",
                                 "created_at", "updated_at"], patients())

    def consents() -> Iterator[list[Any]]:
        n = 0
        for p, doctor_ids in enumerate(people.doctors_of):
            for d in doctor_ids:
                n += 1
                yield [n, p + 1, d + 1, "treating_doctor", True, "patient", False, "bench",
                       created]

    copy_text(conn, "consents", ["id", "patient_id", "doctor_id", "designation",
                                 "electronic_sending", "given_by", "minor_agreement",
                                 "recorded_by", "recorded_at"], consents())


# --- documents, deliveries, the audit trail ---------------------------------------------------


def pick_status(rng: random.Random) -> tuple[str, str]:
    roll = rng.random()
    for status, rule, share in STATUSES:
        if roll < share:
            return status, rule
        roll -= share
    return "read", "ok"


class Chain:
    """The audit trail's hash chain, computed as app/audit/trail.py does."""

    def __init__(self) -> None:
        from app.models.audit import GENESIS_HASH

        self.seq = 0
        self.last = GENESIS_HASH

    def event(self, when: datetime, action: str, target: str, patient: str, rule: str | None,
              details: dict[str, Any]) -> list[Any]:
        from app.audit.trail import canonical

        self.seq += 1
        content = {"id": self.seq, "time": when.astimezone(UTC).isoformat(timespec="microseconds"),
                   "actor": ACTOR, "action": action, "target": target, "patient": patient,
                   "outcome": "success", "rule": rule, "request_id": None, "details": details,
                   "prev_hash": self.last}
        digest = hashlib.sha256(canonical(content)).hexdigest()
        row = [self.seq, content["time"], ACTOR, action, target, patient, "success", rule, None,
               json.dumps(details, separators=(",", ":")), self.last, digest]
        self.last = digest
        return row


DOC_COLUMNS = ["id", "document_id", "patient_id", "type", "title", "service", "author",
               "encounter", "signed_at", "sensitive", "third_party_data", "category",
               "content_type", "size", "sha256", "received_at", "request_hash", "response"]
DELIVERY_COLUMNS = ["id", "document_id", "recipient_gln", "doctor_id", "status", "rule",
                    "reason", "release_at", "decided_at", "delivered_at", "first_read_at",
                    "cancelled_at"]
AUDIT_COLUMNS = ["id", "time", "actor", "action", "target", "patient", "outcome", "rule",
                 "request_id", "details", "prev_hash", "hash"]


def load_documents(conn: psycopg.Connection, people: Population, total: int,
                   now: datetime, batch: int = 20_000) -> int:
    """Documents, their sealed content, deliveries and audit events, COPYed batch by batch."""
    from app.crypto import KeyRing

    ring = KeyRing(make_bench_app("10k").config["DOCUMENT_KEYS"])
    writer = _Writer(ring, people, total, now)
    for first in range(1, total + 1, batch):
        lines = writer.batch(first, min(total, first + batch - 1))
        copy_lines(conn, "documents", DOC_COLUMNS, lines.documents)
        with conn.cursor().copy("COPY document_contents (document_id, key_id, nonce, ciphertext)"
                                " FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "varchar", "bytea", "bytea"])
            for row in lines.contents:
                copy.write_row(row)
        copy_lines(conn, "deliveries", DELIVERY_COLUMNS, lines.deliveries)
        copy_lines(conn, "audit_events", AUDIT_COLUMNS, lines.audit)
        if first > 1 and (first - 1) % 100_000 == 0:
            print(f"  {first - 1:,} documents", file=sys.stderr, flush=True)
    conn.execute("UPDATE audit_head SET seq = %s, last_hash = %s WHERE id = 1",
                 (writer.chain.seq, writer.chain.last))
    for table in ("doctors", "patients", "consents", "documents", "deliveries"):
        conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                     f"(SELECT max(id) FROM {table}))")
    return writer.delivery_id


@dataclass
class _Lines:
    documents: list[str]
    contents: list[list[Any]]
    deliveries: list[str]
    audit: list[str]


class _Writer:
    """Rows as ingest would have written them, in document order (received_at ascending)."""

    def __init__(self, ring: Any, people: Population, total: int, now: datetime) -> None:
        self.ring = ring
        self.people = people
        self.rng = random.Random(11)
        self.letters = [letter(v) for v in range(8)]
        self.digests = [hashlib.sha256(body).hexdigest() for body in self.letters]
        self.chain = Chain()
        self.start = now - SPAN - timedelta(days=3)
        self.step = SPAN / total
        self.delivery_id = 0

    def batch(self, first: int, last: int) -> _Lines:
        lines = _Lines([], [], [], [])
        for n in range(first, last + 1):
            self.document(n, lines)
        return lines

    def document(self, n: int, lines: _Lines) -> None:
        from app.crypto import associated_data
        from app.dispatch.facts import iso

        rng = self.rng
        received = self.start + self.step * n
        p = rng.randrange(PATIENTS)
        variant = n % len(self.letters)
        body = self.letters[variant]
        document_id = f"DPI-{received.year}-{n:09d}"
        dpi = f"P{p:08d}"
        sealed = self.ring.seal(body, associated_data(document_id))
        lines.contents.append([n, sealed.key_id, sealed.nonce, sealed.ciphertext])
        answers = []
        for d in self.people.doctors_of[p]:
            self.delivery_id += 1
            status, rule = pick_status(rng)
            release = received + timedelta(days=7) if status == "held" else None
            delivered = received if status in ("delivered", "read") else None
            read_at = received + timedelta(hours=rng.randrange(1, 200)) \
                if status == "read" else None
            cancelled = received + timedelta(days=2) if status == "cancelled" else None
            lines.deliveries.append(text_row(
                [self.delivery_id, n, gln(d), d + 1, status, rule, REASONS[rule], release,
                 received, delivered, read_at, cancelled]))
            # The answer ingest gave: cancelled ones were blocked then (no_consent on arrival).
            answered = {"held": "held", "blocked": "blocked", "cancelled": "blocked"}
            answers.append({"recipient": gln(d), "status": answered.get(status, "delivered"),
                            "rule": rule, "reason": REASONS[rule], "release_at": iso(release)})
        response = {"document_id": document_id, "deliveries": answers}
        kind = TYPES[n % len(TYPES)]
        lines.documents.append(text_row(
            [n, document_id, p + 1, kind, f"Lettre {kind} {n}", SERVICES[n % len(SERVICES)],
             "Dr Bench", "outpatient" if n % 3 else "inpatient", received - timedelta(hours=2),
             False, False, "report", "application/pdf", len(body), self.digests[variant],
             received, hashlib.sha256(document_id.encode()).hexdigest(),
             json.dumps(response, separators=(",", ":"))]))
        target = f"document:{document_id}"
        lines.audit.append(text_row(self.chain.event(
            received, "document.received", target, dpi, None,
            {"size": len(body), "sha256": self.digests[variant], "recipients": len(answers)})))
        for answer in answers:
            lines.audit.append(text_row(self.chain.event(
                received, "delivery.decided", target, dpi, answer["rule"],
                {"recipient": answer["recipient"], "status": answer["status"],
                 "release_at": answer["release_at"]})))


def copy_lines(conn: psycopg.Connection, table: str, columns: list[str], lines: list[str],
               chunk: int = 20000) -> None:
    with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for i in range(0, len(lines), chunk):
            copy.write("".join(lines[i:i + chunk]))


# --- databases ----------------------------------------------------------------------------------


def exists(size: str) -> bool:
    """Built and complete: the seeder writes a marker table last."""
    with psycopg.connect(libpq_url("10k").rsplit("/", 1)[0] + "/postgres",
                         autocommit=True) as admin:
        found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                              (database_name(size),)).fetchone()
    if not found:
        return False
    with psycopg.connect(libpq_url(size)) as conn:
        return conn.execute("SELECT to_regclass('bench_seeded') IS NOT NULL").fetchone() == (True,)


def create_database(size: str) -> None:
    with psycopg.connect(libpq_url(size).rsplit("/", 1)[0] + "/postgres",
                         autocommit=True) as admin:
        name = database_name(size)
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    migrate(size)


def migrate(size: str) -> None:
    """The real migrations (``flask db upgrade``): a kept database gets new indexes too."""
    from flask_migrate import upgrade

    app = make_bench_app(size)
    with app.app_context():
        upgrade()
        from app.extensions import db

        db.engine.dispose()


def check_disk(size: str) -> None:
    """About 9 KB per document on disk (content, row, indexes, audit): refuse when short."""
    free = shutil.disk_usage("/").free  # PostgreSQL's data is on the root disk here
    need = SIZES[size] * 9 * 1024 * 2  # twice: WAL and the index builds on top
    if free < need:
        raise SystemExit(f"not enough disk for {size}: {free / 1e9:.1f} GB free, "
                         f"{need / 1e9:.1f} GB wanted")


def build(size: str) -> dict[str, Any]:
    check_disk(size)
    began = time.monotonic()
    create_database(size)
    now = datetime.now(UTC).replace(microsecond=0)
    people = population(random.Random(3))
    with psycopg.connect(libpq_url(size)) as conn:
        conn.execute("SET synchronous_commit = off")
        load_people(conn, people, now)
        deliveries = load_documents(conn, people, SIZES[size], now)
        conn.execute("CREATE TABLE bench_seeded (built_at timestamptz, documents int)")
        conn.execute("INSERT INTO bench_seeded VALUES (now(), %s)", (SIZES[size],))
        conn.commit()
    with psycopg.connect(libpq_url(size), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    seconds = time.monotonic() - began
    print(f"{database_name(size)}: {SIZES[size]:,} documents, {deliveries:,} deliveries "
          f"in {seconds:.0f} s", file=sys.stderr)
    return {"size": size, "seconds": round(seconds, 1), "deliveries": deliveries}


def ensure(sizes: list[str], rebuild: bool = False) -> list[dict[str, Any]]:
    built = []
    for size in sizes:
        if rebuild or not exists(size):
            built.append(build(size))
        else:
            migrate(size)
            print(f"{database_name(size)}: present (use --rebuild to build again)",
                  file=sys.stderr)
    return built


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--rebuild", action="store_true", help="build even when present")
    args = parser.parse_args(argv)
    ensure(args.sizes, args.rebuild)


if __name__ == "__main__":
    main()
