"""Procedural everyday objects built with bpy (the embedded, download-free object source).

Each builder makes one or more mesh objects with UVs and a procedural material (noise, checker, stripes,
voronoi or brick texture driving a Principled BSDF), shaped by a few random proportions, so one kind yields many
distinct instances. Licence of everything here: "procedural, CC0 (flipbench)".

Must run inside a bpy process. Sizes are arbitrary: the generator normalises every object to a unit bounding
sphere. Z is up.
"""

from __future__ import annotations

import math
from typing import Callable

import bmesh
import bpy
import numpy as np
from mathutils import Matrix

from objascale.generator.objects import PROCEDURAL_CATEGORY

__all__ = ["build", "emitter_material", "procedural_material"]


# ---------------------------------------------------------------------------------------------------------------
# mesh helpers
def _lathe(profile: list[tuple[float, float]], segments: int = 48) -> bmesh.types.BMesh:
    """Surface of revolution about Z of the polyline ``profile`` [(radius, z), ...], with UVs (u = angle)."""
    bm = bmesh.new()
    uv = bm.loops.layers.uv.new("UVMap")
    rings = []
    for r, z in profile:
        rings.append([bm.verts.new((r * math.cos(2 * math.pi * s / segments),
                                    r * math.sin(2 * math.pi * s / segments), z)) for s in range(segments)])
    n = len(profile)
    for i in range(n - 1):
        for s in range(segments):
            s2 = (s + 1) % segments
            quad = (rings[i][s], rings[i][s2], rings[i + 1][s2], rings[i + 1][s])
            f = bm.faces.new(quad)
            coords = ((s, i), (s + 1, i), (s + 1, i + 1), (s, i + 1))
            for loop, (a, b) in zip(f.loops, coords):
                loop[uv].uv = (a / segments, b / (n - 1))
    bmesh.ops.remove_doubles(bm, verts=bm.verts, dist=1e-6)
    degenerate = [f for f in bm.faces if f.calc_area() < 1e-12]
    if degenerate:
        bmesh.ops.delete(bm, geom=degenerate, context="FACES_ONLY")
    bmesh.ops.recalc_face_normals(bm, faces=bm.faces)
    return bm


def _box(size: tuple[float, float, float], center: tuple[float, float, float]) -> bmesh.types.BMesh:
    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=1.0, calc_uvs=True)
    bmesh.ops.transform(bm, matrix=Matrix.Translation(center) @ Matrix.Diagonal((*size, 1.0)), verts=bm.verts)
    return bm


def _object(name: str, bms: list[bmesh.types.BMesh], material: bpy.types.Material, smooth: bool) -> bpy.types.Object:
    mesh = bpy.data.meshes.new(name)
    merged = bmesh.new()
    for bm in bms:
        tmp = bpy.data.meshes.new("_tmp")
        bm.to_mesh(tmp)
        merged.from_mesh(tmp)
        bpy.data.meshes.remove(tmp)
        bm.free()
    merged.to_mesh(mesh)
    merged.free()
    for poly in mesh.polygons:
        poly.use_smooth = smooth
    mesh.materials.append(material)
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def _circle_profile(radius: float, offset: float, steps: int = 24) -> list[tuple[float, float]]:
    return [(offset + radius * math.cos(2 * math.pi * t / steps), radius * math.sin(2 * math.pi * t / steps))
            for t in range(steps + 1)]


# ---------------------------------------------------------------------------------------------------------------
# materials
def _rand_color(rng: np.random.Generator) -> tuple[float, float, float, float]:
    h, s, v = rng.uniform(0, 1), rng.uniform(0.3, 0.95), rng.uniform(0.15, 0.9)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return (r, g, b, 1.0)


