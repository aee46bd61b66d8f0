"""The package's rooms: public names stay importable, and imports only go down the flow, never in a circle."""

import ast
from pathlib import Path

import external_embeddings

PACKAGE = Path(external_embeddings.__file__).parent
# Lowest first, as the package's docstring says; a module may import its own room and the ones before it.
ROOMS = [{"errors", "atomic", "settings"}, {"text"}, {"store"}, {"vectors"}, {"sources", "models", "batches"},
         {"runtime"}, {"predictor"}, {"serving"}, {"cli", "__main__"}]


def room(module):
    """The rank of a module given as its dotted path below the package ("store.verified" -> 2)."""
    top = module.split(".")[0]
    return next(rank for rank, names in enumerate(ROOMS) if top in names)


def imports():
    """{module: {imported module, ...}} over every import in the package, those inside functions too."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(p for p in parts if p != "__init__")
        package = parts[:-1]
        found = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = list(package[:len(package) - node.level + 1]) + (node.module.split(".") if node.module else [])
                for alias in node.names:
                    candidate = ".".join(base + [alias.name])  # "from . import verified" names a module
                    found.add(candidate if _exists(candidate) else ".".join(base))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("external_embeddings"):
                found.add(node.module.removeprefix("external_embeddings").lstrip("."))
    return {name: {m for m in found if m and m != name} for name, found in graph.items()}


def _exists(dotted):
    path = PACKAGE.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def test_public_names_import():
    from external_embeddings import EmbeddingStore, InputError, MemoryBudgetError, Predictor  # noqa: F401
    from external_embeddings.cli import main  # noqa: F401


def test_no_module_imports_a_room_above_its_own():
    graph = imports()
    assert "store.verified" in graph["store.embedding_store"]  # the reader sees lazy and relative imports
    upward = [(name, dep) for name, deps in graph.items() if name for dep in deps if room(dep) > room(name)]
    assert upward == []


def test_no_import_circles():
    graph, state, circles = imports(), {}, []

    def visit(node, trail):
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            # A sub-package's __init__ importing its own modules is how a room shows its names, not a circle.
            if dep.startswith(node + ".") or not graph.get(dep) and dep not in graph:
                continue
            if state.get(dep) == "open":
                circles.append(trail[trail.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, trail + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node and node not in state:
            visit(node, [node])
    assert circles == []
