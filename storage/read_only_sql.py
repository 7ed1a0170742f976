"""What `beacon query` may run without --write, decided on ClickHouse's own parse of it.

``readonly = 1`` (the session ``read_only_query`` runs on) stops writes to tables and
settings, but not everything that reaches outside the store: ``SELECT … INTO OUTFILE``
writes a file in the engine's process, ``DESCRIBE TABLE file(…)`` and
``DESCRIBE TABLE url(…)`` infer a schema by reading a file or making a request, and the
scalar ``file(…)`` reads a file. So, before it runs, the statement goes through
``EXPLAIN AST`` (the server's parser, on the same read-only session) and must pass an
allow-list: a statement kind that only reads, no ``INTO OUTFILE``, table functions only
from a list that computes rows in the engine, and none of the scalar functions that read
files, dictionaries (whose sources may be files or URLs), other servers or models.

The dump is text, one node a line (``Kind detail (children N)``). Literals come escaped,
but an identifier may hold a line break, so a node's line could be forged: the dump is
parsed strictly (each node's count of children must match the lines indented under
it), and one that does not parse is refused rather than guessed at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

WRITE_REFUSAL = "read-only; use --write (recorded in privacy_log)"

# Statements that print something and change nothing (an EXPLAIN is checked on what it explains).
READING_STATEMENTS = frozenset(
    {
        "SelectWithUnionQuery",
        "SelectIntersectExceptQuery",
        "DescribeQuery",
        "ShowTables",
        "ShowColumns",
        "ShowCreateTableQuery",
        "ShowCreateViewQuery",
        "ShowCreateDatabaseQuery",
        "ShowCreateDictionaryQuery",
        "ExistsTableQuery",
        "ExistsDatabaseQuery",
        "ExistsViewQuery",
        "ExistsDictionaryQuery",
        "Explain",
        "ShowProcesslistQuery",
    }
)

# Table functions that make rows inside the engine from their arguments or from its own tables.
LOCAL_TABLE_FUNCTIONS = frozenset(
    name.lower()
    for name in (
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "values",
        "null",
        "view",
        "merge",
        "generateRandom",
        "generateSeries",
        "generate_series",
        "format",
        "primes",
    )
)

# Scalar functions that read outside the store: files, dictionaries (a dictionary's source may be a
# file, a URL or another server), other servers, models, AI services, Keeper.
_OUTSIDE_SCALARS = frozenset(
    name.lower()
    for name in (
        "file",
        "hasColumnInTable",
        "catboostEvaluate",
        "evalMLMethod",
        "generateSerialID",
    )
)
_OUTSIDE_SCALAR_PREFIXES = ("dict", "naivebayesclassifier", "ai")

_LINE = re.compile(r"^(?P<indent> *)(?P<kind>\S+)(?P<detail>.*?)(?: \(children (?P<children>\d+)\))?$")


class ReadOnlyRefusal(ValueError):
    """The statement may not run without --write."""


@dataclass
class Node:
    kind: str
    detail: str
    children: list[Node] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The first word after the kind: a function's name, for ``Function``."""
        words = self.detail.split()
        return words[0] if words else ""

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


def parse_ast_dump(lines: list[str]) -> Node:
    """The tree of an ``EXPLAIN AST`` dump; ``ReadOnlyRefusal`` when it is not one well-formed tree."""
    root, end = _parse_node(lines, 0, 0)
    if end != len(lines):
        raise ReadOnlyRefusal("read-only: the statement's parse could not be checked (a line break in a name?)")
    return root


def _parse_node(lines: list[str], at: int, depth: int) -> tuple[Node, int]:
    match = _LINE.match(lines[at]) if at < len(lines) else None
    if not match or len(match["indent"]) != depth:
        raise ReadOnlyRefusal("read-only: the statement's parse could not be checked (a line break in a name?)")
    node = Node(match["kind"], match["detail"].strip())
    at += 1
    for _ in range(int(match["children"] or 0)):
        child, at = _parse_node(lines, at, depth + 1)
        node.children.append(child)
    return node, at


def check_read_only(root: Node, table_functions: frozenset[str]) -> None:
    """Raise ``ReadOnlyRefusal`` unless the parsed statement only reads the store.
    ``table_functions``: every table function the engine knows, lower-case."""
    _check_statement(root)
    for node in root.walk():
        if node.kind == "Function" and _reaches_outside(node.name.lower(), table_functions):
            raise ReadOnlyRefusal(f"read-only: {node.name}(…) reaches outside the store; refused")
        if node.kind in READING_STATEMENTS and any(child.kind == "Literal" for child in node.children):
            raise ReadOnlyRefusal("read-only: INTO OUTFILE writes a file; refused")


def _check_statement(root: Node) -> None:
    if root.kind not in READING_STATEMENTS:
        raise ReadOnlyRefusal(WRITE_REFUSAL)
    if root.kind == "Explain":  # EXPLAIN <statement>: the statement it explains must read too
        explained = [child for child in root.children if child.kind not in ("Literal", "Identifier", "Set")]
        for statement in explained[:1]:
            _check_statement(statement)


def _reaches_outside(name: str, table_functions: frozenset[str]) -> bool:
    if name in table_functions and name not in LOCAL_TABLE_FUNCTIONS:
        return True
    return name in _OUTSIDE_SCALARS or name.startswith(_OUTSIDE_SCALAR_PREFIXES)