def procedural_material(name: str, rng: np.random.Generator, coords: str = "UV") -> bpy.types.Material:
    """Principled BSDF whose base colour comes from a random procedural texture between two random colours."""
    mat = bpy.data.materials.new(name)
    nt = mat.node_tree
    nodes, links = nt.nodes, nt.links
    bsdf = nodes.get("Principled BSDF") or nodes.new("ShaderNodeBsdfPrincipled")
    tex_coord = nodes.new("ShaderNodeTexCoord")
    c1, c2 = _rand_color(rng), _rand_color(rng)
    kind = str(rng.choice(["noise", "checker", "stripes", "voronoi", "brick", "plain"]))
    scale = float(rng.uniform(2.0, 12.0))
    color_out = None
    if kind == "checker":
        tex = nodes.new("ShaderNodeTexChecker")
        tex.inputs["Color1"].default_value, tex.inputs["Color2"].default_value = c1, c2
        tex.inputs["Scale"].default_value = scale
        color_out = tex.outputs["Color"]
    elif kind == "brick":
        tex = nodes.new("ShaderNodeTexBrick")
        tex.inputs["Color1"].default_value, tex.inputs["Color2"].default_value = c1, c2
        tex.inputs["Scale"].default_value = scale
        color_out = tex.outputs["Color"]
    elif kind != "plain":
        if kind == "noise":
            tex = nodes.new("ShaderNodeTexNoise")
            tex.inputs["Detail"].default_value = float(rng.uniform(1, 8))
            fac = tex.outputs["Fac"]
        elif kind == "stripes":
            tex = nodes.new("ShaderNodeTexWave")
            tex.inputs["Distortion"].default_value = float(rng.uniform(0, 4))
            fac = tex.outputs["Fac"]
        else:
            tex = nodes.new("ShaderNodeTexVoronoi")
            fac = tex.outputs["Distance"]
        tex.inputs["Scale"].default_value = scale
        ramp = nodes.new("ShaderNodeValToRGB")
        ramp.color_ramp.elements[0].color, ramp.color_ramp.elements[1].color = c1, c2
        links.new(fac, ramp.inputs["Fac"])
        color_out = ramp.outputs["Color"]
    if color_out is not None:
        links.new(tex_coord.outputs[coords], tex.inputs["Vector"])
        links.new(color_out, bsdf.inputs["Base Color"])
    else:
        bsdf.inputs["Base Color"].default_value = c1
    bsdf.inputs["Roughness"].default_value = float(rng.uniform(0.15, 0.85))
    bsdf.inputs["Metallic"].default_value = float(rng.choice([0.0, 0.0, 0.0, 1.0]))
    return mat


def emitter_material(color: tuple[float, float, float] = (0.0, 1.0, 0.0)) -> bpy.types.Material:
    """Flat emission shader (strength 1): a calibration object whose pixels are exactly ``color`` (linear)."""
    mat = bpy.data.materials.new("flipbench_emitter")
    nt = mat.node_tree
    for n in list(nt.nodes):
        nt.nodes.remove(n)
    em = nt.nodes.new("ShaderNodeEmission")
    em.inputs["Color"].default_value = (*color, 1.0)
    em.inputs["Strength"].default_value = 1.0
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(em.outputs["Emission"], out.inputs["Surface"])
    return mat


# ---------------------------------------------------------------------------------------------------------------
# builders: each returns the created objects
def _mug(rng):
    r, h, t = 0.4, float(rng.uniform(0.7, 1.1)), 0.04
    body = _lathe([(0, 0), (r, 0), (r, h), (r - t, h), (r - t, t), (0, t)])
    hr = float(rng.uniform(0.2, 0.3))
    handle = _lathe(_circle_profile(0.045, hr), segments=32)
    place = Matrix.Translation((r + hr * 0.55, 0, h / 2)) @ Matrix.Rotation(math.pi / 2, 4, "X")
    bmesh.ops.transform(handle, matrix=place, verts=handle.verts)
    return [_object("mug", [body, handle], procedural_material("mug", rng), True)]


def _ball(rng):
    prof = [(math.sin(math.pi * i / 24), -math.cos(math.pi * i / 24)) for i in range(25)]
    return [_object("ball", [_lathe(prof, 48)], procedural_material("ball", rng), True)]


def _bottle(rng):
    r, h, nr = float(rng.uniform(0.25, 0.4)), float(rng.uniform(1.2, 1.8)), float(rng.uniform(0.08, 0.12))
    sh = h * 0.6
    prof = [(0, 0), (r, 0), (r, sh)]
    prof += [(nr + (r - nr) * 0.5 * (1 + math.cos(math.pi * i / 8)), sh + 0.3 * i / 8) for i in range(1, 9)]
    prof += [(nr, h), (nr * 1.15, h), (nr * 1.15, h + 0.05), (0, h + 0.05)]
    return [_object("bottle", [_lathe(prof)], procedural_material("bottle", rng), True)]


