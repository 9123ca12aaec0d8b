"""The importer at the top of a bundled ``train_gpt.py``: its modules keep their own namespaces.

A bundle (:mod:`golflib.record.bundle`) is one file holding the source of every module it carries, each in a
section that starts with a ``# ==== <module> ====`` line (``# ==== <module> (package) ====`` for a package
``__init__``) followed by ``if 0:`` and the module's source indented by one space, so the file itself never runs
it. :func:`golflib_boot` — whose source the bundler copies into the file, above the sections — reads the sections
back (every line loses exactly the one space it gained, so the text is the module's own, byte for byte), puts a
finder first on ``sys.meta_path`` that serves them as ordinary modules (``__name__``, ``__file__`` = the bundle
file, package ``__path__``, tracebacks that show the source), and refuses any other module of the same top-level
package with ``ModuleNotFoundError``: a module the bundle leaves out (:mod:`golflib.seams`) is never taken from an
installed copy of the package. Nothing here imports golflib; the bundle must start in a fresh interpreter (an
already-imported module of the package would shadow the bundle's, so that is an ``ImportError``).
"""

import sys


def read_sections(text):
    """``({module: source}, {package modules})`` of a bundle's text (str), in file order; the inverse of
    :func:`golflib.record.bundle.assemble`. Raises ``ValueError`` for text with no sections."""
    srcs, packages = {}, set()
    text = text[:-1] if text.endswith("\n") else text  # the file's last newline ends the last section
    for part in text.split("\n# ==== ")[1:]:
        head, _, body = part.partition(" ====\n")
        name, _, kind = head.partition(" ")
        if kind == "(package)":
            packages.add(name)
        srcs[name] = "\n".join(line[1:] for line in body.partition("\n")[2].split("\n"))
    if not srcs:
        raise ValueError("no '# ==== <module> ====' sections: not a bundled train_gpt.py")
    return srcs, packages


def golflib_boot(text, path):
    """Serve the module sections of ``text`` (a bundle's own source, str) as importable modules whose
    ``__file__`` is ``path`` (str); returns ``{module: source}``. Raises ``ImportError`` when a module of the
    bundle's package is already imported, ``ValueError`` for text with no sections."""
    import __future__
    import importlib.abc
    import importlib.util
    import linecache

    srcs, packages = read_sections(text)
    top = next(iter(srcs)).split(".")[0]
    clash = sorted(m for m in sys.modules if m == top or m.startswith(top + "."))
    if clash:
        raise ImportError(f"{', '.join(clash[:3])} already imported in this interpreter; a bundled train_gpt.py "
                          f"serves its own {top} modules and must start in a fresh one")
    flags = __future__.annotations.compiler_flag

    class BundleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, target_path=None, target=None):
            if name in srcs:
                return importlib.util.spec_from_loader(name, self, origin=path, is_package=name in packages)
            if name == top or name.startswith(top + "."):
                raise ModuleNotFoundError(f"{name} is not in this train_gpt.py: its baked config does not use it "
                                          f"(golflib.seams)", name=name)
            return None

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            name = module.__name__
            fname = f"<train_gpt.py {name}>"
            linecache.cache[fname] = (len(srcs[name]), None, srcs[name].splitlines(True), fname)
            module.__file__ = path
            exec(compile(srcs[name], fname, "exec", flags, dont_inherit=True), module.__dict__)

    sys.meta_path.insert(0, BundleFinder())
    return srcs
