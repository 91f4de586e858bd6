"""The one exception family. The CLI prints these as one line with exit code 2."""
from __future__ import annotations


class StreamkitError(Exception):
    """Base of every error streamkit raises on purpose (bad input, bad plugin)."""

    exit_code = 2


class ConfigError(StreamkitError):
    """A pipeline file or option is wrong. Knows the file, line and key path."""

    def __init__(self, message: str, *, file: str | None = None,
                 line: int | None = None, key: str | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.key = key
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"


class PluginError(StreamkitError):
    """A plugin could not be loaded or broke the plugin contract."""


class SourceUnavailable(StreamkitError):
    """A source could not reach its server within its timeout."""

    exit_code = 1