def _doughnut(rng):
    big, small = 0.5, float(rng.uniform(0.15, 0.25))
    return [_object("doughnut", [_lathe(_circle_profile(small, big), 48)], procedural_material("doughnut", rng), True)]


def _bowl(rng):
    r, h, t = 0.6, float(rng.uniform(0.25, 0.45)), 0.03
    quarter = [math.pi / 2 * i / 8 for i in range(9)]
    outer = [(0.25 + (r - 0.25) * math.sin(a), h * (1 - math.cos(a))) for a in quarter]
    inner = [(x - t, z + t) for x, z in reversed(outer)]
    return [_object("bowl", [_lathe([(0, 0)] + outer + inner + [(0, t)])], procedural_material("bowl", rng), True)]


def _vase(rng):
    h, r = float(rng.uniform(1.0, 1.6)), float(rng.uniform(0.2, 0.35))
    w = float(rng.uniform(0.5, 1.5))
    prof = [(0, 0)] + [(r * (1 + 0.6 * math.sin(math.pi * w * i / 16 + 0.3)) * (1 - 0.4 * i / 16), h * i / 16)
                       for i in range(17)]
    top = prof[-1]
    prof += [(top[0] - 0.02, h), (top[0] - 0.02, h * 0.7), (0, h * 0.7)]
    return [_object("vase", [_lathe(prof)], procedural_material("vase", rng), True)]


def _can(rng):
    r, h = 0.33, float(rng.uniform(0.8, 1.2))
    prof = [(0, 0.02), (r * 0.9, 0), (r, 0.05), (r, h - 0.05), (r * 0.9, h), (r * 0.85, h - 0.02), (0, h - 0.02)]
    return [_object("can", [_lathe(prof)], procedural_material("can", rng), True)]


def _book(rng):
    w, d, t = float(rng.uniform(0.6, 0.8)), float(rng.uniform(0.9, 1.1)), float(rng.uniform(0.08, 0.3))
    cover = procedural_material("book_cover", rng, coords="Object")
    obj = _object("book", [_box((w, d, t), (0, 0, t / 2))], cover, False)
    pages = bpy.data.materials.new("book_pages")
    pages.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (0.85, 0.82, 0.72, 1.0)
    obj.data.materials.append(pages)
    for poly in obj.data.polygons:  # page edges: the three side faces away from the spine (-X)
        nx, ny, _ = poly.normal
        if nx > 0.5 or abs(ny) > 0.5:
            poly.material_index = 1
    return [obj]


def _chair(rng):
    s, lh, bh = 0.5, float(rng.uniform(0.4, 0.55)), float(rng.uniform(0.4, 0.6))
    leg, seat_t = 0.04, 0.05
    parts = [_box((leg, leg, lh), (x * (s - leg), y * (s - leg), lh / 2)) for x in (-1, 1) for y in (-1, 1)]
    parts.append(_box((2 * s, 2 * s, seat_t), (0, 0, lh + seat_t / 2)))
    parts.append(_box((2 * s, leg, bh), (0, s - leg / 2, lh + seat_t + bh / 2)))
    return [_object("chair", parts, procedural_material("chair", rng, coords="Object"), False)]


_BUILDERS: dict[str, Callable[[np.random.Generator], list]] = {
    "mug": _mug, "ball": _ball, "book": _book, "bottle": _bottle, "chair": _chair,
    "doughnut": _doughnut, "bowl": _bowl, "vase": _vase, "can": _can,
}


def build(kind: str, variant_seed: int) -> list[bpy.types.Object]:
    """Build procedural object ``kind`` (a key of ``PROCEDURAL_CATEGORY``); ``variant_seed`` fixes its
    proportions and material."""
    if kind not in _BUILDERS:
        raise ValueError(f"unknown procedural object {kind!r}; known: {', '.join(PROCEDURAL_CATEGORY)}")
    return _BUILDERS[kind](np.random.default_rng(variant_seed))
