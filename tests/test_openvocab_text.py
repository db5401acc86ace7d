"""The ``text`` prompt kind and the text-prompted rows (``sclip``, ``sclip-sam2.1``, ``proxyclip``, ``proxyclip-fsa``):
protocol, the per-class candidate mechanism, the shared pipeline pieces (windows, resize, native-resolution softmax,
regions, text encoding) checked against their definitions, and the tiny random ``-test`` rows end to end through
``flipbench eval`` and ``flipbench report``. The method-specific blocks are tested against the official code in
``tests/test_openvocab_blocks.py``. Real-size ViT-B runs are slow-marked.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import baselines.torchvision_compat  # noqa: F401  (before open_clip, which imports torchvision)

pytest.importorskip("open_clip", reason="the openvocab extra is not installed (pip install -e '.[openvocab]')")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from baselines.base import ObjectPrompt, PromptKindError  # noqa: E402
from baselines.candidates import TextCandidatePredictor, select_by_box  # noqa: E402
from benchmark.evaluation.params import EvalParams  # noqa: E402

DATA = Path(__file__).parent / "data"
COCO = DATA / "coco_val2017_mini.hdf5"


# -- protocol --------------------------------------------------------------------------------------------------------
def test_text_protocol_keeps_the_default_hash_and_needs_a_selection_rule():
    assert EvalParams().protocol_hash() == "24e68483bf20c3d9"
    assert EvalParams(upsampler="bilinear").protocol_hash() == "24e68483bf20c3d9"
    text = EvalParams(prompt="text", select="box")
    assert text.comparison_hash() == EvalParams().comparison_hash()  # reported beside box and Gaussian rows
    assert EvalParams(prompt="text", select="box", upsampler="loftup").comparison_hash() == text.comparison_hash()
    assert EvalParams(prompt="text", select="box", upsampler="loftup").protocol_hash() != text.protocol_hash()
    with pytest.raises(ValueError, match="--select box, point or oracle"):
        EvalParams(prompt="text")
    with pytest.raises(ValueError, match="upsampler"):
        EvalParams(upsampler="nearest")


class Boxes(TextCandidatePredictor):
    """Stand-in text model: class k's candidates are given boxes (inclusive rows/cols) of an 40x50 image."""

    CANDIDATES = {0: [(0, 0, 9, 9), (20, 20, 39, 29)], 1: [(5, 5, 14, 24)], 2: []}

    def prepare(self, image):
        self.prepared = image.shape

    def class_candidates(self, k):
        out = torch.zeros((len(self.CANDIDATES[k]), 40, 50), dtype=torch.bool)
        for i, (x0, y0, x1, y1) in enumerate(self.CANDIDATES[k]):
            out[i, y0:y1 + 1, x0:x1 + 1] = True
        return out


def text_prompt(text, select, box=(0, 0, 9, 9), point=None):
    return ObjectPrompt(box_xyxy=np.array(box, float), rho=np.zeros(5, np.float32), kind="text", text=text,
                        select=select, points=None if point is None else np.array([point], float),
                        point_labels=None if point is None else np.array([1]))


