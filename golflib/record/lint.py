"""Static lint of a submission's ``train_gpt.py`` (SPEC §4.8 item 6): patterns that made records illegal, found on
the source's AST (no execution), for any script — golflib's bundle or someone else's record.

Rules (``flag`` = almost certainly a violation, ``review`` = legal in some records, a reviewer must look):

- ``target-in-hash`` (flag): an arithmetic/XOR expression that mixes a target-like name (``tgt``, ``tgt_np``,
  ``tgt_ids``, ``target(s)``, ``next_token``, ``y``, ``y_next``...) with a hashing multiplier — a large odd constant
  (≥ 10,007), or a name bound to one or to an array of them anywhere in the script (``primes[k % len(primes)]``),
  or a name that says so (``prime``) — the #940 family's ``ctx_hash ^ (tgt_np * primes[ctx_w % len(primes)])``
  keys, which score a token by a lookup that already depends on it (SPEC §4.5; C1, C2).
- ``val-step-before-score`` (flag) / ``val-step`` (review): a ``.backward()`` whose loss derives from validation
  data — the backward slice of the loss through the function's own assignments (and its parameters) reaches a name
  like ``val``, ``val_tokens``, ``x_val``, ``validation_*`` — and the optimizer ``.step()`` calls of such a
  function. Flag when no scoring — a ``torch.no_grad()``/``torch.inference_mode()`` block that calls something on
  validation data (an EMA copy or weight update under ``no_grad`` is not scoring), a function decorated so that
  reads validation data, or a call of a function holding either — comes before it in that function, nor before
  every call of that function in its callers (a caller that is a callback handed to a scoring function counts as
  called after scoring): training on val before scoring it is pre-quant TTT / #402 leakage (C3). A compile
  warm-up that steps on validation data — in a function named ``*warm*`` / ``*compile*``, or on a loss built from
  a ``warm*`` variable assigned from validation data — is a flag wherever it sits (the records warm up on random tokens). Otherwise it is the
  score-first pattern and only needs review. A local slice cannot follow data through calls or containers: the
  rule finds the common shapes, not every one.
- ``train-data-at-eval`` (flag): a function whose name says it evaluates/scores/TTTs (``eval``, ``score``, ``ttt``)
  and refers to training data (``train_files``, ``TRAIN_FILES``, ``fineweb_train``, ``train_glob``, ...): training
  data read after the training loop ended counts against the training budget (trap 8).
- ``network-or-subprocess`` (review): imports of ``subprocess``, ``socket``, ``urllib``, ``requests``,
  ``http.client``, ``huggingface_hub``, and calls of ``os.system``/``os.popen``: no network at eval; records call
  lrzip/g++ through subprocess, so a reviewer checks what runs.
- ``local-import`` (flag): a top-level import of a module that is neither in the standard library nor installed
  — a file next to ``train_gpt.py`` whose bytes must count toward the 16,000,000 (SPEC §0); also ``exec``/``open``
  of a ``.py`` path. Well-known third-party packages (:data:`THIRD_PARTY`: ``flash_attn_interface``,
  ``flash_attn``, ``triton``, ...) are never local, whatever this machine has installed.
- ``unparsed`` (review): a line this Python cannot parse (newer syntax, e.g. 3.12 f-strings) is blanked so the rest
  of the script is still linted; what it does is not linted.

A compressed golflib stub is linted after extracting its source (:func:`golflib.record.minify.extract`); its local
names are minified, which hides some data flow, so records lint the readable twin ``train_gpt_readable.py``.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from golflib.record.minify import extract

SEVERITIES = ("flag", "review")
_TARGET_NAME = re.compile(r"^(tgt|tgts|tgt_\w+|target|targets|target_\w+|targets_\w+|next_tok|next_token|"
                          r"next_tokens|y|ys|y_np|y_next|ytgt)$", re.I)
_PRIME_NAME = re.compile(r"prime", re.I)
_WARM_FUNC = re.compile(r"(^|_)(warm|compile)", re.I)
_WARM_NAME = re.compile(r"(^|_)warm", re.I)
# well-known third-party packages the records import (installed on the challenge's machines, not shipped)
THIRD_PARTY = ("flash_attn_interface", "flash_attn", "triton", "torch", "numpy", "sentencepiece", "zstandard",
               "brotli", "safetensors", "huggingface_hub", "datasets", "tqdm", "einops", "scipy", "kernels",
               "xformers", "apex", "transformer_engine", "liger_kernel", "constriction", "zstd", "lz4")
_VAL_NAME = re.compile(r"(?:^|_)(val|valid|validation)(?:_|$)", re.I)
_TRAIN_DATA = re.compile(r"(train_files|train_glob|fineweb_train|train_shards|train_pattern|train_loader)", re.I)
_EVAL_FUNC = re.compile(r"(eval|score|ttt)", re.I)
_NETWORK_MODULES = ("subprocess", "socket", "urllib", "requests", "http", "huggingface_hub", "ftplib", "aiohttp")
_HASH_PRIME_MIN = 10_007


@dataclass(frozen=True)
class Finding:
    """One lint result: ``rule``, ``severity`` (flag | review), 1-based ``line``, ``message``."""

    rule: str
    severity: str
    line: int
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def _names(node: ast.AST) -> set[str]:
    """Identifiers (names and attribute names) inside ``node``."""
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Attribute):
            out.add(n.attr)
    return out


def _strings(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _big_odd_constants(node: ast.AST) -> list[int]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, int)
            and not isinstance(n.value, bool) and n.value >= _HASH_PRIME_MIN and n.value % 2 == 1]


def _hash_multipliers(tree: ast.AST) -> set[str]:
    """Names bound anywhere in the script to an expression holding a hashing constant (a prime, or an array of
    them), plus names that say ``prime``."""
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, (ast.Assign, ast.AnnAssign)) and n.value is not None and _big_odd_constants(n.value):
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target]):
                out |= {x.id for x in ast.walk(t) if isinstance(x, ast.Name)}
        elif isinstance(n, ast.Name) and _PRIME_NAME.search(n.id):
            out.add(n.id)
    return out


def _target_in_hash(tree: ast.AST) -> list[Finding]:
    out, seen = [], set()
    multipliers = _hash_multipliers(tree)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitXor, ast.Mult))):
            continue
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        targets = sorted(n for n in names if _TARGET_NAME.match(n))
        keys = [str(c) for c in _big_odd_constants(node)] + sorted(names & multipliers)
        if targets and keys and node.lineno not in seen:
            seen.add(node.lineno)
            out.append(Finding("target-in-hash", "flag", node.lineno,
                               f"hash-like expression mixes the target ({', '.join(targets)}) with {keys[0]}: a "
                               f"lookup keyed by the token being scored is not a distribution over the vocabulary "
                               f"(#940 family, SPEC §4.5, C1/C2)"))
    return out


def _is_no_grad(expr: ast.AST) -> bool:
    text = ast.unparse(expr)
    return "no_grad" in text or "inference_mode" in text


def _functions(tree: ast.AST):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _assigned(fn: ast.AST) -> dict[str, list[ast.AST]]:
    """``{name: [value expressions assigned to it]}`` in ``fn`` (plain, augmented, annotated, for-loop targets and
    ``with ... as`` names)."""
    out: dict[str, list[ast.AST]] = {}

    def bind(target: ast.AST, value: ast.AST) -> None:
        for n in ast.walk(target):
            if isinstance(n, ast.Name):
                out.setdefault(n.id, []).append(value)

    for n in ast.walk(fn):
        if isinstance(n, ast.Assign):
            for t in n.targets:
                bind(t, n.value)
        elif isinstance(n, (ast.AugAssign, ast.AnnAssign)) and n.value is not None:
            bind(n.target, n.value)
        elif isinstance(n, (ast.For, ast.AsyncFor, ast.comprehension)):
            bind(n.target, n.iter)
        elif isinstance(n, ast.withitem) and n.optional_vars is not None:
            bind(n.optional_vars, n.context_expr)
    return out


def _slice_names(expr: ast.AST, assigned: dict[str, list[ast.AST]]) -> set[str]:
    """Names ``expr`` depends on through the function's assignments (to a fixed point)."""
    seen: set[str] = set()
    todo = list(_names(expr))
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for value in assigned.get(name, []):
            todo.extend(_names(value) - seen)
    return seen


