"""Measure the package's structure from its source: the import graph between floors, imports inside functions,
function lengths and public names without a docstring.

docs/ARCHITECTURE.md states the rules (its ```floors block is read here); this script is how they are checked (tests/test_architecture.py asserts them, and the
closing notes of architecture issues quote its output). It reads the source with ``ast`` and imports nothing of
yoloparity, so it runs anywhere:

    python scripts/architecture.py            # a readable summary
    python scripts/architecture.py --json     # everything, for machines
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "yoloparity"
SRC = Path(__file__).resolve().parent.parent / "src" / PACKAGE
ARCHITECTURE = Path(__file__).resolve().parent.parent / "docs" / "ARCHITECTURE.md"


def read_floors(path: Path = ARCHITECTURE) -> tuple[tuple[str, ...], ...]:
    """The floors, lowest first, from the ```floors block of docs/ARCHITECTURE.md (one floor per line, its units
    separated by spaces): the document is the rule, this script only checks the code against it."""
    lines, inside = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() == "```floors":
            inside = True
        elif inside and line.strip().startswith("```"):
            break
        elif inside and line.strip():
            lines.append(tuple(line.split()))
    if not lines:
        raise SystemExit(f"{path}: no ```floors block")
    return tuple(lines)


# a module may import its own floor and the floors below it
FLOORS: tuple[tuple[str, ...], ...] = read_floors()
# third-party runtimes that are heavy or optional: an import of them (or of our module that needs one at import
# time) may sit inside a function, so that a command that does not use it never pays for it
HEAVY = ("torch", "onnxruntime", "openvino", "ai_edge_litert", "tflite_runtime", "ray", "matplotlib", "onnx",
         "onnxscript", "faster_coco_eval", "pycocotools", "tensorflow", "nncf", "cv2", "yaml", "tqdm")
MAX_FUNCTION_LINES = 60


def unit_of(module: str) -> str:
    """The floor unit of a dotted module name inside the package: its first component (``backends``, ``model``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def floor_of(unit: str) -> int:
    for level, units in enumerate(FLOORS):
        if unit in units:
            return level
    raise KeyError(f"{unit} is on no floor of docs/ARCHITECTURE.md (its ```floors block)")


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    top_imports: set[str] = field(default_factory=set)       # modules imported at module level (internal+external)
    function_imports: set[str] = field(default_factory=set)  # modules imported inside a function or class body


def module_name(path: Path, src: Path = SRC) -> str:
    rel = path.relative_to(src.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(current: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        parts = current.split(".")
        keep = len(parts) - node.level + (1 if is_package else 0)
        base = ".".join(parts[:keep] + ([node.module] if node.module else []))
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def load_modules(src: Path = SRC) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for path in sorted(src.rglob("*.py")):
        name = module_name(path, src)
        modules[name] = Module(name, path, ast.parse(path.read_text(), str(path)))
    for mod in modules.values():
        is_package = mod.path.name == "__init__.py"
        for node, in_function in _imports(mod.tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                targets = _resolve(mod.name, is_package, node)
            # keep the longest name that is a module ("from .x import y" where y is a function names module x)
            resolved = set()
            for target in targets:
                if target.startswith(PACKAGE):
                    while target not in modules and "." in target:
                        target = target.rsplit(".", 1)[0]
                resolved.add(target)
            (mod.function_imports if in_function else mod.top_imports).update(resolved)
    return modules


def _imports(tree: ast.Module):
    """(import node, inside a function?) for every import; ``if TYPE_CHECKING:`` blocks are skipped."""
    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, in_function
            else:
                yield from walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))
    yield from walk(tree, False)


def internal(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def upward_edges(modules: dict[str, Module]) -> list[tuple[str, str]]:
    """(importer, imported) pairs where a module imports from a higher floor, at module level or in a function."""
    edges = []
    for mod in modules.values():
        here = floor_of(unit_of(mod.name))
        for target in sorted(mod.top_imports | mod.function_imports):
            if internal(target) and target != PACKAGE and floor_of(unit_of(target)) > here:
                edges.append((mod.name, target))
    return edges


def package_graph(modules: dict[str, Module]) -> dict[str, list[str]]:
    """unit -> the units it imports (any import), the between-packages graph the closing notes show."""
    graph: dict[str, set[str]] = {}
    for mod in modules.values():
        src = unit_of(mod.name)
        for target in mod.top_imports | mod.function_imports:
            if internal(target) and target != PACKAGE and unit_of(target) != src:
                graph.setdefault(src, set()).add(unit_of(target))
    return {k: sorted(v, key=lambda u: (floor_of(u), u)) for k, v in sorted(graph.items(), key=lambda kv: (floor_of(kv[0]), kv[0]))}


def heavy_at_import(modules: dict[str, Module]) -> dict[str, bool]:
    """Whether importing each module imports a heavy runtime (through its module-level imports, transitively)."""
    memo: dict[str, bool] = {}

    def heavy(name: str, seen: frozenset) -> bool:
        if name in memo:
            return memo[name]
        mod = modules[name]
        result = False
        for target in mod.top_imports:
            if internal(target):
                if target in modules and target not in seen and heavy(target, seen | {target}):
                    result = True
            elif target.split(".")[0] in HEAVY:
                result = True
        memo[name] = result
        return result

    return {name: heavy(name, frozenset({name})) for name in modules}


def needless_function_imports(modules: dict[str, Module]) -> list[tuple[str, str]]:
    """Internal imports inside functions whose target imports no heavy runtime: they belong at the top."""
    heavy = heavy_at_import(modules)
    found = []
    for mod in modules.values():
        for target in sorted(mod.function_imports):
            if internal(target) and target in modules and not heavy[target] and target != PACKAGE:
                found.append((mod.name, target))
    return found


def long_functions(modules: dict[str, Module], limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    """(module:qualified name, lines) of every function longer than ``limit`` lines (decorators and docstring
    included)."""
    found = []
    for mod in modules.values():
        for qual, node in _functions(mod.tree):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                found.append((f"{mod.name}:{qual}", length))
    return sorted(found, key=lambda item: -item[1])


def _functions(tree, prefix=""):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node, prefix + node.name + ".")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, prefix + node.name + ".")


def public_without_docstring(modules: dict[str, Module]) -> list[str]:
    """Public names (no leading underscore) of every module, classes' public methods included, that have no
    docstring. Dunder methods, properties' setters and ``NamedTuple``/dataclass fields are not names here."""
    found = []
    for mod in modules.values():
        for node in mod.tree.body:
            found.extend(_undocumented(mod.name, node))
    return found


