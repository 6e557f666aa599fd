"""The bad-input battery: every case is one command a new user could type, with one thing wrong.

Each case runs ``adaptsam.cli.main`` in-process and asserts: the documented exit status (2 for bad input;
predict's per-image failures exit 1), no ``Traceback`` on stderr, and stderr names the offending value or
file and what was expected. Valid-but-odd inputs (some empty masks, 16-bit images, YAML's ``1e-4`` text)
check their documented handling instead. A handful of subprocess cases prove the real exit code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from adaptsam.cli import main

from .bad_input_world import TINY_MODEL, World

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

Argv = Callable[[World], list[str]]


@dataclass(frozen=True)
class Case:
    id: str
    argv: Argv
    expect: tuple[str, ...]  # substrings of stderr (case-insensitive): the bad value/file and what was expected
    code: int = 2
    marks: tuple = field(default_factory=tuple)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:  # noqa: ANN001
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors: usage + one line, exit 2
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def _train(w: World, *extra: str, data: str | None = None, out: str | None = None) -> list[str]:
    return ["train", *TINY_MODEL, "--data", data or str(w.good_data()), "--steps", "1", "--limit", "2",
            "--no-progress", "--out", out or str(w.path("train")), *extra]


def _eval(w: World, *extra: str, data: str | None = None, model: tuple[str, ...] | None = None) -> list[str]:
    chosen = list(TINY_MODEL) + ["--adapter", "frozen"] if model is None else list(model)
    return ["eval", *chosen, "--data", data or str(w.good_data()), "--no-progress", "--out", str(w.path("eval")),
            *extra]


def _eval_weights(w: World, weights: Path, *extra: str) -> list[str]:
    return ["eval", "--weights", str(weights), "--data", str(w.good_data()), "--no-progress",
            "--out", str(w.path("eval_w")), *extra]


def _predict(w: World, prompts: Path | None, *extra: str) -> list[str]:
    head = [str(w.adapter()), str(w.image())]
    return ["predict", *head, "--out", str(w.path("pred")), "-q",
            *(["--prompts", str(prompts)] if prompts else []), *extra]


def _bench(w: World, *extra: str, out: str | None = None, dry_run: bool = True) -> list[str]:
    return ["bench", "--backbones", "lite_medsam_test", "--adapters", "frozen", "--policies", "native",
            "--resolutions", "64", "--data", str(w.good_data()), "--random-init", "--no-progress", "--no-report",
            "--eval-limit", "1", "--steps", "0", "--out", out or str(w.path("bench")),
            *(["--dry-run"] if dry_run else []), *extra]


def _labelme(src: Path, *extra: str, dst: str | None = None) -> list[str]:
    return ["import", "labelme", str(src), dst or str(src.parent.parent / "fresh" / f"lm_{src.name}"), *extra]


def _poly(label: str = "cat", points: object = ((2, 2), (10, 2), (10, 10)), kind: str | None = "polygon") -> dict:
    shape = {"label": label, "points": [list(p) for p in points] if isinstance(points, tuple) else points}
    if kind is not None:
        shape["shape_type"] = kind
    return shape



CASES: list[Case] = [
    # -- adapter and policy options (--adapter-cfg / --policy-cfg) ----------------------------------------------
    Case("adapter-cfg rank=0", lambda w: _train(w, "--adapter", "lora", "--adapter-cfg", "rank=0"),
         ("rank", "expected rank >= 1", "got 0")),
    Case("adapter-cfg rank=-2", lambda w: _train(w, "--adapter", "lora", "--adapter-cfg", "rank=-2"),
         ("rank", "got -2")),
    Case("adapter-cfg rank=abc", lambda w: _train(w, "--adapter", "lora", "--adapter-cfg", "rank=abc"),
         ("rank", "'abc'")),
    Case("adapter-cfg rank=2.5", lambda w: _train(w, "--adapter", "lora", "--adapter-cfg", "rank=2.5"),
         ("rank", "2.5")),
    Case("adapter-cfg unknown key", lambda w: _train(w, "--adapter", "lora", "--adapter-cfg", "rankk=8"),
         ("no option rankk", "options: rank")),
    Case("adapter-cfg malformed JSON", lambda w: _train(w, "--adapter", "lora", "--adapter-cfg", '{"rank": 8'),
         ("--adapter-cfg", "not valid json", "expected")),
    Case("adapter-cfg JSON list", lambda w: _train(w, "--adapter", "lora", "--adapter-cfg", "{1, 2}"),
         ("--adapter-cfg", "not valid json")),
    Case("adapter-cfg no equals", lambda w: _train(w, "--adapter", "lora", "--adapter-cfg", "rank8"),
         ("--adapter-cfg", "expected key=value", "'rank8'")),
    Case("adapter-cfg empty key", lambda w: _train(w, "--adapter", "lora", "--adapter-cfg", "=8"),
         ("--adapter-cfg", "expected key=value")),
    Case("adapter-cfg bad YAML value", lambda w: _train(w, "--adapter", "lora", "--adapter-cfg", "targets=[qv"),
         ("--adapter-cfg", "targets")),
    Case("adapter-cfg alpha=-1", lambda w: _train(w, "--adapter", "lora", "--adapter-cfg", "alpha=-1"),
         ("alpha", "expected alpha > 0")),
    Case("adapter-cfg dropout=1.5", lambda w: _train(w, "--adapter", "lora", "--adapter-cfg", "dropout=1.5"),
         ("dropout", "1.5")),
    Case("adapter-cfg targets unknown", lambda w: _train(w, "--adapter", "lora", "--adapter-cfg", "targets=[xyz]"),
         ("targets", "xyz")),
    Case("adapter-cfg targets overlap", lambda w: _train(w, "--adapter", "lora", "--adapter-cfg",
                                                         "targets=[qv,qkv]"), ("qv", "qkv", "pick one")),
    Case("adapter-cfg sam_adapter tau=2", lambda w: _train(w, "--adapter", "sam_adapter", "--adapter-cfg", "tau=2"),
         ("tau", "2")),
    Case("adapter-cfg on frozen", lambda w: _train(w, "--adapter", "frozen", "--adapter-cfg", "rank=4"),
         ("no option rank",)),
    Case("policy-cfg unknown key", lambda w: _train(w, "--adapter", "decoder", "--policy-cfg", "foo=1"),
         ("policy", "foo")),
    Case("policy-cfg bad interpolation", lambda w: _train(w, "--adapter", "decoder", "--policy", "upsample",
                                                          "--policy-cfg", "interpolation=cubic"),
         ("interpolation", "cubic")),
    Case("policy-cfg malformed JSON", lambda w: _train(w, "--adapter", "decoder", "--policy-cfg", "{oops"),
         ("--policy-cfg", "not valid json")),
    # -- numeric flags --------------------------------------------------------------------------------------------
    Case("steps -5", lambda w: _train(w, "--adapter", "decoder", "--steps", "-5"), ("steps", "-5", ">= 0")),
    Case("steps abc", lambda w: _train(w, "--steps", "abc"), ("--steps", "abc")),
    Case("batch-size 0", lambda w: _train(w, "--adapter", "decoder", "--batch-size", "0"),
         ("batch_size", ">= 1", "got 0")),
    Case("grad-accum 0", lambda w: _train(w, "--adapter", "decoder", "--grad-accum", "0"), ("grad_accum", "got 0")),
    Case("shots 0", lambda w: _train(w, "--adapter", "decoder", "--shots", "0"), ("shots", ">= 1", "got 0")),
    Case("shots -3", lambda w: _train(w, "--adapter", "decoder", "--shots", "-3"), ("shots", "got -3")),
    Case("-R 0", lambda w: ["train", "--backbone", "lite_medsam_test", "--random-init", "--policy", "native",
                            "-R", "0", "--data", str(w.good_data()), "--out", str(w.path("r0"))],
         ("resolution", "got 0")),
    Case("-R -64", lambda w: _train(w, "-R", "-64"), ("resolution", "-64")),
    Case("-R 16 below the minimum", lambda w: _train(w, "-R", "16"), ("resolution 16", "outside")),
    Case("-R above the design size", lambda w: _train(w, "-R", "4096"), ("resolution 4096", "design size")),
    Case("-R abc", lambda w: _train(w, "-R", "abc"), ("-R", "abc")),
    Case("lr 0", lambda w: _train(w, "--adapter", "decoder", "--lr", "0"), ("lr", "> 0", "got 0")),
    Case("lr negative", lambda w: _train(w, "--adapter", "decoder", "--lr=-1e-3"), ("lr", "-0.001")),
    Case("lr nan", lambda w: _train(w, "--adapter", "decoder", "--lr", "nan"), ("lr", "finite", "nan")),
    Case("lr inf", lambda w: _train(w, "--adapter", "decoder", "--lr", "inf"), ("lr", "inf")),
    Case("adapter-lr 0", lambda w: _train(w, "--adapter", "lora", "--adapter-lr", "0"), ("adapter_lr", "got 0")),
    Case("weight-decay -1", lambda w: _train(w, "--adapter", "decoder", "--weight-decay", "-1"),
         ("weight_decay", "-1")),
    Case("seed -1", lambda w: _train(w, "--adapter", "decoder", "--seed", "-1"), ("seed", "-1")),
    Case("limit 0", lambda w: _train(w, "--adapter", "decoder", "--limit", "0"), ("eval_limit", "got 0")),
    Case("prompt choice", lambda w: _train(w, "--prompt", "boxes"), ("--prompt", "boxes")),
    # -- names ----------------------------------------------------------------------------------------------------
    Case("unknown backbone", lambda w: _train(w, "--backbone", "lite_medsamm"), ("lite_medsamm", "did you mean")),
    Case("unknown adapter", lambda w: _train(w, "--adapter", "lorra"), ("lorra", "did you mean 'lora'")),
    Case("unknown policy", lambda w: _train(w, "--adapter", "decoder", "--policy", "nativ"), ("nativ", "native")),
    Case("unknown dataset name", lambda w: _train(w, "--adapter", "decoder", data="kvasir_segg"),
         ("kvasir_segg",)),
    Case("data path missing", lambda w: _train(w, "--adapter", "decoder", data=str(w.root / "nowhere" / "d")),
         ("nowhere", "does not exist")),
    Case("data path is a file", lambda w: _train(w, "--adapter", "decoder", data=str(w.a_file())),
         ("plain.txt", "is a file")),
    Case("unknown split", lambda w: _eval(w, "--split", "validation"), ("validation", "available splits")),
    # -- output folders -------------------------------------------------------------------------------------------
    Case("out is a file", lambda w: _train(w, "--adapter", "decoder", out=str(w.a_file())),
         ("--out", "plain.txt", "is a file")),
    Case("out under a file", lambda w: _train(w, "--adapter", "decoder", out=str(w.a_file() / "sub")),
         ("--out", "cannot be created")),
    Case("out holds a finished run", lambda w: _train(w, "--adapter", "decoder", out=str(w.finished_run())),
         ("finished_run", "already holds a finished run", "--force")),
    Case("eval out holds metrics.json", lambda w: ["eval", *TINY_MODEL, "--adapter", "frozen", "--data",
                                                   str(w.good_data()), "--out", str(w.finished_run())],
         ("metrics.json", "--force")),
    Case("bench out is a file", lambda w: _bench(w, out=str(w.a_file()), dry_run=False),
         ("--out", "plain.txt", "is a file")),
    Case("predict out is a file", lambda w: _predict(w, w.prompts("ok", {"img.png": {"boxes": [[2, 2, 20, 20]]}}),
                                                     "--out", str(w.a_file())), ("--out", "is a file")),
    # -- YAML configs -------------------------------------------------------------------------------------------
    Case("config missing", lambda w: _train(w, "--config", str(w.root / "no.yaml")), ("no.yaml", "cannot read")),
    Case("config malformed", lambda w: _train(w, "--config", str(w.yaml("malformed", "backbone: [unclosed\n"))),
         ("malformed.yaml", "expected a yaml mapping")),
    Case("config is a list", lambda w: _train(w, "--config", str(w.yaml("list", "- a\n- b\n"))),
         ("list.yaml", "mapping", "list")),
    Case("config unknown key", lambda w: _train(w, "--config", str(w.yaml("unknown", "backbonee: vit_test\n"))),
         ("backbonee", "did you mean 'backbone'")),
    Case("config unknown train key", lambda w: _train(w, "--config", str(w.yaml("trainkey", "train:\n  stepz: 3\n"))),
         ("stepz", "unknown train keys", "'steps'")),
    Case("config train is a list", lambda w: _train(w, "--config", str(w.yaml("trainlist", "train: [1, 2]\n"))),
         ("train", "mapping", "[1, 2]")),
    Case("config resolution text", lambda w: ["train", "--config", str(w.yaml("restext", "resolution: abc\n")),
                                              "--out", str(w.path("yr"))], ("resolution", "'abc'")),
    Case("config steps text", lambda w: _train(w, "--adapter", "decoder", "--config",
                                               str(w.yaml("stepstext", "train:\n  batch_size: four\n"))),
         ("batch_size", "'four'")),
    Case("config adapter_cfg not a mapping", lambda w: _train(w, "--config", str(w.yaml("acfg", "adapter_cfg: 5\n"))),
         ("adapter_cfg", "mapping", "5")),
    Case("config adapter_cfg merged with flag", lambda w: _train(
        w, "--adapter-cfg", "rank=2", "--config", str(w.yaml("acfg2", "adapter_cfg: [1]\n"))), ("adapter_cfg", "[1]")),
    Case("config loss unknown key", lambda w: _train(w, "--config", str(w.yaml("loss", "train:\n  loss: {foc: 1}\n"))),
         ("foc", "train.loss")),
    Case("config loss negative", lambda w: _train(w, "--adapter", "decoder", "--config",
                                                  str(w.yaml("lossneg", "train:\n  loss: {focal: -1}\n"))),
         ("train.loss", "-1")),
    Case("config pretrained text", lambda w: ["train", "--config", str(w.yaml("pre", "pretrained: maybe\n")),
                                              "--out", str(w.path("pre"))],
         ("pretrained", "maybe")),
    Case("config prompt unknown", lambda w: _train(w, "--config", str(w.yaml("prompt", "prompt: boxes\n"))),
         ("prompt", "boxes")),
    Case("config eval_limit 0", lambda w: ["train", "--config", str(w.yaml("el", "eval_limit: 0\n")),
                                           "--out", str(w.path("el"))],
         ("eval_limit", "got 0")),
    Case("config warmup 1.5", lambda w: _train(w, "--adapter", "decoder", "--config",
                                               str(w.yaml("warm", "train:\n  warmup: 1.5\n"))), ("warmup", "1.5")),
    Case("config progress text", lambda w: ["train", "--config", str(w.yaml("prog", "train:\n  progress: sure\n")),
                                            "--out", str(w.path("prog"))],
         ("progress", "sure")),
    Case("config backbone number", lambda w: ["train", "--config", str(w.yaml("bnum", "backbone: 5\n")),
                                              "--out", str(w.path("bn"))], ("backbone", "5")),
    # -- datasets -------------------------------------------------------------------------------------------------
    *[Case(f"dataset {kind}", (lambda k: lambda w: _eval(w, "--split", "train", data=str(w.broken_data(k))))(kind),
           expect)
      for kind, expect in [
          ("no_masks_dir", ("broken_no_masks_dir", "masks/")),
          ("no_images_dir", ("broken_no_images_dir", "images/")),
          ("mask_size", ("b0.png", "exactly its image's size")),
          ("mask_colour", ("b0.png", "colour image")),
          ("mask_values", ("b0.png", "values 0, 7", "0 and 255")),
          ("labels_malformed", ("labels.txt", "line 2", "expected 'index name'")),
          ("labels_gap", ("labels.txt", "index 1")),
          ("labels_background_only", ("labels.txt", "no foreground class")),
          ("labels_values", ("b0.png", "9", "not classes")),
          ("image_garbage", ("b0.png", "cannot read image")),
          ("mask_garbage", ("b0.png", "cannot read mask")),
          ("two_images", ("b0", "more than one image")),
      ]],
    *[Case(f"train dataset {kind}", (lambda k: lambda w: _train(w, "--adapter", "decoder",
                                                                data=str(w.broken_data(k))))(kind), expect)
      for kind, expect in [
          ("missing_mask", ("b0", "has no mask")),
          ("missing_image", ("ghost", "have no image")),
          ("split_empty", ("train.txt", "is empty")),
          ("split_duplicate", ("train.txt", "'b0' twice")),
      ]],
    Case("train on all-empty masks", lambda w: _train(w, "--adapter", "decoder", data=str(w.empty_masks())),
         ("empty_masks/train", "holds an object")),
    Case("train lora on all-empty masks", lambda w: _train(w, "--adapter", "lora", "--adapter-cfg", "rank=2",
                                                           data=str(w.empty_masks())), ("empty_masks", "object")),
    Case("eval on all-empty masks", lambda w: _eval(w, data=str(w.empty_masks())),
         ("empty_masks/test", "nothing to score", "nan")),
    Case("eval labelled 0/255 masks", lambda w: _eval(w, data=str(w.labelled_0_255())),
         ("labels.txt", "255 means ignore", "nothing to score")),
    # -- adapter files ----------------------------------------------------------------------------------------
    Case("weights missing", lambda w: _eval_weights(w, w.root / "nope.safetensors"),
         ("nope.safetensors", "does not exist")),
    Case("weights text file", lambda w: _eval_weights(w, w.a_file("fake.safetensors", "hello")),
         ("fake.safetensors", "not a safetensors file")),
    Case("weights truncated", lambda w: _eval_weights(w, w.edited_adapter("truncated")),
         ("truncated.safetensors",)),
    Case("weights without metadata", lambda w: _eval_weights(w, w.edited_adapter("no_metadata")),
         ("no_metadata.safetensors", "not an adaptsam adapter")),
    Case("weights format version", lambda w: _eval_weights(w, w.edited_adapter("version")),
         ("version.safetensors", "'99'")),
    Case("weights missing tensor", lambda w: _eval_weights(w, w.edited_adapter("missing_tensor")),
         ("missing_tensor.safetensors", "1 missing")),
    Case("weights extra tensor", lambda w: _eval_weights(w, w.edited_adapter("extra_tensor")),
         ("extra_tensor.safetensors", "not_there")),
    Case("weights tensor shape", lambda w: _eval_weights(w, w.edited_adapter("shape")),
         ("shape.safetensors", "other shapes")),
    Case("weights NaN tensor", lambda w: _eval_weights(w, w.edited_adapter("nan")),
         ("nan.safetensors", "non-finite")),
    Case("weights other backbone", lambda w: _eval_weights(w, w.edited_adapter("other_backbone")),
         ("other_backbone.safetensors", "vit_test")),
    Case("weights with --backbone", lambda w: _eval_weights(w, w.adapter(), "--backbone", "vit_test"),
         ("lora.safetensors", "backbone", "vit_test")),
    Case("weights with -R", lambda w: _eval_weights(w, w.adapter(), "-R", "32"),
         ("lora.safetensors", "resolution", "32")),
    Case("weights with --policy", lambda w: _eval_weights(w, w.adapter(), "--policy", "upsample"),
         ("lora.safetensors", "policy", "upsample")),
    Case("weights with --adapter", lambda w: _eval_weights(w, w.adapter(), "--adapter", "decoder"),
         ("lora.safetensors", "adapter", "decoder")),
    Case("weights with --adapter-cfg", lambda w: _eval_weights(w, w.adapter(), "--adapter-cfg", "rank=8"),
         ("--adapter-cfg", "lora.safetensors")),
    Case("eval untrained lora", lambda w: _eval(w, model=(*TINY_MODEL, "--adapter", "lora")),
         ("lora", "--weights")),
    # -- checkpoints ------------------------------------------------------------------------------------------
    Case("checkpoint missing", lambda w: _eval(w, "--checkpoint", str(w.root / "none.pth")),
         ("none.pth", "does not exist")),
    Case("checkpoint text", lambda w: _eval(w, "--checkpoint", str(w.a_file("notes.pth", "no weights"))),
         ("notes.pth", "not a readable pytorch weights file")),
    Case("checkpoint of another backbone", lambda w: _eval(w, "--checkpoint", str(w.checkpoint_of("vit_test"))),
         ("vit_test.pth", "does not fit", "another backbone")),
    Case("checkpoint not a state dict", lambda w: _eval(w, "--checkpoint", str(_tensor_file(w))),
         ("list.pth", "state dict")),
    # -- prompt files (predict) ------------------------------------------------------------------------------
    Case("prompts missing file", lambda w: _predict(w, w.root / "boxes.json"), ("boxes.json", "cannot read")),
    Case("prompts malformed JSON", lambda w: _predict(w, w.prompts("bad", None, raw="{not json")), ("bad.json",)),
    Case("prompts a list", lambda w: _predict(w, w.prompts("list", [[1, 2, 3, 4]])),
         ("list.json", "expected an object keyed by image file name")),
    Case("prompts entry empty", lambda w: _predict(w, w.prompts("emptyentry", {"img.png": {}})),
         ("img.png", "expected an object with 'boxes'"), code=1),
    Case("prompts box reversed", lambda w: _predict(w, w.prompts("rev", {"img.png": {"boxes": [[20, 20, 2, 2]]}})),
         ("img.png", "x0 <= x1"), code=1),
    Case("prompts box three numbers", lambda w: _predict(w, w.prompts("three", {"img.png": {"boxes": [[1, 2, 3]]}})),
         ("img.png", "[x0, y0, x1, y1]"), code=1),
    Case("prompts box text", lambda w: _predict(w, w.prompts("text", {"img.png": {"boxes": [["a", 1, 2, 3]]}})),
         ("img.png",), code=1),
    Case("prompts box NaN", lambda w: _predict(w, w.prompts("nan", None,
                                                            raw='{"img.png": {"boxes": [[NaN, 1, 5, 5]]}}')),
         ("img.png", "x0 <= x1"), code=1),
    Case("prompts box outside", lambda w: _predict(w, w.prompts("outside",
                                                                {"img.png": {"boxes": [[500, 500, 600, 650]]}})),
         ("img.png", "box #0", "500", "wholly outside"), code=1),
    Case("prompts box negative", lambda w: _predict(w, w.prompts("neg",
                                                                 {"img.png": {"boxes": [[-50, -40, -10, -5]]}})),
         ("img.png", "-50", "outside"), code=1),
    Case("prompts no entry for image", lambda w: _predict(w, w.prompts("other",
                                                                       {"else.png": {"boxes": [[1, 1, 5, 5]]}})),
         ("img.png", "no prompts"), code=1),
    Case("prompts points malformed", lambda w: _predict(w, w.prompts("pts", {"img.png": {"points": [[1, 2]]}})),
         ("img.png", "[x, y, label]"), code=1),
    Case("prompts missing for promptable model", lambda w: _predict(w, None), ("--prompts",)),
    Case("predict first arg", lambda w: ["predict", str(w.image()), "--out", str(w.path("p1"))],
         ("adapter .safetensors", "--backbone")),
    Case("predict no inputs", lambda w: ["predict", str(w.adapter()), "--out", str(w.path("p2"))],
         ("no input",)),
    Case("predict batch-size 0", lambda w: _predict(w, w.prompts("ok", {"img.png": {"boxes": [[2, 2, 20, 20]]}}),
                                                    "--batch-size", "0"), ("batch_size", "got 0")),
    Case("predict alpha 2", lambda w: _predict(w, w.prompts("ok", {"img.png": {"boxes": [[2, 2, 20, 20]]}}),
                                               "--alpha", "2"), ("overlay_alpha", "2")),
    Case("predict nms-iou 0", lambda w: _predict(w, w.prompts("ok", {"img.png": {"boxes": [[2, 2, 20, 20]]}}),
                                                 "--nms-iou", "0"), ("nms_iou", "0")),
    Case("predict min-area -1", lambda w: _predict(w, w.prompts("ok", {"img.png": {"boxes": [[2, 2, 20, 20]]}}),
                                                   "--min-area", "-1"), ("min_component_area", "-1")),
    Case("predict weights + backbone", lambda w: _predict(w, w.prompts("ok", {"img.png": {"boxes": [[2, 2, 20, 20]]}}),
                                                          "--backbone", "vit_test"), ("lora.safetensors", "vit_test")),
    Case("predict -R 0 zero-shot", lambda w: ["predict", "--backbone", "vit_test", "--resolution", "0",
                                              str(w.image()), "--out", str(w.path("p3"))], ("resolution", "0")),
    # -- export -----------------------------------------------------------------------------------------------
    Case("export opset 5", lambda w: ["export", str(w.adapter()), "--onnx", str(w.path("m.onnx")), "--opset", "5"],
         ("opset", "14 and 20", "5")),
    Case("export batch 0", lambda w: ["export", str(w.adapter()), "--onnx", str(w.path("m.onnx")),
                                      "--batch-size", "0"], ("batch_size", "0")),
    Case("export tolerance 0", lambda w: ["export", str(w.adapter()), "--onnx", str(w.path("m.onnx")),
                                          "--tolerance", "0"], ("tolerance", "0")),
    Case("export onnx is a folder", lambda w: ["export", str(w.adapter()), "--onnx", str(w.bench_dir("onnx_dir"))],
         ("--onnx", "onnx_dir", "is a folder")),
    Case("export onnx under a file", lambda w: ["export", str(w.adapter()), "--onnx", str(w.a_file() / "m.onnx")],
         ("--onnx", "plain.txt", "is a file")),
    # -- LabelMe folders ------------------------------------------------------------------------------------------
    Case("labelme src missing", lambda w: _labelme(w.root / "labelme" / "absent"), ("absent", "does not exist")),
    Case("labelme no json", lambda w: _labelme(w.bench_dir("not_labelme")), ("not_labelme", "no *.json")),
    Case("labelme malformed json", lambda w: _labelme(w.labelme("malformed", raw="{oops")),
         ("a.json", "cannot read labelme file")),
    Case("labelme no shapes", lambda w: _labelme(w.labelme("noshapes", raw='{"imagePath": "a.png"}')),
         ("a.json", "no 'shapes' list")),
    Case("labelme label newline", lambda w: _labelme(w.labelme("newline", [_poly("cat\ndog")])),
         ("a.json", "shape #0", "line break")),
    Case("labelme label tab", lambda w: _labelme(w.labelme("tab", [_poly("cat\tdog")])), ("a.json", "single-line")),
    Case("labelme circle", lambda w: _labelme(w.labelme("circle", [_poly(kind="circle")])),
         ("a.json", "'circle'", "polygon, rectangle")),
    Case("labelme two points", lambda w: _labelme(w.labelme("twopts", [_poly(points=((1, 1), (5, 5)))])),
         ("a.json", "at least 3")),
    Case("labelme rectangle three points", lambda w: _labelme(w.labelme("rect3", [
        _poly(points=((1, 1), (5, 5), (6, 6)), kind="rectangle")])), ("a.json", "exactly 2")),
    Case("labelme points text", lambda w: _labelme(w.labelme("ptext", [_poly(points=[["a", "b"], [1, 2], [3, 4]])])),
         ("a.json", "not numbers")),
    Case("labelme points NaN", lambda w: _labelme(w.labelme("pnan", raw=json.dumps(
        {"imagePath": "a.png", "shapes": [_poly()]}).replace("[2, 2]", "[NaN, 2]"))), ("a.json", "malformed points")),
    Case("labelme no label", lambda w: _labelme(w.labelme("nolabel", [_poly("")])), ("a.json", "no label")),
    Case("labelme image missing", lambda w: _labelme(w.labelme("noimage", image=False)),
         ("a.json", "a.png", "does not exist")),
    Case("labelme imageData bad", lambda w: _labelme(w.labelme("b64", image=False, data={"imageData": "%%%"})),
         ("a.json", "not valid base64")),
    Case("labelme size mismatch", lambda w: _labelme(w.labelme("size", data={"imageWidth": 99})),
         ("a.json", "99", "20×16")),
    Case("labelme shape not object", lambda w: _labelme(w.labelme("shapeobj", ["oops"])),
         ("a.json", "shape #0", "not an object")),
    Case("labelme dst not empty", lambda w: _labelme(w.labelme("dstfull"), dst=str(w.finished_run())),
         ("finished_run", "not empty")),
    Case("labelme dst is a file", lambda w: _labelme(w.labelme("dstfile"), dst=str(w.a_file())),
         ("plain.txt", "is a file")),
    Case("labelme --labels background", lambda w: _labelme(w.labelme("lbg"), "--labels", "background,cat"),
         ("background", "index 0")),
    Case("labelme --labels duplicate", lambda w: _labelme(w.labelme("ldup"), "--labels", "cat,cat"),
         ("distinct", "cat")),
    Case("labelme label not listed", lambda w: _labelme(w.labelme("lmiss"), "--labels", "dog"),
         ("a.json", "'cat'", "not in labels")),
    Case("labelme test fraction", lambda w: _labelme(w.labelme("frac"), "--test-fraction", "1.5"),
         ("test_fraction", "1.5")),
    # -- bench flags, YAML and stores ---------------------------------------------------------------------------
    Case("bench seeds x", lambda w: _bench(w, "--seeds", "x"), ("seeds", "'x'", "integers")),
    Case("bench resolutions 32,abc", lambda w: _bench(w, "--resolutions", "32,abc"), ("resolutions", "'abc'")),
    Case("bench resolutions 0", lambda w: _bench(w, "--resolutions", "0"), ("resolutions", ">= 32", "0")),
    Case("bench steps -5", lambda w: _bench(w, "--steps", "-5"), ("steps", "-5")),
    Case("bench batch-size 0", lambda w: _bench(w, "--batch-size", "0"), ("batch_size", "got 0")),
    Case("bench shots -1", lambda w: _bench(w, "--shots", "-1"), ("shots", "-1")),
    Case("bench shots text", lambda w: _bench(w, "--shots", "few"), ("shots", "'few'")),
    Case("bench lr 0", lambda w: _bench(w, "--lr", "0"), ("lr", "got 0")),
    Case("bench throughput-batch 0", lambda w: _bench(w, "--throughput-batch", "0"), ("throughput_batch", "0")),
    Case("bench eval-limit 0", lambda w: _bench(w, "--eval-limit", "0"), ("eval_limit", "0")),
    Case("bench jobs 0", lambda w: _bench(w, "--jobs", "0"), ("jobs", ">= 1", "got 0")),
    Case("bench unknown adapter", lambda w: _bench(w, "--adapters", "lorra"), ("lorra", "did you mean")),
    Case("bench unknown backbone", lambda w: _bench(w, "--backbones", "vit_bb"), ("vit_bb",)),
    Case("bench unknown policy", lambda w: _bench(w, "--policies", "nativ"), ("nativ",)),
    Case("bench data path missing", lambda w: _bench(w, "--data", str(w.root / "no_such_data"), dry_run=False),
         ("no_such_data", "does not exist")),
    Case("bench data without test split", lambda w: _bench(w, "--data", str(w.broken_data("no_test")),
                                                           dry_run=False), ("unknown split 'test'",)),
    Case("bench unknown preset", lambda w: _bench(w, "--preset", "fast"), ("fast", "quick")),
    Case("bench yaml unknown key", lambda w: _bench(w, "--config", str(w.yaml("b1", "resolution: [64]\n"))),
         ("resolution", "unknown bench keys")),
    Case("bench yaml adapter rank 0", lambda w: _bench(w, "--config", str(w.yaml(
        "b2", "adapters:\n  - {name: lora, cfg: {rank: 0}}\n"))), ("rank", "got 0")),
    Case("bench yaml adapter entry without name", lambda w: _bench(w, "--config", str(w.yaml(
        "b3", "adapters:\n  - {cfg: {rank: 2}}\n"))), ("adapter entries", "'name'")),
    Case("bench yaml adapter cfg list", lambda w: _bench(w, "--config", str(w.yaml(
        "b4", "adapters:\n  - {name: lora, cfg: [1]}\n"))), ("cfg", "lora", "[1]")),
    Case("bench yaml malformed", lambda w: _bench(w, "--config", str(w.yaml("b5", "adapters: [\n"))),
         ("b5.yaml", "cannot read")),
    Case("bench yaml a list", lambda w: _bench(w, "--config", str(w.yaml("b6", "- 1\n"))), ("b6.yaml", "mapping")),
    Case("bench yaml exclude scalar", lambda w: _bench(w, "--config", str(w.yaml("b7", "exclude: 5\n"))),
         ("exclude", "5")),
    Case("bench yaml exclude unknown field", lambda w: _bench(w, "--config", str(w.yaml(
        "b8", "exclude:\n  - {adaptr: lora}\n"))), ("adaptr", "unknown fields")),
    Case("bench yaml steps list", lambda w: _bench(w, "--config", str(w.yaml("b9", "steps: [1, 2]\n"))),
         ("steps", "one value")),
    Case("bench yaml config missing", lambda w: _bench(w, "--config", str(w.root / "nobench.yaml")),
         ("nobench.yaml", "cannot read")),
    Case("bench store not a database", lambda w: _bench(w, out=str(w.bench_dir("garbage_store", b"not sqlite" * 20)),
                                                        dry_run=False),
         ("results.sqlite", "not")),
    Case("report store not a database", lambda w: ["report", str(w.bench_dir("garbage_report", b"nope" * 50))],
         ("results.sqlite",)),
    Case("report folder without store", lambda w: ["report", str(w.bench_dir("no_store"))],
         ("no_store", "results.sqlite", "run adaptsam bench")),
]


def _tensor_file(w: World) -> Path:
    import torch

    path = w.root / "list.pth"
    if not path.exists():
        torch.save([torch.zeros(2)], path)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return World(tmp_path_factory.mktemp("bad_inputs"))


@pytest.fixture(autouse=True)
def _quiet(monkeypatch, tmp_path):
    monkeypatch.setenv("ADAPTSAM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_MODE", "disabled")


def test_the_battery_is_big_enough():
    assert len(CASES) >= 100, len(CASES)
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input(case: Case, world: World, capsys):
    code, _, err = run_cli(case.argv(world), capsys)
    assert "Traceback" not in err
    assert code == case.code, f"exit {code}, stderr: {err}"
    assert "error" in err.lower() or "failed" in err.lower(), err
    lowered = err.lower()
    missing = [s for s in case.expect if s.lower() not in lowered]
    assert not missing, f"stderr lacks {missing}: {err}"
