"""Check the code on the slides against the package, so that a slide cannot show an API that does not exist.

For every ```python block of the talk (after the build's includes), in order, as one session:
- it must parse, and its imports must import;
- every call of something it can name (an imported class or function, ``L.Trainer``, or a method of a
  variable assigned from a known class, like ``tuner.lr_find``) must bind to the real signature: an argument
  the package or Lightning does not have fails;
- calls of the package's cheap constructors (``SAFE_TO_CALL``) whose arguments are literals are really made, so a
  wrong choice (``augment="flipcrop"``) fails with the package's own error. ``pretrained`` is forced off: tests
  never download weights.
For every ```bash block, each ``python -m cifar_lightning ...`` line is parsed by the real CLI (``--print_config``:
parse, check, print, stop; nothing trains).

    check_talk(Path("slides/talk.md")).problems     # [] when every block is right (tests/test_slides.py)
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import importlib.util
import inspect
import io
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path


def _load(name: str, path: Path):
    """Import a file of slides/ under a name of its own (a plain ``import build`` could find PyPI's ``build``)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


build = _load("slides_build", Path(__file__).with_name("build.py"))
ROOT, expand_includes, slide_number = build.ROOT, build.expand_includes, build.slide_number

FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
SAFE_TO_CALL = {"CIFAR10DataModule", "CIFARSystem", "CifarResNet", "build_resnet", "build_transform", "build_callbacks"}
CLI_PREFIXES = (["python", "-m", "cifar_lightning"], ["cifar-lightning"])


def safe_to_call(func) -> bool:
    """A package constructor or builder the check may run to validate a slide's arguments (no side effects)."""
    return getattr(func, "__name__", "") in SAFE_TO_CALL and getattr(func, "__module__", "").startswith(
        "cifar_lightning"
    )


@dataclass
class Block:
    language: str
    code: str
    slide: int


@dataclass
class Instance:
    """A variable known to hold an object of ``cls`` (``trainer = L.Trainer(...)``)."""

    cls: type


class NotLiteral(Exception):
    pass


def code_blocks(text: str) -> list[Block]:
    """The fenced code blocks of the (include-expanded) talk, with their slide numbers."""
    return [Block(m.group(1), m.group(2), slide_number(text, m.start())) for m in FENCE.finditer(text)]


class PythonCheck:
    """Resolve what the code names, then bind (and where safe, make) each call against the real objects."""

    def __init__(self, code: str, names: dict | None = None):
        self.code = code
        self.problems: list[str] = []
        self.names: dict[str, object] = {} if names is None else names
        self.bound: list[str] = []  # the calls checked against a signature
        self.made: list[str] = []  # the calls really made

    def run(self) -> list[str]:
        try:
            tree = ast.parse(self.code)
        except SyntaxError as err:
            return [f"syntax error: {err.msg} (line {err.lineno})"]
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                try:
                    exec(compile(ast.Module([node], type_ignores=[]), "<slide>", "exec"), self.names)
                except Exception as err:
                    self.problems.append(f"{ast.unparse(node)}: {type(err).__name__}: {err}")
        for node in ast.walk(tree):  # variables assigned from a known class, for their method calls
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                made = self.resolve(node.value)
                if isinstance(made, Instance):
                    self.names[node.targets[0].id] = made
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                self.check_call(node)
        # an assigned call is resolved twice (its variable, then the call itself): report each problem once
        return list(dict.fromkeys(self.problems))

    def resolve(self, node: ast.expr):
        """The object an expression names, an Instance for a constructor call, or None when unknown."""
        if isinstance(node, ast.Name):
            return self.names.get(node.id, getattr(builtins, node.id, None))
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            if base is None:
                return None
            owner = base.cls if isinstance(base, Instance) else base
            if not hasattr(owner, node.attr):
                if not isinstance(base, Instance):  # instances may set attributes in __init__
                    self.problems.append(
                        f"{ast.unparse(node)}: {ast.unparse(node.value)} has no attribute {node.attr!r}"
                    )
                return None
            value = getattr(owner, node.attr)
            return (base, value) if isinstance(base, Instance) and callable(value) else value
        if isinstance(node, ast.Call):
            target = self.resolve(node.func)
            return Instance(target) if inspect.isclass(target) else None
        return None

    def check_call(self, node: ast.Call) -> None:
        target = self.resolve(node.func)
        if target is None:
            return
        bound_method = isinstance(target, tuple)
        func = target[1] if bound_method else target
        if not callable(func):
            self.problems.append(f"{ast.unparse(node.func)} is not callable")
            return
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError):
            return  # some builtins have no signature
        if bound_method:  # an instance method looked up on the class: drop self
            signature = signature.replace(parameters=list(signature.parameters.values())[1:])
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            return
        try:
            signature.bind(*node.args, **{k.arg: k.value for k in node.keywords})
        except TypeError as err:
            self.problems.append(f"{ast.unparse(node)[:80]}: {err}")
            return
        self.bound.append(ast.unparse(node.func))
        if safe_to_call(func):
            try:
                self.evaluate(node)
                self.made.append(ast.unparse(node.func))
            except NotLiteral:
                pass
            except Exception as err:
                self.problems.append(f"{ast.unparse(node)[:80]}: {type(err).__name__}: {err}")

    def evaluate(self, node: ast.expr):
        """The value of a literal, or of a safe package call whose arguments are all such values."""
        if isinstance(node, ast.Call):
            func = self.resolve(node.func)
            if not safe_to_call(func):
                raise NotLiteral
            args = [self.evaluate(a) for a in node.args]
            kwargs = {k.arg: self.evaluate(k.value) for k in node.keywords}
            if kwargs.get("pretrained"):
                kwargs["pretrained"] = False  # the test checks the arguments, not the download
            return func(*args, **kwargs)
        try:
            return ast.literal_eval(node)
        except ValueError:
            raise NotLiteral from None