def _undocumented(prefix: str, node) -> list[str]:
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or node.name.startswith("_"):
        return []
    name = f"{prefix}:{node.name}" if ":" not in prefix else f"{prefix}.{node.name}"
    missing = [] if ast.get_docstring(node) else [name]
    if isinstance(node, ast.ClassDef):
        for child in node.body:
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                    isinstance(d, ast.Attribute) and d.attr in ("setter", "deleter") for d in child.decorator_list):
                continue
            missing.extend(_undocumented(name, child))
    return missing


def public_names(modules: dict[str, Module]) -> int:
    count = 0
    for mod in modules.values():
        for node in mod.tree.body:
            count += _count_public(node)
    return count


def _count_public(node) -> int:
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or node.name.startswith("_"):
        return 0
    return 1 + (sum(_count_public(c) for c in node.body) if isinstance(node, ast.ClassDef) else 0)


def packages_without_docstring(modules: dict[str, Module], src: Path = SRC) -> list[str]:
    """Packages whose ``__init__.py`` is missing or does not say in a docstring what the package holds."""
    packages = {p.parent for p in src.rglob("*.py")} - {src}
    missing = []
    for folder in sorted(packages):
        name = module_name(folder / "__init__.py", src)
        mod = modules.get(name)
        if mod is None or not ast.get_docstring(mod.tree):
            missing.append(name)
    return missing


CAPABILITY_HOME = f"{PACKAGE}.backends.registry"  # the one module that may test backend and precision names


def capability_names() -> frozenset[str]:
    """Every backend and precision name the registry declares (read from the registry itself)."""
    from yoloparity.backends.registry import BACKENDS, PRECISION_INFO

    return frozenset(BACKENDS) | frozenset(PRECISION_INFO)


def _literals(node) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return []


def capability_string_tests(modules: dict[str, Module], names: frozenset[str]) -> list[tuple[str, int, str]]:
    """Comparisons (``==``, ``!=``, ``in``, ``not in``) of a backend or precision name written as a string outside
    the registry, as (module, line, code): each is a capability question the registry should answer as data."""
    found = []
    for mod in modules.values():
        if mod.name == CAPABILITY_HOME:
            continue
        for node in ast.walk(mod.tree):
            if isinstance(node, ast.Compare):
                values = _literals(node.left) + [v for c in node.comparators for v in _literals(c)]
                if any(v in names for v in values):
                    found.append((mod.name, node.lineno, ast.unparse(node)))
    return sorted(found)


def report(modules: dict[str, Module]) -> dict:
    internal_imports = [(m.name, t) for m in modules.values() for t in m.top_imports | m.function_imports
                        if internal(t) and t != PACKAGE]
    in_functions = [(m.name, t) for m in modules.values() for t in m.function_imports if internal(t) and t != PACKAGE]
    return {
        "modules": len(modules),
        "package_graph": package_graph(modules),
        "upward_edges": upward_edges(modules),
        "internal_imports": len(internal_imports),
        "internal_imports_in_functions": len(in_functions),
        "needless_function_imports": needless_function_imports(modules),
        "functions_over_limit": long_functions(modules),
        "public_names": public_names(modules),
        "public_without_docstring": public_without_docstring(modules),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print everything as JSON")
    args = parser.parse_args(argv)
    result = report(load_modules())
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"modules: {result['modules']}")
    print("imports between packages (floor: unit -> units):")
    for unit, targets in result["package_graph"].items():
        print(f"  {floor_of(unit)}: {unit} -> {', '.join(f'{t}({floor_of(t)})' for t in targets)}")
    print(f"upward edges: {len(result['upward_edges'])}")
    for a, b in result["upward_edges"]:
        print(f"  {a} -> {b}")
    print(f"internal imports: {result['internal_imports']}, inside functions: {result['internal_imports_in_functions']}, "
          f"of which need no lazy import: {len(result['needless_function_imports'])}")
    for a, b in result["needless_function_imports"]:
        print(f"  {a} -> {b}")
    print(f"functions over {MAX_FUNCTION_LINES} lines: {len(result['functions_over_limit'])}")
    for name, n in result["functions_over_limit"]:
        print(f"  {n:4d} {name}")
    print(f"public names: {result['public_names']}, without docstring: {len(result['public_without_docstring'])}")
    tests = capability_string_tests(load_modules(), capability_names())
    print(f"backend/precision names compared as strings outside the registry: {len(tests)}")
    for name, line, code in tests:
        print(f"  {name}:{line} {code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
