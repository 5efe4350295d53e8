"""The two SQL dialects kickoff speaks: SQLite's, in which every rule is written once
(store/, projections/), and PostgreSQL's, into which store/pgconnection.py translates it.
No I/O here.

The rules are written with `?` and `:name` parameters, `BEGIN IMMEDIATE`, `nullif(?, x'')`
for a bound NULL (store/sqlite.py's NULL) and SQLite's column types. PostgreSQL gets the
same statements with `%s` / `%(name)s`, `BEGIN`, a plain parameter (the NULL sentinel
bound as None) and its own types (`postgres_ddl`). What cannot be translated word for word,
the dialect says: literals for true and false, "no limit", and how a row is compared with
a payload field of its event (`agreement_sql`, checkpoint.py's check against the log).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from kickoff.store.recorder import Agreement

_BEGIN = re.compile(r"\s*BEGIN IMMEDIATE\s*$")
_INSTR = re.compile(r"\binstr\(")
_LIKE = re.compile(r"\bLIKE\b")  # SQLite's LIKE ignores case (ASCII's): PostgreSQL's ILIKE
_TYPES = (  # SQLite's column types, as PostgreSQL spells them (whole words, in DDL)
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\)\s*STRICT\s*$"), ")"),
)


@lru_cache(maxsize=4096)
def to_postgres(sql: str, *, params: bool) -> str:
    """A statement of the rules in PostgreSQL's words: its types in a CREATE or ALTER
    TABLE; with `params`, as psycopg binds them (`?` -> `%s`, `:name` -> `%(name)s`, a
    literal % doubled)."""
    if _BEGIN.match(sql):
        return "BEGIN"
    if sql.lstrip()[:12].upper() in ("CREATE TABLE", "ALTER TABLE "):
        sql = postgres_ddl(sql)
    sql = _INSTR.sub("strpos(", sql.replace("nullif(?, x'')", "?"))
    sql = _LIKE.sub("ILIKE", sql)
    if not params:
        return sql
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "'":  # a literal: copied, but for its % (psycopg reads the whole text)
            j = i + 1
            while j < n and not (sql[j] == "'" and sql[j + 1 : j + 2] != "'"):
                j += 2 if sql[j] == "'" else 1
            out.append(sql[i : j + 1].replace("%", "%%"))
            i = j + 1
            continue
        if c == "?":
            out.append("%s")
        elif c == "%":
            out.append("%%")
        elif c == ":" and sql[i + 1 : i + 2].isidentifier() and sql[i - 1 : i] != ":":
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] == "_"):
                j += 1
            out.append(f"%({sql[i + 1 : j]})s")
            i = j
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def postgres_ddl(sql: str) -> str:
    """A CREATE TABLE / ALTER TABLE of the rules with PostgreSQL's column types."""
    for pattern, replacement in _TYPES:
        sql = pattern.sub(replacement, sql)
    return sql


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the engines beyond the words `to_postgres` changes."""

    name: str
    true: str
    false: str
    no_limit: int | None  # the LIMIT parameter that means "all rows"

    def payload(self, alias: str, name: str) -> str:
        """A field of the event row `alias`'s payload; NULL where it is null or left out."""
        if self.name == "sqlite":
            return f"({alias}.payload ->> '$.{name}')"
        return f"nullif({alias}.payload::jsonb -> '{name}', 'null'::jsonb)"

    def default(self, value: str, default: str) -> str:
        if self.name == "sqlite":
            return f"coalesce({value}, {default})"
        return f"coalesce({value}, to_jsonb({default}))"

    def seconds_after(self, later: str, earlier: str, seconds: str) -> str:
        """The stored time `later` is `seconds` after `earlier`, to a microsecond (times
        are stored to the microsecond; the float `seconds` is rounded as timedelta does)."""
        if self.name == "sqlite":  # whole seconds as strftime reads them, then the digits
            whole = "(strftime('%s', substr({0}, 1, 19)) * 1000000 + substr({0}, 21, 6))"
            apart = f"({whole.format(later)} - {whole.format(earlier)})"
        else:
            apart = f"extract(epoch from (({later})::timestamptz - ({earlier})::timestamptz))"
            apart = f"({apart} * 1000000)"
            seconds = f"({seconds})::text::float8"  # a jsonb number
        return f"abs({apart} - ({seconds}) * 1000000.0) <= 1"

    def same(self, expected: str, expr: str, *, kind: str) -> str:
        """`expected` (of `kind`: "field", "envelope", "flag", "count") equals `expr`, a
        row's SQL expression; NULL equals NULL.

        SQLite's ->> gives a payload field its SQL type (a JSON list as its text, as the
        projections store it); PostgreSQL compares as jsonb, the row's value converted.
        """
        if self.name == "sqlite":  # (parentheses: `1 IS a IS NULL AND b` compares 1 with a)
            return f"{expected} IS ({expr})"
        if kind == "field":
            return (
                f"{expected} IS NOT DISTINCT FROM (CASE WHEN jsonb_typeof({expected}) IN "
                f"('array', 'object') THEN ({expr})::text::jsonb ELSE to_jsonb({expr}) END)"
            )
        if kind == "envelope":
            return f"{expected} IS NOT DISTINCT FROM ({expr})::text"
        if kind == "flag":
            return f"({expr}) IS TRUE"
        return f"{expected} IS NOT DISTINCT FROM ({expr})"