def test_text_prompt_selects_among_the_candidates_of_its_class_only():
    model = Boxes()
    with pytest.raises(RuntimeError, match="set_vocabulary"):
        model.set_image(np.zeros((40, 50, 3), np.uint8))
    model.set_vocabulary(["dog", "cat", "cow"])
    model.set_image(np.zeros((40, 50, 3), np.uint8))
    # the box of the first dog candidate: a cat candidate overlaps it, but only dogs are eligible
    (dog,) = model.predict([text_prompt("dog", "box", (0, 0, 9, 9))])
    assert dog.sum() == 100 and dog[:10, :10].all()
    (cat,) = model.predict([text_prompt("cat", "box", (0, 0, 9, 9))])
    assert cat.sum() == 200 and cat[5:25, 5:15].all()  # the only cat, whatever the box
    (second,) = model.predict([text_prompt("dog", "point", point=(30, 25))])
    assert second.sum() == 200 and second[25, 30]
    (missed,) = model.predict([text_prompt("dog", "point", point=(45, 2))])
    assert not missed.any()
    (none,) = model.predict([text_prompt("cow", "box")])
    assert not none.any() and none.shape == (40, 50)
    gt = np.zeros((40, 50), bool)
    gt[22:40, 20:30] = True
    assert model.predict_oracle(gt, text="dog").sum() == 200
    assert not model.predict_oracle(gt, text="cow").any()
    with pytest.raises(ValueError, match="not in the vocabulary"):
        model.predict([text_prompt("horse", "box")])
    with pytest.raises(PromptKindError, match="select"):
        model.predict([text_prompt("dog", None)])
    with pytest.raises(PromptKindError, match="takes text"):
        model.predict([ObjectPrompt(box_xyxy=np.zeros(4), rho=np.zeros(5, np.float32), kind="box")])


def test_resolve_prompt_pairs_text_with_text_models_only():
    from benchmark.evaluation.evaluate import resolve_prompt
    from benchmark.models import build_model

    model = Boxes()
    assert resolve_prompt(model, EvalParams(prompt="text", select="point")) == ("text", "point")
    assert resolve_prompt(model, EvalParams(prompt="text", select="oracle")) == ("text", "oracle")
    with pytest.raises(PromptKindError, match="--prompt text --select box, point or oracle"):
        resolve_prompt(model, EvalParams())  # native: its own kind, text, but no selection rule was given
    with pytest.raises(PromptKindError, match="cannot take box prompts"):
        resolve_prompt(model, EvalParams(prompt="box"))
    with pytest.raises(PromptKindError, match="cannot take text prompts"):
        resolve_prompt(build_model("box"), EvalParams(prompt="text", select="box"))


def test_vocabulary_is_every_category_name_of_the_dataset():
    from benchmark.evaluation.evaluate import text_vocabulary
    from objascale.hdf5_format import FlipDataset

    vocabulary = text_vocabulary(FlipDataset(COCO))
    assert list(vocabulary) == sorted(vocabulary) and len(vocabulary) == 15 and "person" in vocabulary

    class NoNames:
        def categories(self):
            return np.array(["unknown", "unknown"])

    with pytest.raises(ValueError, match="convert the source dataset again"):
        text_vocabulary(NoNames())


# -- shared pipeline pieces ------------------------------------------------------------------------------------------
def test_resize_windows_and_padding_follow_mmcv_and_mmseg():
    from baselines.openvocab.dense import pad_size, resized_size, windows

    assert resized_size(480, 640) == (336, 448)  # COCO: short side 336
    assert resized_size(427, 640) == (336, 504)  # 640 * 336 / 427 = 503.6 -> 504 (mmcv rounds half up)
    assert resized_size(100, 1000) == (205, 2048)  # the long side caps first
    # 336 x 448 in 224 windows every 112: 2 x 3, the last ones flush with the border
    wins = windows(336, 448, 224, 112)
    assert wins == [(0, 224, 0, 224), (0, 224, 112, 336), (0, 224, 224, 448),
                    (112, 336, 0, 224), (112, 336, 112, 336), (112, 336, 224, 448)]
    assert windows(336, 504, 336, 112) == [(0, 336, 0, 336), (0, 336, 112, 448), (0, 336, 168, 504)]
    assert windows(100, 120, 224, 112) == [(0, 100, 0, 120)]
    count = np.zeros((336, 504))
    for y1, y2, x1, x2 in windows(336, 504, 224, 112):
        count[y1:y2, x1:x2] += 1
    assert count.min() >= 1
    assert pad_size(336, 336, 56) == (0, 0, 0, 0) and pad_size(100, 120, 56) == (24, 24, 6, 6)