def _own_nodes(fn: ast.AST):
    """The nodes of ``fn``'s body, not descending into nested functions, lambdas or classes."""
    todo = list(ast.iter_child_nodes(fn))
    while todo:
        n = todo.pop()
        yield n
        if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            todo.extend(ast.iter_child_nodes(n))


def _callee(call: ast.Call) -> str | None:
    """The name of a plain function call (``f(...)``); None for method calls (``model.eval()`` is not ``eval``)."""
    return call.func.id if isinstance(call.func, ast.Name) else None


def _reads_val(node: ast.AST, assigned: dict[str, list[ast.AST]]) -> bool:
    """Does ``node`` call something on validation data (a name reaching ``val``-like names through the function's
    assignments)?"""
    calls = [c for c in ast.walk(node) if isinstance(c, ast.Call)]
    return bool(calls) and any(_VAL_NAME.search(n) for c in calls for n in _slice_names(c, assigned))


def _scoring_blocks(fn: ast.AST) -> list[int]:
    """Lines of ``with torch.no_grad()/inference_mode()`` blocks in ``fn`` that score: call something on val."""
    assigned = _assigned(fn)
    return [n.lineno for n in _own_nodes(fn) if isinstance(n, ast.With)
            and any(_is_no_grad(item.context_expr) for item in n.items)
            and any(_reads_val(b, assigned) for b in n.body)]


