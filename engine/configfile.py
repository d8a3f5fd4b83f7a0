"""The one loader of every YAML file auflow reads: run configs, training and distillation configs, fleet files.

``load_yaml_model(Model, path, overrides)`` reads a file through PyYAML's safe loader, refuses what is
not a config before it costs anything (bytes that are not UTF-8, files over 1 MB, brackets nested past
64 levels, recursive or exploding aliases, tagged values PyYAML cannot build), applies dotted
``--set a.b=v`` overrides (values read as YAML), validates the tree with a pydantic model derived from
:class:`Strict` (unknown keys are errors naming the valid ones) and raises one :class:`ConfigError`
line that names the file and line of the bad key — or the override that set it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """The base of every config section auflow validates: unknown keys are errors, and values are
    validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _printable(text: str) -> str:
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def format_validation_error(e: ValidationError, where: str, model: type[BaseModel]) -> str:
    """One line per problem, naming the key and, for unknown keys, the valid ones."""
    lines = []
    for err in e.errors():
        loc = ".".join(_printable(str(p)) for p in err["loc"])  # a key may hold a newline: the error stays one line
        key = f"{where}.{loc}" if where and loc else (where or loc)
        if err["type"] == "extra_forbidden":
            parent = model
            for part in err["loc"][:-1]:
                field = parent.model_fields.get(str(part)) if isinstance(parent, type) and issubclass(parent, BaseModel) else None
                ann = getattr(field, "annotation", None)
                parent = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
                if parent is None:
                    break
            valid = ", ".join(parent.model_fields) if parent is not None else "?"
            lines.append(f"unknown key '{key}' (valid keys: {valid})")
        else:
            lines.append(f"{key}: {err['msg']}")
    return "; ".join(lines)



#: nodes a config document may expand to (aliases counted at every use): a config has a few hundred;
#: a YAML "billion laughs" of nested aliases would otherwise take minutes and gigabytes to validate
MAX_NODES = 100_000


def _yaml_problem(e: yaml.YAMLError) -> str:
    """PyYAML's message without its caret drawing, on one line."""
    what = " ".join(str(getattr(e, "problem", None) or e).split())
    context = getattr(e, "context", None)
    if context and getattr(e, "problem", None):
        what = f"{' '.join(str(context).split())}: {what}"
    return what


def _yaml_error(path: Path | str, e: yaml.YAMLError) -> ConfigError:
    """One line for a YAML error (PyYAML's own message spans several, with a caret drawing)."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else f"{path}"
    return ConfigError(f"{where}: not valid YAML: {_yaml_problem(e)}")


#: deepest nesting of flow collections ([ {) a config may have: PyYAML's scanner takes time quadratic in
#: it (5,000 levels: 3 s; 50,000: minutes) before it gives up; a config nests a handful
MAX_FLOW_DEPTH = 64
#: largest config file read (the packaged ones are a few kB)
MAX_CONFIG_BYTES = 1 << 20


def _check_flow_depth(text: str, path: Path | str) -> None:
    depth = 0
    for n, line in enumerate(text.splitlines(), 1):
        quote = None
        for ch in line:
            if quote:
                quote = None if ch == quote else quote
            elif ch in "'\"":
                quote = ch
            elif ch == "#":
                break
            elif ch in "[{":
                depth += 1
                if depth > MAX_FLOW_DEPTH:
                    raise ConfigError(f"{path}, line {n}: brackets nested more than {MAX_FLOW_DEPTH} levels deep; "
                                      "a config needs a few")
            elif ch in "]}":
                depth = max(0, depth - 1)


def _compose(text: str, path: Path | str):
    """The YAML node graph of ``text`` (safe loader), refused when an alias refers to itself or the
    document would expand to more than :data:`MAX_NODES` nodes."""
    _check_flow_depth(text, path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise _yaml_error(path, e) from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
    count, on_path = 0, set()

    def walk(node) -> None:
        nonlocal count
        count += 1
        if count > MAX_NODES:
            raise ConfigError(f"{path}: the document expands to more than {MAX_NODES} values "
                              "(aliases repeated inside aliases?); a config needs far fewer")
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            if id(node) in on_path:
                raise ConfigError(f"{path}, line {node.start_mark.line + 1}: an alias refers to the value that "
                                  "contains it (a recursive structure); a config cannot be recursive")
            on_path.add(id(node))
            children = [c for kv in node.value for c in kv] if isinstance(node, yaml.MappingNode) else node.value
            for child in children:
                walk(child)
            on_path.discard(id(node))

    if root is not None:
        try:
            walk(root)
        except RecursionError:
            raise ConfigError(f"{path}: the document is nested too deeply for a config") from None
    return root


def _line_index(root) -> dict[tuple, int]:
    """Map each key path in the composed YAML document (or YAML text) to its 1-based line (for error messages)."""
    lines: dict[tuple, int] = {}
    if isinstance(root, str):
        try:
            root = _compose(root, "<config>")
        except ConfigError:
            return lines

    def walk(node, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = path + (k.value if isinstance(k, yaml.ScalarNode) else f"<{k.tag}>",)
                lines[key] = k.start_mark.line + 1
                walk(v, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                lines[path + (i,)] = v.start_mark.line + 1
                walk(v, path + (i,))

    if root is not None:
        walk(root, ())
    return lines


def mark_overrides(lines: dict[tuple, int | str], overrides: list[tuple[str, str]]) -> None:
    """An override replaces what the file says at its key: errors there name the override, not a
    line of the file the user may never have opened (``--set analyzer.batch=-3``)."""
    for item, key in overrides:
        loc = tuple(int(p) if p.isdigit() else p for p in key.split("."))
        for k in [k for k in lines if k[:len(loc)] == loc]:
            del lines[k]
        shown = _printable(item)
        lines[loc] = shown if len(shown) <= 120 else shown[:117] + "..."


def where_(path: Path | str | None, lines: dict[tuple, int | str], loc: tuple) -> str:
    """``"<file>, line N: "`` or ``"<key>=<value> (from the command line): "`` for an error at ``loc``."""
    line = loc_line(lines, loc)
    if isinstance(line, str):
        return f"{line} (from the command line): "
    if path is None:
        return f"line {line}: " if line else ""
    return f"{path}, line {line}: " if line else f"{path}: "


def loc_line(lines: dict[tuple, int | str], loc: tuple) -> int | str | None:
    loc = tuple(int(p) if isinstance(p, int) or (isinstance(p, str) and p.isdigit()) else p for p in loc)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return None


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node: Any = tree
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"--set {dotted}: {'.'.join(parts[:i + 1])} is not an index of a list of {len(node)}")
            node = node[int(part)]
            continue
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, (dict, list)):
            raise ConfigError(f"--set {dotted}: {'.'.join(parts[:i + 1])} is a value, not a section")
        node = nxt
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ConfigError(f"--set {dotted}: {last} is not an index of a list of {len(node)}")
        node[int(last)] = value
    else:
        node[last] = value


def parse_override(item: str) -> tuple[str, Any]:
    """``a.b=v`` → (``a.b``, v) with v parsed as YAML (so 16 is an int, null is None)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} must look like section.key=value (e.g. analyzer.batch=16)")
    try:
        _check_flow_depth(raw, f"override {item[:60]!r}")
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: value is not valid YAML: {_yaml_problem(e)}") from None
    except (ValueError, TypeError, AttributeError, OverflowError, RecursionError) as e:  # PyYAML's constructors on odd scalars
        raise ConfigError(f"override {item!r}: value is not valid YAML: {type(e).__name__}") from None
    return key.strip(), value


