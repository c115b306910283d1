"""KB search latency with 10,000 published articles, on SQLite (FTS5) or PostgreSQL.

    .venv/bin/python bench/kb_search.py [--db sqlite|postgres] [--articles 10000]

Seeds the articles through the real schema (migrations and the index triggers), then times
500 suggestion queries as a customer types them (one to three words, the last one partial).
The articles draw on a vocabulary of about 4,000 terms, so a query matches some articles, not
all. The baseline, in the same run, is a plain substring scan (`LIKE '%word%'` on title and
body, first five hits) over the same rows: what a search without an index costs. Prints
p50/p99 for both and their ratio. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, text  # noqa: E402

from gateway.config import Settings  # noqa: E402
from gateway.demo import seed_demo  # noqa: E402
from gateway.services import build_services  # noqa: E402
from storage.models import KBArticle, utcnow  # noqa: E402
from storage.search import search_articles  # noqa: E402

WORDS = ("printer toner invoice refund password login account billing shipping delivery "
         "order screen update install network router email calendar export report backup "
         "license upgrade mobile tablet sync storage permission team workspace").split()
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def timed(fn, queries) -> list[float]:
    out = []
    for q in queries:
        start = time.perf_counter()
        fn(q)
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--articles", type=int, default=10_000)
    args = ap.parse_args()
    rng = random.Random(7)
    syllables = ("ka lo mi ne ru sa ti vo pe da xi zu bor fen gal hut jir kem lun mar nop "
                 "qui rest sol tam vir wex yal zon").split()
    vocab = list(WORDS) + sorted({"".join(rng.choices(syllables, k=rng.randint(2, 4)))
                                  for _ in range(4000)})  # a real KB's spread of terms
    schema = f"kb_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        if args.db == "postgres":
            import psycopg

            with psycopg.connect(PG.replace("+psycopg", ""), autocommit=True) as c:
                c.execute(f'CREATE SCHEMA "{schema}"')
            url = f"{PG}?options=-csearch_path%3D{schema}"
        else:
            url = f"sqlite:///{tmp}/kb.db"
        svc = build_services(Settings(data_dir=Path(tmp), database_url=url,
                                      public_url="http://x", secret_key="bench-secret-0123456789"))
        try:
            seed_demo(svc.store)
            ws = svc.store.workspace_by_slug("acme")
            now = utcnow()
            rows = [{"workspace_id": ws.id, "title": " ".join(rng.sample(vocab, 4)) + f" #{i}",
                     "body": " ".join(rng.choices(vocab, k=120)), "published": True,
                     "visibility": "public", "created_at": now, "updated_at": now}
                    for i in range(args.articles)]
            with svc.engine.begin() as conn:
                conn.execute(insert(KBArticle), rows)
            with svc.engine.begin() as conn:  # as autovacuum would after a bulk load
                conn.execute(text("ANALYZE kbarticle" if args.db == "postgres" else "ANALYZE"))
            queries = []
            for _ in range(500):
                words = rng.sample(vocab, rng.randint(1, 3))
                words[-1] = words[-1][:rng.randint(3, len(words[-1]))]  # still typing
                queries.append(" ".join(words))
            like = text("SELECT id FROM kbarticle WHERE workspace_id = :ws AND published "
                        "AND (title LIKE :p OR body LIKE :p) LIMIT 5")

            def scan(q: str) -> None:
                with svc.engine.connect() as conn:
                    conn.execute(like, {"ws": ws.id, "p": f"%{q.split()[0]}%"}).all()

            fts = timed(lambda q: search_articles(svc.engine, ws.id, q), queries)
            base = timed(scan, queries)
        finally:
            svc.close()
            if args.db == "postgres":
                import psycopg

                with psycopg.connect(PG.replace("+psycopg", ""), autocommit=True) as c:
                    c.execute(f'DROP SCHEMA "{schema}" CASCADE')

    def p(values, q):
        return statistics.quantiles(values, n=100, method="inclusive")[q - 1]
    print(f"KB search, {args.articles} published articles, {args.db}, 500 typed queries")
    print(f"  ranked full-text:   p50 {p(fts, 50):6.2f} ms  p99 {p(fts, 99):6.2f} ms")
    print(f"  substring scan:     p50 {p(base, 50):6.2f} ms  p99 {p(base, 99):6.2f} ms")
    print(f"  p99 ratio: {p(fts, 99) / p(base, 99):.2f} of the unindexed scan")


if __name__ == "__main__":
    main()