def _scoring_lines(fn: ast.AST, scorers: set[str], blocks: dict) -> list[int]:
    """Lines in ``fn`` where scoring happens: no-grad blocks on val data (``blocks[fn]``, from
    :func:`_scoring_blocks`) and calls of functions that score."""
    return blocks[fn] + [n.lineno for n in _own_nodes(fn) if isinstance(n, ast.Call) and _callee(n) in scorers]


def _val_steps(tree: ast.AST) -> list[Finding]:
    fns = _functions(tree)
    blocks = {fn: _scoring_blocks(fn) for fn in fns}  # once per function: each walks its assignments
    scorers = {fn.name for fn in fns if (any(_is_no_grad(d) for d in fn.decorator_list)
                                         and any(_VAL_NAME.search(n) for n in _names(fn)))
               or blocks[fn]}
    while True:  # a function that calls a scoring function scores too
        more = {fn.name for fn in fns if fn.name not in scorers
                and any(isinstance(c, ast.Call) and _callee(c) in scorers for c in ast.walk(fn))}
        if not more:
            break
        scorers |= more
    # callbacks handed to a scoring function (``eval_ttt_lora(..., after_round=after_round)``): it calls them
    # between its scoring rounds, so what they train on was scored before
    hooks = {a.id for c in ast.walk(tree) if isinstance(c, ast.Call) and _callee(c) in scorers
             for a in list(c.args) + [k.value for k in c.keywords] if isinstance(a, ast.Name)}
    out = []
    for fn in fns:
        assigned = _assigned(fn)
        backward = [c for c in ast.walk(fn) if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
                    and c.func.attr == "backward"
                    and any(_VAL_NAME.search(n) for n in _slice_names(c.func.value, assigned))]
        if not backward:
            continue
        steps = [c for c in ast.walk(fn) if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
                 and c.func.attr == "step" and not c.args
                 and re.search(r"(opt|optim|optimizer|sgd|adam|muon)", ast.unparse(c.func.value), re.I)]
        decorated = any(_is_no_grad(d) for d in fn.decorator_list)
        scored = _scoring_lines(fn, scorers - {fn.name}, blocks)
        warm = bool(_WARM_FUNC.search(fn.name)) or any(
            _WARM_NAME.search(n) and any(_VAL_NAME.search(v) for value in assigned.get(n, []) for v in _names(value))
            for c in backward for n in _slice_names(c.func.value, assigned))
        # call sites of this function in other functions, each after scoring in its caller?
        sites = [(g.name, c.lineno, g.name in hooks
                  or any(line < c.lineno for line in _scoring_lines(g, scorers - {g.name}, blocks)))
                 for g in fns if g is not fn for c in _own_nodes(g)
                 if isinstance(c, ast.Call) and _callee(c) == fn.name]
        for call in sorted(backward + steps, key=lambda c: c.lineno):
            what = f"{ast.unparse(call.func)}() in {fn.name}(), on a loss computed from validation data,"
            if warm:
                out.append(Finding("val-step-before-score", "flag", call.lineno,
                                   f"{what} in a compile warm-up: warming up on val tokens trains on them before "
                                   f"they are scored (the records warm up on random tokens; C3)"))
            elif decorated or any(line < call.lineno for line in scored):
                out.append(Finding("val-step", "review", call.lineno,
                                   f"{what} after a no-grad scoring call: check it only trains on tokens already "
                                   f"scored (C3)"))
            elif sites and all(ok for _, _, ok in sites):
                callers = ", ".join(sorted({f"{g}() line {line}" for g, line, _ in sites}))
                out.append(Finding("val-step", "review", call.lineno,
                                   f"{what} called only after a no-grad scoring call ({callers}): check it only "
                                   f"trains on tokens already scored (C3)"))
            else:
                out.append(Finding("val-step-before-score", "flag", call.lineno,
                                   f"{what} with no no-grad scoring before it: training on val before scoring it "
                                   f"(C3; #402, #1376)"))
    return out


