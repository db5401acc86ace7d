"""Blender scene construction for one ObjaScale image (runs inside a bpy worker process).

World: TexCoord(Generated) -> Mapping (z rotation = heading) -> Environment Texture (HDRI) -> Background ->
World Output; exposure is the view-transform exposure in EV. Camera at the origin, looking horizontally along
+Y rotated by ``pitch`` (degrees, positive = up). The object hierarchy is parented to one empty named
:data:`TARGET_NAME`; the Cryptomatte *asset* pass groups every mesh under that root into one id, so multi-part
assets give one mask. The root's transform normalises the asset to a unit bounding sphere at its centre, rotates
and places it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import bpy
import numpy as np
from mathutils import Euler, Matrix, Vector

from objascale.generator import procedural

__all__ = ["TARGET_NAME", "GROUND_NAME", "reset", "place_ground", "setup_world", "setup_black_world",
           "setup_camera", "load_object",
           "place_object", "configure_cycles", "missing_textures"]

TARGET_NAME = "flipbench_target"
GROUND_NAME = "flipbench_ground"


def reset() -> bpy.types.Scene:
    """Empty factory scene (fast, no startup file)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    return scene


def setup_world(scene: bpy.types.Scene, hdri_path: str, heading_deg: float, exposure_ev: float) -> None:
    world = bpy.data.worlds.new("flipbench_world")
    scene.world = world
    nt = world.node_tree
    for n in list(nt.nodes):
        nt.nodes.remove(n)
    coord = nt.nodes.new("ShaderNodeTexCoord")
    mapping = nt.nodes.new("ShaderNodeMapping")
    mapping.inputs["Rotation"].default_value = (0.0, 0.0, math.radians(heading_deg))
    env = nt.nodes.new("ShaderNodeTexEnvironment")
    env.image = bpy.data.images.load(hdri_path, check_existing=True)
    bg = nt.nodes.new("ShaderNodeBackground")
    out = nt.nodes.new("ShaderNodeOutputWorld")
    nt.links.new(coord.outputs["Generated"], mapping.inputs["Vector"])
    nt.links.new(mapping.outputs["Vector"], env.inputs["Vector"])
    nt.links.new(env.outputs["Color"], bg.inputs["Color"])
    nt.links.new(bg.outputs["Background"], out.inputs["Surface"])
    # Cycles' automatic importance map costs ~2 CPU-s per render for the 1K bundled HDRIs; a 256 map gives the
    # same image there. Larger HDRIs (sharper suns) get a 1024 map.
    world.cycles.sampling_method = "MANUAL"
    world.cycles.sample_map_resolution = 256 if env.image.size[0] <= 1024 else 1024
    scene.view_settings.exposure = float(exposure_ev)


def setup_black_world(scene: bpy.types.Scene) -> None:
    """Calibration world: pure black background, linear "Standard" view transform (pixel = scene value)."""
    world = bpy.data.worlds.new("flipbench_black")
    scene.world = world
    bg = world.node_tree.nodes.get("Background")
    if bg is not None:
        bg.inputs["Color"].default_value = (0.0, 0.0, 0.0, 1.0)
        bg.inputs["Strength"].default_value = 0.0
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"


def setup_camera(scene: bpy.types.Scene, lens_mm: float, sensor_mm: float, pitch_deg: float) -> bpy.types.Object:
    cam_data = bpy.data.cameras.new("flipbench_camera")
    cam_data.lens = lens_mm
    cam_data.sensor_width = sensor_mm
    cam_data.sensor_fit = "AUTO"
    cam_data.clip_start = 0.01
    cam_data.clip_end = 1e7
    cam = bpy.data.objects.new("flipbench_camera", cam_data)
    scene.collection.objects.link(cam)
    cam.rotation_euler = Euler((math.pi / 2 + math.radians(pitch_deg), 0.0, 0.0), "XYZ")
    scene.camera = cam
    return cam


def _import_file(path: str) -> list[bpy.types.Object]:
    before = set(bpy.data.objects)
    suffix = Path(path).suffix.lower()
    if suffix in (".glb", ".gltf"):
        bpy.ops.import_scene.gltf(filepath=path)
    elif suffix == ".obj":
        bpy.ops.wm.obj_import(filepath=path)
    else:
        raise ValueError(f"unsupported mesh file {path} (use .glb, .gltf or .obj)")
    new = [o for o in bpy.data.objects if o not in before]
    for o in list(new):  # asset cameras and lights would change the shot / lighting
        if o.type in ("CAMERA", "LIGHT", "LIGHT_PROBE", "SPEAKER"):
            bpy.data.objects.remove(o, do_unlink=True)
    return [o for o in bpy.data.objects if o not in before]


def load_object(scene: bpy.types.Scene, source: str, kind_or_path: str, variant_seed: int,
                calibration: bool = False) -> tuple[bpy.types.Object, float, np.ndarray]:
    """Create the target object under a root empty; returns (root, radius, centre) of its bounding sphere.

    ``source``: "procedural" (``kind_or_path`` = kind) or a mesh file path. In calibration mode every material
    is replaced by a flat green emitter.
    """
    if source == "procedural":
        objs = procedural.build(kind_or_path, variant_seed)
    else:
        objs = _import_file(kind_or_path)
    meshes = [o for o in objs if o.type == "MESH"]
    if not meshes:
        raise ValueError(f"{kind_or_path}: no mesh in the asset")
    root = bpy.data.objects.new(TARGET_NAME, None)
    scene.collection.objects.link(root)
    for o in objs:
        if o.parent is None:
            o.parent = root
    if calibration:
        mat = procedural.emitter_material()
        for o in meshes:
            o.data.materials.clear()
            o.data.materials.append(mat)
    bpy.context.view_layer.update()
    allp = _world_points(root)
    if not len(allp):
        raise ValueError(f"{kind_or_path}: the asset's meshes have no vertices")
    centre = (allp.min(0) + allp.max(0)) / 2.0
    radius = float(np.sqrt(((allp - centre) ** 2).sum(1).max()))
    if not radius > 0:
        raise ValueError(f"{kind_or_path}: degenerate (zero-size) asset")
    return root, radius, centre


