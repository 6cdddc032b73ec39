"""`logstack query` without SQL: a small interactive DuckDB shell on the lake and metrics.

Statements end with `;` and may span lines; `.help` lists the dot commands. From a
terminal it prompts and keeps a readline history; from a pipe it runs what it reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

import duckdb

from logstack_dagster.report.answers import text_table

HELP = """\
Statements end with ';' and may span lines. Tables: requests, quarantine (the lake),
hourly_traffic, hourly_status_codes, hourly_countries, hourly_offenders,
hourly_top_paths, hourly_top_referrers, hourly_not_found_paths (the metrics).
  .tables          list the views and tables
  .schema NAME     the columns of a view or table
  .help            this text
  .quit / .exit    leave (Ctrl-D too)"""


class Shell:
    """Reads statements line by line and prints each result as a table.

    `max_rows` caps what one statement prints; `errors` counts statements that failed.
    """

    def __init__(self, conn: duckdb.DuckDBPyConnection, out: TextIO, err: TextIO,
                 max_rows: int = 500, write_hint: bool = True):
        self.conn = conn
        self.out = out
        self.err = err
        self.max_rows = max_rows
        self.write_hint = write_hint
        self.buffer: list[str] = []
        self.errors = 0

    @property
    def continuing(self) -> bool:
        return bool(self.buffer)

    def feed(self, line: str) -> bool:
        """Take one line; run the statements it completes. False means: quit."""
        if not self.buffer and line.strip().startswith("."):
            return self._dot(line.strip())
        self.buffer.append(line)
        text = "\n".join(self.buffer)
        if statement_complete(text):
            self.buffer = []
            self.run(text)
        return True

    def run(self, sql: str) -> None:
        """Run every statement of `sql`, printing each result; errors are reported."""
        try:
            statements = self.conn.extract_statements(sql)
        except duckdb.Error as exc:
            self._error(exc)
            return
        for statement in statements:
            try:
                cursor = self.conn.execute(statement)
            except duckdb.Error as exc:
                self._error(exc)
                return
            self._print(cursor)

    def finish(self) -> None:
        """Run what is left when input ends, even without its final `;`."""
        if self.buffer and "\n".join(self.buffer).strip():
            text, self.buffer = "\n".join(self.buffer), []
            self.run(text)

    def _print(self, cursor: duckdb.DuckDBPyConnection) -> None:
        if cursor.description is None:
            return
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchmany(self.max_rows + 1)
        more = len(rows) > self.max_rows
        for line in text_table(names, rows[:self.max_rows]):
            print(line[2:], file=self.out)
        shown = min(len(rows), self.max_rows)
        tail = f"; only the first {self.max_rows} shown, add a LIMIT" if more else ""
        print(f"({shown} row{'s' * (shown != 1)}{tail})", file=self.out)

    def _dot(self, command: str) -> bool:
        name, _, argument = command.partition(" ")
        if name in (".quit", ".exit", ".q"):
            return False
        if name == ".help":
            print(HELP, file=self.out)
        elif name == ".tables":
            self.run("SELECT table_catalog AS database, table_name AS name, "
                     "lower(table_type) AS kind FROM information_schema.tables "
                     "WHERE table_name NOT LIKE '\\_%' ESCAPE '\\' ORDER BY 1, 2;")
        elif name == ".schema" and argument.strip():
            quoted = '"' + argument.strip().strip(";").replace('"', '""') + '"'
            self.run(f"DESCRIBE {quoted};")
        else:
            print(f"unknown command {command!r}; .help lists them", file=self.err)
            self.errors += 1
        return True

    def _error(self, exc: duckdb.Error) -> None:
        self.errors += 1
        message = str(exc).strip()
        print(f"Error: {message}", file=self.err)
        if self.write_hint and "read-only" in message.lower():
            print("The metric tables are open read-only; `logstack query --write` opens "
                  "them for writing.", file=self.err)


def statement_complete(text: str) -> bool:
    """True when `text` ends with a `;` outside quotes and comments."""
    quote = None
    last_significant = ""
    i = 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == quote:
                quote = None
            last_significant = char
        elif char in ("'", '"'):
            quote = char
            last_significant = char
        elif text.startswith("--", i):
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                return False
            i = end + 2
            continue
        elif not char.isspace():
            last_significant = char
        i += 1
    return quote is None and last_significant == ";"


def interact(shell: Shell, read: Callable[[str], str], prompt: bool,
             history: str | None = None) -> int:
    """Feed `shell` the lines `read` returns until it ends or `.quit`; return the exit code.

    `read` is `input` at a terminal, where Ctrl-C drops the statement being typed.
    """
    if prompt:
        _start_history(history)
        print("DuckDB on the logstack lake and metrics. .help for help, .quit to leave.",
              file=shell.out)
    try:
        while True:
            try:
                line = read(("   ...> " if shell.continuing else "logstack> ") if prompt
                            else "")
            except EOFError:
                if prompt:
                    print(file=shell.out)
                shell.finish()
                break
            except KeyboardInterrupt:
                if not prompt:
                    raise
                print("^C", file=shell.out)
                shell.buffer = []
                continue
            if not shell.feed(line):
                break
    finally:
        if prompt:
            _save_history(history)
    return 0 if prompt or shell.errors == 0 else 1


def _start_history(path: str | None) -> None:
    try:
        import readline
    except ImportError:  # Not every Python build has it; the shell works without.
        return
    if path:
        try:
            readline.read_history_file(path)
        except OSError:
            pass
        readline.set_history_length(1000)


def _save_history(path: str | None) -> None:
    try:
        import readline
    except ImportError:
        return
    if path:
        try:
            readline.write_history_file(path)
        except OSError:
            pass