def _train_data_at_eval(tree: ast.AST) -> list[Finding]:
    out = []
    for fn in _functions(tree):
        if not _EVAL_FUNC.search(fn.name) or re.search(r"train", fn.name, re.I):
            continue
        hits = sorted({n for n in _names(fn) if _TRAIN_DATA.search(n)}
                      | {s for s in _strings(fn) if _TRAIN_DATA.search(s)})
        if hits:
            out.append(Finding("train-data-at-eval", "flag", fn.lineno,
                               f"{fn.name}() refers to training data ({', '.join(hits)}): reading it after the "
                               f"training loop counts against the 600 s training budget (SPEC §4.8 item 1, trap 8)"))
    return out


def _imported(node: ast.AST) -> list[str]:
    """Module names an import statement imports (``.name`` for a relative import); [] for other nodes."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        return ["." * node.level + (node.module or "")]
    return []


def _network(tree: ast.AST) -> list[Finding]:
    out = []
    for node in ast.walk(tree):
        for m in _imported(node):
            if m.split(".")[0] in _NETWORK_MODULES:
                out.append(Finding("network-or-subprocess", "review", node.lineno,
                                   f"imports {m}: no network at eval; check what it runs"))
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.system", "os.popen"):
            out.append(Finding("network-or-subprocess", "review", node.lineno,
                               f"{ast.unparse(node.func)}(...): check what it runs"))
    return out


def _module_available(name: str, folder: Path) -> bool:
    top = name.split(".")[0]
    if top in sys.stdlib_module_names or top == "__future__" or top in THIRD_PARTY:
        return True
    if (folder / f"{top}.py").exists() or (folder / top).is_dir():
        return False  # next to the script: counts as code
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _local_imports(tree: ast.Module, folder: Path) -> list[Finding]:
    out = []
    for node in tree.body:
        for m in _imported(node):
            if m.startswith(".") or not _module_available(m, folder):
                out.append(Finding("local-import", "flag", node.lineno,
                                   f"imports {m!r}, which is neither standard library nor installed: a file shipped "
                                   f"with the record must count toward the 16,000,000 bytes (SPEC §0)"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("open", "exec", "runpy.run_path"):
            py = [s for s in _strings(node) if s.endswith(".py")]
            if py:
                out.append(Finding("local-import", "flag", node.lineno,
                                   f"{ast.unparse(node.func)}() of {py[0]!r}: code read from another file counts "
                                   f"toward the 16,000,000 bytes"))
    return out


def lint_source(source: str, folder: str | os.PathLike = ".") -> list[Finding]:
    """Lint a script's source text (a golflib compressed stub is extracted first). ``folder``: where the script
    lives (for ``local-import``). Returns findings sorted by line. Raises ``SyntaxError`` for unparsable source."""
    if "b85decode" in source and source.count("\n") <= 3:
        try:
            source = extract(source)
        except ValueError:
            pass
    tree, unparsed = _parse(source)
    found = (_target_in_hash(tree) + _val_steps(tree) + _train_data_at_eval(tree) + _network(tree)
             + _local_imports(tree, Path(folder)) + unparsed)
    return sorted(found, key=lambda f: (f.line, f.rule))


def _parse(source: str, max_blanked: int = 200) -> tuple[ast.Module, list[Finding]]:
    """``ast.parse`` of ``source``; a line this Python cannot parse (newer syntax) is replaced by ``pass`` at its
    indentation and reported as an ``unparsed`` review finding, up to ``max_blanked`` lines. Raises
    ``SyntaxError`` when the script still does not parse."""
    lines, found = source.split("\n"), []
    for _ in range(max_blanked + 1):
        try:
            return ast.parse("\n".join(lines)), found
        except SyntaxError as e:
            i = (e.lineno or 0) - 1
            if not 0 <= i < len(lines) or lines[i].strip() in ("", "pass") or len(found) >= max_blanked:
                raise
            text = lines[i]
            lines[i] = text[:len(text) - len(text.lstrip())] + "pass"
            found.append(Finding("unparsed", "review", i + 1, f"not parsed by Python {sys.version_info.major}."
                                 f"{sys.version_info.minor} ({e.msg}); this line is not linted"))
    raise SyntaxError("too many unparsable lines")


def lint_file(path: str | os.PathLike) -> list[Finding]:
    """:func:`lint_source` of the file at ``path``; raises ``FileNotFoundError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such script")
    return lint_source(path.read_text(encoding="utf-8"), path.parent)


def summary(findings: list[Finding]) -> dict:
    """``{"flag": n, "review": n, "by_rule": {rule: n}}``."""
    by_rule: dict[str, int] = {}
    for f in findings:
        by_rule[f.rule] = by_rule.get(f.rule, 0) + 1
    return {s: sum(f.severity == s for f in findings) for s in SEVERITIES} | {"by_rule": by_rule}
