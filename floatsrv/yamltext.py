"""YAML written by people (the config file, the vendor's license input): safe loading that refuses a key
given twice in one mapping. PyYAML keeps the last of two equal keys without a word, so two
`floating_users:` lines would silently serve the second; here they are an error naming the line."""

from __future__ import annotations

from typing import Any

import yaml

# libyaml's parser when present: the pure-Python one takes seconds on a config with 10k licenses.
_BASE: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class DuplicateKey(yaml.YAMLError):
    """A mapping names the same key twice; `line` is 1-based."""

    def __init__(self, key: object, line: int, first_line: int) -> None:
        self.key, self.line, self.first_line = key, line, first_line
        super().__init__(f"line {line}: {key} is given twice in this mapping (first on line {first_line})")


class _Loader(_BASE):  # type: ignore[misc,valid-type]  # the C loader has no stubs of its own
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        # The mapping's own keys only: a key merged in with `<<` may be overridden on purpose.
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKey(key, line, seen[key])
            seen[key] = line
        mapping: dict[object, object] = super().construct_mapping(node, deep=deep)
        return mapping


def load(text: str) -> Any:
    """Parse YAML text safely. Raises yaml.YAMLError (DuplicateKey for a key given twice)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 -- a SafeLoader subclass
