"""ObjaScale generator: render single objects at controlled relative sizes over HDRI backgrounds with Blender.

Entry points: :func:`objascale.generator.generate.generate` (library) and ``flipbench generate objascale``
(command line). Modules that import ``bpy`` (``scene``, ``render``, ``procedural``) run only inside worker
processes; everything else is importable without Blender.
"""