SQLITE = Dialect("sqlite", true="1", false="0", no_limit=-1)
POSTGRES = Dialect("postgresql", true="true", false="false", no_limit=None)


def agreement_sql(a: Agreement, d: Dialect) -> str:
    """The keys of `a.table`'s rows that do not match their events (see Agreement), with
    the checkpoint's seq as the parameter `:seq`."""
    same = [_same(a, d, expr, field) for expr, field in a.fields]
    join = ""
    if a.pick is not None:
        kinds = f" AND type IN ({', '.join(map(repr, a.types))})" if a.types else ""
        pick = "min" if a.pick == "first" else "max"
        event = (  # `+seq`: keep the planner on the key's index, not on a seq range
            f"SELECT {pick}(seq) FROM events WHERE {a.by} = p.{a.key}{kinds} AND +seq <= :seq"
        )
        join = f" LEFT JOIN events e ON e.seq = ({event})"
        same.insert(0, "e.seq IS NOT NULL")
        if a.one_of:
            same.insert(1, f"e.type IN ({', '.join(map(repr, a.one_of))})")
    return (
        f"SELECT p.{a.key} FROM {a.table} p{join} "
        f"WHERE ({a.where}) AND NOT coalesce({' AND '.join(same) or d.true}, {d.false})"
    )


def _same(a: Agreement, d: Dialect, expr: str, field: str) -> str:
    """A row's expression against what it must equal (see Agreement.fields)."""
    if field in ("@type", "@at"):
        return d.same(f"e.{field[1:]}", expr, kind="envelope")
    if field.startswith("@at+"):
        return d.seconds_after(expr, "e.at", d.payload("e", field[4:]))
    if field == "@true":
        return d.same(d.true, expr, kind="flag")
    if field.startswith("?"):
        has = f"(CASE WHEN {d.payload('e', field[1:])} IS NOT NULL THEN 1 ELSE 0 END)"
        return d.same(has, expr, kind="count")
    if field.startswith("#"):
        kind, name = field[1:].split(".")
        count = (
            f"(SELECT count(*) FROM events c WHERE c.{a.by} = p.{a.key} AND c.type = {kind!r} "
            f"AND {d.payload('c', name)} IS NOT NULL AND +c.seq <= :seq)"
        )
        return d.same(count, expr, kind="count")
    name, _, default = field.partition("|")
    value = d.payload("e", name)
    return d.same(d.default(value, default) if default else value, expr, kind="field")