def _read_text(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size} bytes is not a config (at most {MAX_CONFIG_BYTES}); "
                              "wrong file?")
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ConfigError(f"{path}, line {line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                          "save the config as UTF-8") from None


def read_yaml(path: Path) -> tuple[Any, dict[tuple, int]]:
    """The document in ``path`` (safe loader) and the line of each key; one ConfigError line for bytes
    that are not UTF-8, invalid YAML, a recursive alias or a document that expands past :data:`MAX_NODES`."""
    text = _read_text(path)
    root = _compose(text, path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise _yaml_error(path, e) from None
    except (ValueError, TypeError, AttributeError, OverflowError, RecursionError) as e:
        # PyYAML's constructors fail this way on some malformed scalars (`!!timestamp x`, `!!binary` of bad base64)
        raise ConfigError(f"{path}: not valid YAML: a value cannot be read ({type(e).__name__}); check tagged "
                          "values (!!...)") from None
    return data, _line_index(root)


def load_yaml_model(model: type[M], path: str | Path | None, overrides: list[str] | tuple[str, ...] = (), *,
                    what: str = "config", updates: dict[str, Any] | None = None, hint: str = "",
                    ) -> tuple[M, dict[tuple, int | str]]:
    """Read ``path`` (``None``: an empty document), apply ``overrides`` (``a.b=v``) and then ``updates``
    (top-level keys whose value is not None: a command line's own options), validate with ``model``.
    Returns the model and the line of each key (overrides name themselves), for checks made later."""
    data: Any = {}
    lines: dict[tuple, int | str] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{what} {path} does not exist" + (f" ({hint})" if hint else ""))
        data, lines = read_yaml(path)
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of {model.__name__} keys, got {type(data).__name__}")
        data = copy.deepcopy(data)
    applied = []
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(data, key, value)
        applied.append((item, key))
    mark_overrides(lines, applied)
    for key, value in (updates or {}).items():
        if value is not None:
            data[key] = value
            lines[(key,)] = f"{key}={value!r}"
    return validate_model(model, data, path if path is not None else what, lines), lines


def validate_model(model: type[M], data: Any, where: Path | str | None = None,
                   lines: dict[tuple, int | str] | None = None) -> M:
    """``model.model_validate(data)``, its first problem as one ConfigError line naming ``where`` and the line."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(where_(where, lines or {}, tuple(e.errors()[0]["loc"])) + format_validation_error(e, "", model)) from None