def test_native_maps_equal_the_authors_softmax_whatever_the_chunking():
    """The chunked online softmax gives the official ``softmax(logit_scale * bilinear(scores))``, class max over
    queries, argmax and probability threshold, exactly in the argmax and to float rounding in the probabilities."""
    from baselines.openvocab.dense import ClassMaps

    torch.manual_seed(0)
    scores = torch.randn(7, 9, 11) * 0.2
    query_class = torch.tensor([0, 0, 0, 1, 2, 3, 4])
    size = (23, 31)
    full = F.interpolate(scores[None], size=size, mode="bilinear")[0] * 50
    probs = full.softmax(0)
    cls = torch.stack([probs[query_class == c].max(0).values for c in range(5)])
    official = cls.argmax(0)
    official[cls.max(0).values < 0.3] = 0
    for chunk in (1, 2 * 23 * 31, 10 ** 9):
        maps = ClassMaps.from_scores(scores, query_class, 50.0, 0.3, size, chunk_pixels=chunk)
        assert torch.equal(maps.semantic_map(), official)
        for c in range(5):
            torch.testing.assert_close(maps.class_probability(c), cls[c], atol=1e-5, rtol=0)


def test_components_and_region_points():
    from baselines.openvocab.regions import components, interior_point, region_points

    mask = np.zeros((20, 30), bool)
    mask[2:5, 2:5] = True  # 9 px
    mask[5, 5] = True  # diagonal neighbour: same component with 8-connectivity
    mask[10:20, 10:30] = True  # 200 px
    comps = components(mask)
    assert comps.shape == (2, 20, 30) and comps[0].sum() == 200 and comps[1].sum() == 10
    assert components(np.zeros((4, 4), bool)).shape == (0, 4, 4)
    x, y = interior_point(np.pad(np.ones((5, 7), bool), ((3, 0), (2, 0))))
    assert (x, y) == (4, 5)  # 5 x 7 block, rows 3-7, cols 2-8: distance 3 at cols 4-6 of row 5, the first wins
    prob = np.zeros((20, 30))
    prob[10:20, 10:30] = 0.9
    prob[0:9, 0:9] = 0.8  # 81 px: below the 100-pixel minimum
    prob[0:9, 20:30] = 0.69  # below the 0.7 confidence
    points = region_points(prob)
    assert points.shape == (1, 2) and mask[int(points[0, 1]), int(points[0, 0])]
    assert region_points(prob, min_pixels=50).shape == (2, 2)


def test_trimmed_text_encoding_equals_open_clip_and_is_cached():
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    import open_clip
    from baselines.openvocab import dense
    from baselines.openvocab.predictors import tiny_clip

    torch.manual_seed(0)
    model = tiny_clip().eval()
    tokenizer = open_clip.get_tokenizer("ViT-B-16")
    tokens = tokenizer([t("traffic light") for t in OPENAI_IMAGENET_TEMPLATES[:12]])
    with torch.no_grad():
        torch.testing.assert_close(dense.encode_text_trimmed(model, tokens), model.encode_text(tokens),
                                   atol=1e-5, rtol=0)
        first = dense.query_embeddings(model, tokenizer, ["dog", "cat"], OPENAI_IMAGENET_TEMPLATES, "cpu")
        again = dense.query_embeddings(model, tokenizer, ["cat", "dog"], OPENAI_IMAGENET_TEMPLATES, "cpu")
        reference = F.normalize(F.normalize(model.encode_text(tokenizer(
            [t("cat") for t in OPENAI_IMAGENET_TEMPLATES])), dim=-1).mean(0), dim=0)
    assert torch.equal(again[0], first[1]) and torch.allclose(again[0], reference, atol=1e-5)
    assert torch.allclose(first.norm(dim=1), torch.ones(2))


