"""pypika helpers shared by the query modules, which render their statements once at import.

pypika's hints lose the dialect: every builder method is hinted as returning the base
`QueryBuilder`, which hides RETURNING, ON CONFLICT and FOR UPDATE OF from the type checker
although a `PostgreSQLQuery` has them at run time. `postgres(q)` gives the type back
(checked, not cast).
"""

from __future__ import annotations

from pypika import CustomFunction, Parameter
from pypika.dialects import PostgreSQLQueryBuilder
from pypika.queries import QueryBuilder
from pypika.terms import Function, Term

NOW: Function = CustomFunction("NOW")()
_ANY = CustomFunction("ANY", ["array"])


def postgres(query: QueryBuilder) -> PostgreSQLQueryBuilder:
    """`query` (built from `PostgreSQLQuery`) as the PostgreSQL builder it is."""
    if not isinstance(query, PostgreSQLQueryBuilder):
        raise TypeError(f"not a PostgreSQLQuery builder: {type(query).__name__}")
    return query


def param(n: int, cast: str = "") -> Parameter:
    """asyncpg's positional placeholder `$n`, optionally with a cast (`$1::uuid[]`)."""
    return Parameter(f"${n}::{cast}" if cast else f"${n}")


def params(count: int, first: int = 1) -> list[Parameter]:
    return [param(i) for i in range(first, first + count)]


def any_of(array: Term) -> Function:
    """`= ANY(array)`: one placeholder for a whole list of values."""
    return _ANY(array)


def limit_param(query: QueryBuilder, n: int) -> QueryBuilder:
    """`LIMIT $n`, so one statement serves every limit (pypika renders any term there;
    its hint says int)."""
    return query.limit(param(n))  # type: ignore[arg-type]
