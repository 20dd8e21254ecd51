"""YAML loading that remembers where each value came from, for error messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class YamlFileError(Exception):
    """The file cannot be read or is not valid YAML; ``str()`` is one line."""


@dataclass(frozen=True)
class YamlDocument:
    """Parsed YAML plus its node tree, so a validation error can name a line."""

    path: Path
    data: Any
    root: yaml.Node | None

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """The 1-based line of the value at ``loc`` (or of its deepest known parent)."""
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for key in loc:
            if isinstance(node, yaml.MappingNode):
                pair = next(((k, v) for k, v in node.value if k.value == key), None)
                # A mapping entry is reported at its key's line.
                marker, node = pair if pair else (None, None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
                marker = node = node.value[key] if 0 <= key < len(node.value) else None
            else:
                marker = node = None
            if marker is None:
                break
            line = marker.start_mark.line + 1
        return line


# libyaml's parser when PyYAML was built with it: the default rules parse in a tenth
# of the time (it is what `kmon rules test` waits for).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path: Path) -> YamlDocument:
    """Read ``path`` as one YAML document; an empty file is an empty mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlFileError(f"{path}: cannot read: {exc}") from exc
    try:
        root = yaml.compose(text, Loader=_LOADER)
        data = yaml.load(text, Loader=_LOADER)  # a safe loader (above)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlFileError(f"{where}: invalid YAML: {problem}") from exc
    return YamlDocument(path=path, data={} if data is None else data, root=root)