# -- the models ------------------------------------------------------------------------------------------------------
def build(name, upsampler="bilinear"):
    from benchmark.evaluation.evaluate import configure_predictor
    from benchmark.models import build_model

    torch.manual_seed(0)
    model = build_model(name, allow_random=True)
    configure_predictor(model, EvalParams(prompt="text", select="box", upsampler=upsampler))
    return model


@pytest.mark.parametrize("name", ["sclip-test", "proxyclip-test", "proxyclip-fsa-test"])
def test_component_rows_select_components_of_the_semantic_map(name):
    from dataclasses import replace

    model = build(name)
    # random tiny models leave most pixels to the background: without it and the threshold, classes share the map
    model.spec = replace(model.spec, config=replace(model.spec.config, background=(), prob_thd=0.0))
    model.set_vocabulary(["dog", "cat", "person"])
    image = np.random.default_rng(1).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    model.set_image(image)
    stages = model.timer.pop()
    assert {"preprocess", "encoder", "postprocess"} <= set(stages)
    semantic = model.maps.semantic_map().numpy()
    assert semantic.shape == (60, 80) and set(np.unique(semantic)) <= {1, 2, 3} and len(np.unique(semantic)) >= 2
    for k, text in enumerate(model.vocabulary):
        candidates = model.class_candidates(k).numpy()
        assert (candidates.any(0) == (semantic == k + 1)).all()  # the components tile the class's pixels
        assert (candidates.sum(0) <= 1).all()
        box = np.array([0.0, 0.0, 79.0, 59.0])
        (mask,) = model.predict([text_prompt(text, "box", box)])
        expected = select_by_box(torch.as_tensor(candidates), torch.as_tensor(candidates.sum((1, 2))), box)
        assert (mask == (candidates[expected] if expected is not None else False)).all()
    assert sum(len(model.class_candidates(k)) for k in range(3)) >= 2
    info = model.describe()
    assert info["weights_kind"] == "random-init" and info["vocabulary"] == ["dog", "cat", "person"]
    assert ("mode" in info) == (name == "sclip-test")


def test_loftup_upsampler_replaces_the_bilinear_scores_and_names_the_row():
    bilinear, loftup = build("sclip-test"), build("sclip-test", upsampler="loftup")
    assert bilinear.loftup is None and loftup.loftup is not None
    assert loftup.describe()["mode"] == "loftup" and "loftup-clip" in loftup.describe()["components"]
    image = np.random.default_rng(2).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    for model in (bilinear, loftup):
        model.set_vocabulary(["dog", "cat"])
        model.set_image(image)
    a, b = bilinear.maps.top_prob, loftup.maps.top_prob
    assert a.shape == b.shape == (50, 70) and not torch.allclose(a, b)
    # the same CLIP (same seed): only the upsampling differs
    assert torch.equal(bilinear.clip.visual.proj, loftup.clip.visual.proj)
    with pytest.raises(ValueError, match="no upsampler option"):
        build("proxyclip-test", upsampler="loftup")


def test_sclip_sam_row_prompts_sam_at_its_region_points(monkeypatch):
    pytest.importorskip("sam2", reason="the sam2 extra is not installed")
    from baselines.openvocab import regions

    model = build("sclip-sam2.1-test")
    model.set_vocabulary(["dog", "cat"])
    image = np.random.default_rng(3).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    model.set_image(image)
    assert "decoder" in model.timer.pop()  # SAM 2.1's image encoder
    for k in range(2):  # the random model's own regions (perhaps none)
        points = regions.region_points(model.maps.class_probability(k + 1).numpy())
        assert model.class_candidates(k).shape == (len(points), 48, 64)
    # a class probability with two confident regions: one of 12 x 14 px, one of 9 x 9 (< 100 px: no point)
    prob = torch.zeros(48, 64)
    prob[2:14, 3:17], prob[30:39, 40:49] = 0.9, 0.95
    monkeypatch.setattr(model.maps, "class_probability", lambda c: prob)
    masks = model.class_candidates(0)
    assert model.last_stats["points"] == [[8.0, 7.0]]  # interior-most pixel of the large region (ties: first)
    logits, iou, _ = model.sam.predictor.predict(point_coords=np.array([[8.0, 7.0]], np.float32),
                                                 point_labels=np.ones(1, np.int32), multimask_output=True,
                                                 return_logits=True)
    assert masks.shape == (1, 48, 64) and torch.equal(masks[0], torch.from_numpy(logits[int(np.argmax(iou))] > 0))
    assert model.timer.pop().get("decoder", 0) > 0
    assert model.describe()["point_confidence"] == 0.7 and model.describe()["min_region_pixels"] == 100


