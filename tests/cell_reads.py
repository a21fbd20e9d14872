"""The names a notebook cell reads from earlier cells: loads that happen before the cell binds the name.

Used by tests/test_hub_cells.py to find the cells a `%%hub` cell needs. Over-approximate on purpose
(a missed read would drop a needed cell, and the test would then fail with a NameError):
- statements are walked in the order Python runs them (an assignment's value before its targets, a
  loop's iterable before its target);
- names bound inside a comprehension, a lambda or a function body are local to it, and a function
  body's reads of other names count as reads of the cell;
- a binding inside `if`, `while`, `try` or a loop body holds only within that block, so a name bound
  on one path and read after it counts as read.
"""
import ast


class _Reads(ast.NodeVisitor):
    def __init__(self, bound=()):
        self.free, self.scopes, self.later = set(), [set(bound)], set()

    def bound(self, name):
        return any(name in scope for scope in self.scopes)

    def read(self, name):
        if not self.bound(name):
            self.free.add(name)

    def visit_all(self, nodes):
        for node in nodes:
            self.visit(node)

    def block(self, statements, bound=()):
        self.scopes.append(set(bound))
        self.visit_all(statements)
        self.scopes.pop()

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load):
            self.read(node.id)
        else:
            self.scopes[-1].add(node.id)

    def visit_Assign(self, node):
        self.visit_all([node.value, *node.targets])

    def visit_AnnAssign(self, node):
        self.visit_all([n for n in (node.value, node.target) if n is not None])

    def visit_AugAssign(self, node):
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self.read(node.target.id)
        self.visit(node.target)

    def visit_NamedExpr(self, node):
        self.visit_all([node.value, node.target])

    def visit_Import(self, node):
        self.scopes[-1].update((alias.asname or alias.name).split(".")[0] for alias in node.names)

    visit_ImportFrom = visit_Import

    def visit_For(self, node):
        self.visit(node.iter)
        self.scopes.append(set())
        self.visit(node.target)
        self.visit_all(node.body)
        self.scopes.pop()
        self.block(node.orelse)

    visit_AsyncFor = visit_For

    def visit_If(self, node):
        self.visit(node.test)
        self.block(node.body)
        self.block(node.orelse)

    visit_While = visit_If

    def visit_Try(self, node):
        self.block(node.body)
        for handler in node.handlers:
            self.visit_all([handler.type] if handler.type else [])
            self.block(handler.body, [handler.name] if handler.name else [])
        self.block(node.orelse)
        self.block(node.finalbody)

    def visit_With(self, node):
        for item in node.items:
            self.visit_all([n for n in (item.context_expr, item.optional_vars) if n is not None])
        self.visit_all(node.body)

    visit_AsyncWith = visit_With

    def function(self, arguments, body):
        """A body runs later, so it may read anything the cell binds; what it assigns is its own."""
        self.visit_all(arguments.defaults + [d for d in arguments.kw_defaults if d is not None])
        local = {a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs}
        local |= {a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None}
        local |= {n.id for statement in body for n in ast.walk(statement)
                  if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
        inner = _Reads(local)
        inner.visit_all(body)
        self.later |= {name for name in inner.free | inner.later if not self.bound(name)}

    def visit_FunctionDef(self, node):
        self.visit_all(node.decorator_list)
        self.function(node.args, node.body)
        self.scopes[-1].add(node.name)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node):
        self.function(node.args, [ast.Expr(node.body)])

    def visit_ClassDef(self, node):
        self.visit_all(node.decorator_list + node.bases + [k.value for k in node.keywords])
        self.block(node.body)
        self.scopes[-1].add(node.name)

    def comprehension(self, node, elements):
        first, *rest = node.generators
        self.visit(first.iter)  # the first iterable runs in the enclosing scope
        self.scopes.append(set())
        self.visit_all([first.target, *first.ifs])
        for generator in rest:
            self.visit_all([generator.iter, generator.target, *generator.ifs])
        self.visit_all(elements)
        self.scopes.pop()

    def visit_ListComp(self, node):
        self.comprehension(node, [node.elt])

    visit_SetComp = visit_GeneratorExp = visit_ListComp

    def visit_DictComp(self, node):
        self.comprehension(node, [node.key, node.value])


def reads_and_binds(tree):
    """(the names `tree`, a parsed cell, reads before binding them; the names it binds on every path)."""
    reads = _Reads()
    reads.visit(tree)
    return reads.free | {name for name in reads.later if not reads.bound(name)}, reads.scopes[0]


def free_reads(tree):
    """The names `tree` (a parsed cell) reads before binding them."""
    return reads_and_binds(tree)[0]
