"""maas_core: the code that ships to Lambda (ARCHITECTURE.md, "The parts").

The folder is ``src/``; it installs, builds and runs under this package name, so its modules never
collide with another distribution's top-level ``shared`` or ``functions``:

- ``pip install -e .`` maps ``maas_core`` to ``src/`` (pyproject.toml, ``package-dir``);
- ``sam build`` copies ``src/`` into the artifact as ``maas_core/`` (src/Makefile), and the
  template's handlers are ``maas_core.functions.<name>.app.lambda_handler``;
- the local runners (``maas local``, the benchmark) give the emulator a task root whose one entry,
  ``maas_core``, is this folder (maas/template.py, ``FunctionSpec.task_root``).

Nothing is imported here: a handler loads only the modules it uses.
"""