def test_missing_checkpoints_say_what_to_download(tmp_path, monkeypatch):
    from baselines.weights import MissingCheckpointError
    from benchmark.models import build_model

    monkeypatch.setenv("FLIPBENCH_HOME", str(tmp_path))
    with pytest.raises(MissingCheckpointError, match="flipbench weights download clip-vit-b16"):
        build_model("sclip")
    with pytest.raises(MissingCheckpointError, match="--allow-random-weights"):
        build_model("proxyclip-test")
    with pytest.raises(ValueError, match="several checkpoints"):
        build_model("proxyclip:/some/file.pt", allow_random=True)


def test_poisoned_component_files_never_run(tmp_path, monkeypatch):
    """The text rows' checkpoints in $FLIPBENCH_HOME are read as tensors only: a pickle that would run code is refused
    with a one-line error naming the file, and a pickle posing as safetensors is not a safetensors file."""
    from baselines import weights as W
    from baselines.safe_load import CheckpointError
    from benchmark.models import build_model

    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "PWNED"), "w"))

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("FLIPBENCH_HOME", str(home))
    catalog = W.full_catalog()
    for name in ("clip-vit-b16", "dino-vitb8", "loftup-clip"):
        torch.save({"model": Evil(), "w": torch.zeros(2)}, home / catalog[name].filename)
    with pytest.raises(CheckpointError, match="not a safetensors file") as err:
        build_model("sclip")
    assert "\n" not in str(err.value)
    (home / catalog["clip-vit-b16"].filename).unlink()  # now CLIP is random and DINO's poisoned file is read
    with pytest.raises(CheckpointError, match=catalog["dino-vitb8"].filename):
        build_model("proxyclip", allow_random=True)
    model = build("sclip")  # random CLIP; asking for LoftUp reads its poisoned file
    with pytest.raises(CheckpointError, match=catalog["loftup-clip"].filename):
        model.configure(EvalParams(prompt="text", select="box", upsampler="loftup"))
    assert not (tmp_path / "PWNED").exists()


def test_weights_list_gives_licences_and_the_method_licences():
    from benchmark.commands.weights_cmd import weights_cmd

    table = CliRunner().invoke(weights_cmd, ["list", "--format", "table"], env={"COLUMNS": "300"})
    assert table.exit_code == 0, table.output
    assert "NTU S-Lab License 1.0" in table.output and "FSA (chi-chi-zx/FSA): the repository carries no licence file" \
        in table.output
    rows = {r["name"]: r for r in json.loads(CliRunner().invoke(weights_cmd, ["list", "--format", "json"]).output)}
    for name in ("clip-vit-b16", "dino-vitb8", "loftup-clip"):
        assert rows[name]["licence"] and rows[name]["url"].startswith("https://")
    assert "NTU S-Lab" in rows["dino-vitb8"]["note"]


