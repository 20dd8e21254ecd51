# The C scanner of monitor/rules/_scan.c; monitor/rules/match.py is its only user.
from collections.abc import Sequence

_Entry = tuple[str, str, str]

class Scanner:
    def __init__(
        self,
        patterns: Sequence[tuple[str, int, int, tuple[_Entry, ...]]],
        particles: Sequence[str],
        suffixes: Sequence[str],
        max_particles: int,
        plain: str,
        expansions: Sequence[tuple[str, str]] | None = None,
    ) -> None: ...
    def find(
        self, text: str, field: str | None, hit_type: type[tuple[object, ...]], /
    ) -> list[tuple[object, ...]] | None: ...
    def hits(
        self, folded: str, text: str, field: str | None, hit_type: type[tuple[object, ...]], /
    ) -> list[tuple[object, ...]]: ...
    def mapped(
        self,
        folded: str,
        text: str,
        field: str | None,
        hit_type: type[tuple[object, ...]],
        segments: list[tuple[int, int, int, bool]],
        /,
    ) -> list[tuple[object, ...]]: ...
    def spans(self, folded: str, /) -> list[tuple[int, int, str, str]]: ...