def place_object(root: bpy.types.Object, radius: float, centre: np.ndarray, position: np.ndarray,
                 yaw_deg: float, tilt_deg: float, tilt_axis_deg: float) -> None:
    """root = T(position) R_tilt R_yaw S(1/radius) T(-centre): unit sphere at ``position`` (world coordinates)."""
    a = math.radians(tilt_axis_deg)
    tilt = Matrix.Rotation(math.radians(tilt_deg), 4, Vector((math.cos(a), math.sin(a), 0.0)))
    yaw = Matrix.Rotation(math.radians(yaw_deg), 4, "Z")
    m = (Matrix.Translation(Vector(position.tolist())) @ tilt @ yaw @ Matrix.Scale(1.0 / radius, 4)
         @ Matrix.Translation(Vector((-centre).tolist())))
    root.matrix_world = m


def _world_points(root: bpy.types.Object) -> np.ndarray:
    """float64 [N, 3] world coordinates of every mesh vertex under ``root``."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    pts = []
    for o in root.children_recursive:
        if o.type != "MESH":
            continue
        ev = o.evaluated_get(depsgraph)
        me = ev.to_mesh()
        if len(me.vertices):
            co = np.empty(len(me.vertices) * 3, dtype=np.float64)
            me.vertices.foreach_get("co", co)
            mw = np.array(ev.matrix_world, dtype=np.float64)
            pts.append(co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3])
        ev.to_mesh_clear()
    return np.concatenate(pts) if pts else np.zeros((0, 3))


def place_ground(scene: bpy.types.Scene, root: bpy.types.Object,
                 plane: bpy.types.Object | None = None) -> bpy.types.Object:
    """Shadow-catcher ground plane touching the lowest point of the placed object (created on the first call,
    moved on later ones; returns it).

    The plane is horizontal (world z = the object's lowest vertex), centred under the object, 50 bounding radii
    wide, and a Cycles shadow catcher: it shows the HDRI behind it with the object's shadow (and no other surface)
    composited in, so the background stays the environment map. It is its own Cryptomatte asset, so the target
    mask is unchanged. When the object's lowest point is not below the camera (z = 0) the plane would be seen
    from underneath; it is then hidden (``hide_render``) for this image. Probe renders never include it (it is
    created after the scale control).
    """
    bpy.context.view_layer.update()
    pts = _world_points(root)
    if plane is None:
        mesh = bpy.data.meshes.new(GROUND_NAME)
        mesh.from_pydata([(-0.5, -0.5, 0.0), (0.5, -0.5, 0.0), (0.5, 0.5, 0.0), (-0.5, 0.5, 0.0)], [],
                         [(0, 1, 2, 3)])
        plane = bpy.data.objects.new(GROUND_NAME, mesh)
        scene.collection.objects.link(plane)
        plane.is_shadow_catcher = True
    lo, hi = pts.min(0), pts.max(0)
    radius = float(np.linalg.norm(hi - lo)) / 2.0
    centre = (lo + hi) / 2.0
    plane.location = (float(centre[0]), float(centre[1]), float(lo[2]))
    plane.scale = (50.0 * radius, 50.0 * radius, 1.0)
    plane.hide_render = not lo[2] < -1e-6 * max(radius, 1e-9)
    return plane


def configure_cycles(scene: bpy.types.Scene, device: str, threads: int) -> None:
    """Cycles on ``device`` (CPU, CUDA or OPTIX; falls back to CPU with a warning when no such GPU is present)."""
    cyc = scene.cycles
    cyc.device = "CPU"
    if device != "CPU":
        prefs = bpy.context.preferences.addons["cycles"].preferences
        prefs.compute_device_type = device
        prefs.refresh_devices()
        gpus = [d for d in prefs.devices if d.type == device]
        if gpus:
            for d in prefs.devices:
                d.use = d.type == device
            cyc.device = "GPU"
        else:
            print(f"flipbench: no {device} device found, rendering on CPU", flush=True)
    if threads > 0:
        scene.render.threads_mode = "FIXED"
        scene.render.threads = threads
    cyc.use_adaptive_sampling = False
    cyc.pixel_filter_type = "BLACKMAN_HARRIS"
    cyc.filter_width = 1.5
    scene.render.use_persistent_data = False
    scene.render.resolution_percentage = 100
    scene.view_layers[0].use_pass_cryptomatte_asset = True
    scene.view_layers[0].pass_cryptomatte_depth = 2


def missing_textures() -> list[str]:
    """Names of image textures whose pixels cannot be loaded (would render magenta)."""
    bad = []
    for img in bpy.data.images:
        if img.source != "FILE" or img.name.startswith("Render Result"):
            continue
        if img.packed_file is None and not os.path.isfile(bpy.path.abspath(img.filepath)):
            bad.append(img.name)
        elif img.size[0] == 0 or img.size[1] == 0:
            bad.append(img.name)
    return bad