def check_python(code: str, names: dict | None = None) -> list[str]:
    """Problems of one Python block; empty when it matches the package.

    ``names`` carries imports and variables from block to block: the talk reads as one session, so a slide may
    use ``L`` or ``trainer`` from an earlier one.
    """
    return PythonCheck(code, names).run()


def cli_commands(code: str) -> list[list[str]]:
    """The argument lists of the package's CLI commands in a shell block."""
    commands = []
    for line in code.splitlines():
        words = shlex.split(line, comments=True)
        for prefix in CLI_PREFIXES:
            if words[: len(prefix)] == prefix:
                commands.append(words[len(prefix) :])
    return commands


def check_cli(args: list[str]) -> list[str]:
    """Parse one command line with the real CLI (from the repo root, where the configs are)."""
    from cifar_lightning.cli import main

    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main([*args, "--print_config"])
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    finally:
        os.chdir(cwd)
    if code != 0:
        lines = err.getvalue().strip().splitlines()
        return [f"python -m cifar_lightning {shlex.join(args)}: {lines[-1] if lines else f'exit status {code}'}"]
    return []


@dataclass
class TalkCheck:
    """What check_talk looked at, so a test can tell a real check from one that matched nothing."""

    problems: list[str]
    blocks: int = 0
    bound: list[str] | None = None  # calls bound to a signature
    made: list[str] | None = None  # package calls really made
    commands: int = 0  # CLI command lines parsed


def check_talk(talk: Path) -> TalkCheck:
    """Check every Python and shell block of the talk, in order."""
    result, names = TalkCheck(problems=[], bound=[], made=[]), {}
    for block in code_blocks(expand_includes(talk.read_text())):
        if block.language == "python":
            check = PythonCheck(block.code, names)
            found = check.run()
            result.bound += check.bound
            result.made += check.made
        elif block.language == "bash":
            commands = cli_commands(block.code)
            result.commands += len(commands)
            found = [p for args in commands for p in check_cli(args)]
        else:
            continue
        result.blocks += 1
        result.problems += [f"slide {block.slide}: {p}" for p in found]
    return result