# -- end to end ------------------------------------------------------------------------------------------------------
def test_eval_and_report_put_text_rows_beside_box_and_gaussian_rows(tmp_path):
    """``flipbench eval --prompt text`` (box, point, oracle selection) and a native run, reported together."""
    from benchmark.cli import main
    from benchmark.report.runs import load_runs

    runner = CliRunner()
    common = ["eval", "--dataset", str(COCO), "--limit", "6", "--allow-random-weights", "--no-progress"]
    runs = {
        "text-box": ["--model", "sclip-test,proxyclip-test,proxyclip-fsa-test", "--prompt", "text", "--select", "box"],
        "text-loftup": ["--model", "sclip-test", "--prompt", "text", "--select", "box", "--upsampler", "loftup"],
        "text-point": ["--model", "sclip-test", "--prompt", "text", "--select", "point"],
        "text-oracle": ["--model", "sclip-test", "--prompt", "text", "--select", "oracle"],
        "native": ["--model", "box,ellipse"],
    }
    for name, args in runs.items():
        result = runner.invoke(main, common + args + ["--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    refused = runner.invoke(main, common + ["--model", "sclip-test", "--prompt", "text", "--out", str(tmp_path / "x")])
    assert refused.exit_code != 0 and "Error" in refused.output and "--select box, point or oracle" in refused.output
    refused = runner.invoke(main, common + ["--model", "box", "--prompt", "text", "--select", "box",
                                            "--out", str(tmp_path / "y")])
    assert refused.exit_code != 0 and "cannot take text prompts" in refused.output

    dirs = [tmp_path / name for name in runs]
    combined = load_runs(dirs)
    assert combined.labels == [
        "sclip-test (text, box-selected, bilinear, random-init)", "proxyclip-test (text, box-selected, random-init)",
        "proxyclip-fsa-test (text, box-selected, random-init)", "sclip-test (text, box-selected, loftup, random-init)",
        "sclip-test (text, point-selected, bilinear, random-init)",
        "sclip-test (text, oracle: upper bound, bilinear, random-init)", "box (box)", "ellipse (gaussian)"]
    records = combined.records
    text = records[records["prompt"] == "text"]
    assert len(text) == 6 * 6 and text["category"].ne("unknown").all()
    wide = records.pivot_table(index="instance_index", columns="label", values="iou")
    oracle = wide["sclip-test (text, oracle: upper bound, bilinear, random-init)"]
    for label in ("sclip-test (text, box-selected, bilinear, random-init)",
                  "sclip-test (text, point-selected, bilinear, random-init)"):
        assert (oracle >= wide[label] - 1e-12).all()  # the oracle picks among the same candidates
    point = records[records["label"] == "sclip-test (text, point-selected, bilinear, random-init)"]
    assert point["prompt_points"].notna().all()
    meta = json.loads((tmp_path / "text-box" / "run.json").read_text())
    assert meta["models"]["sclip-test"]["vocabulary"] == sorted(set(meta["models"]["sclip-test"]["vocabulary"]))

    from benchmark.view.index import build_index  # the viewer: its prompt filter and object pages

    view = build_index(combined)
    shown = view.query(prompt="text")
    assert len(shown) == 6 and len(view.query(prompt="box")) == 6
    figures = {row["label"]: row for row in view.object_rows(int(shown["key"].iloc[0]))}
    assert figures["sclip-test (text, point-selected, bilinear, random-init)"]["prompt"] == "text"

    result = runner.invoke(main, ["report", *map(str, dirs), "--out", str(tmp_path / "report"), "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "report" / "report.md").read_text()
    assert "sclip-test (text, box-selected, loftup, random-init)" in report and "ellipse (gaussian)" in report


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sclip", "proxyclip-fsa"])
def test_real_size_rows_on_a_coco_image(name, tmp_path, monkeypatch):
    """ViT-B/16 (and DINO ViT-B/8) at full size, random weights, on the first COCO image (minutes on 2 CPU cores)."""
    from benchmark.cli import main

    monkeypatch.setenv("FLIPBENCH_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(main, ["eval", "--dataset", str(COCO), "--model", name, "--prompt", "text",
                                       "--select", "box", "--limit", "3", "--allow-random-weights", "--no-progress",
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["models"][name]["parameters"] > 80_000_000
