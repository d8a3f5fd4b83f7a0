"""``auflow train`` / ``auflow eval`` for the expression models (issue 7): arpgnet on generated motion
clips, svml_rgcn on generated multi-label faces, the papers' protocol configs, and a missing dataset
directory named in one line. Tiny runs in process (typer's runner): a few seconds each on one core."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from auflow.engine.cli.main import app
from auflow.models import load_checkpoint
from auflow.models.data.expr import affwild2_metric
from auflow.models.expr.synthetic import MOTION_LABELS, MULTILABEL_LABELS
from auflow.models.expr_metrics import MULTILABEL_METRICS
from auflow.models.train import load_train_config
from auflow.models.train.recipes import build_recipe

CONFIGS = Path(__file__).parents[3] / "configs" / "train"

TINY_ARPGNET = {
    "model": {"name": "arpgnet", "options": {"backbone": "small_conv", "input_size": 32, "num_frames": 4, "dim": 16,
                                             "heads": 1, "patches": 2, "separate_relation_trunk": False, "dropout": 0.0}},
    "data": {"dataset": "synthetic_motion", "size": 24, "test_size": 12, "seed": 0},
    "train": {"batch_size": 8, "seed": 0, "threads": 1, "eval_every": 0,
              "recipe": {"pretrain": {"images": 32, "epochs": 1}},
              "stages": [{"name": "main", "epochs": 1,
                          "optimizer": {"name": "adam", "lr": 1e-3, "lr_groups": {"backbone.": 1e-4}, "weight_decay": 0.0},
                          "schedule": {"name": "constant"}}]},
}
TINY_SVML = {
    "model": {"name": "svml_rgcn", "options": {"backbone": "small_conv", "input_size": 32, "mfb_o": 32, "gcn_hidden": 16}},
    "data": {"dataset": "synthetic_multilabel", "size": 32, "test_size": 24, "seed": 0},
    "train": {"batch_size": 8, "seed": 0, "threads": 1, "eval_every": 0,
              "recipe": {"class_feature_images": 4},
              "stages": [{"name": "main", "epochs": 1, "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 2e-4},
                          "schedule": {"name": "step", "step_epochs": 20, "gamma": 0.1}}]},
}


def _seeded(cfg: dict, seed: int) -> dict:
    """A copy of a tiny config with AUFLOW_TEST_SEED's seed for training and the generated data."""
    out = json.loads(json.dumps(cfg))
    out["train"]["seed"] = out["data"]["seed"] = seed
    return out


def _cli(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "NO_COLOR": "1"})


def _train_then_eval(cfg: dict, tmp_path: Path) -> tuple[dict, dict, str, str]:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    r = _cli("train", str(path), "--out", str(run))
    assert r.exit_code == 0, r.output
    card, _ = load_checkpoint(run / "model.pt")
    js = tmp_path / "ev.json"
    e = _cli("eval", str(run / "model.pt"), "synthetic", "--json", str(js))
    assert e.exit_code == 0, e.output
    return card.to_dict(), json.loads(js.read_text()), r.output, e.output


def test_arpgnet_trains_through_the_cli_and_eval_repeats_its_metrics(tmp_path, train_seed):
    card, ev, train_out, eval_out = _train_then_eval(_seeded(TINY_ARPGNET, train_seed), tmp_path)
    t = card["training"]
    assert card["name"] == "arpgnet" and card["kind"] == "trained" and tuple(card["labels"]) == MOTION_LABELS
    assert t["dataset"] == "synthetic_motion" and "motion_sequences" in t["data"] and "synthetic data" in t["note"]
    assert t["pretrained_trunk"]["images"] == 32 and t["complete"]
    m = t["metrics"]
    assert m["kind"] == "single_label" and m["samples"] == 12 and m["challenge"] is None
    # eval on the checkpoint's own generated test stream gives the trainer's figures
    assert ev["dataset"] == "synthetic_motion" and ev["samples"] == 12
    assert ev["accuracy"] == pytest.approx(m["accuracy"], abs=1e-12) and ev["f1"] == pytest.approx(m["f1"], abs=1e-12)
    assert f"accuracy {100 * m['accuracy']:.1f}" in train_out
    assert "accuracy" in eval_out and "F1 mouth_opening" in eval_out and "F1 mouth_closing" in eval_out
    # the paper's two rates: 1e-4 for the trunk, 1e-3 for the rest
    state = torch.load(tmp_path / "run" / "train_state.pt", weights_only=True)
    assert sorted(g["initial_lr"] for g in state["optimizer"]["param_groups"]) == [1e-4, 1e-3]


def test_svml_rgcn_trains_through_the_cli_and_eval_repeats_the_nine_metrics(tmp_path, train_seed):
    card, ev, train_out, eval_out = _train_then_eval(_seeded(TINY_SVML, train_seed), tmp_path)
    t = card["training"]
    assert card["name"] == "svml_rgcn" and card["kind"] == "trained" and tuple(card["labels"]) == MULTILABEL_LABELS
    assert t["dataset"] == "synthetic_multilabel" and "multilabel_faces" in t["data"]
    assert "24 generated single-label faces" in t["class_features"]  # 4 per label, Eq. (5)
    assert card["config"]["cooccurrence"] is not None  # the label graph from the training labels, Eq. (3)
    m = t["metrics"]
    assert m["kind"] == "multi_label" and list(m["values"]) == list(MULTILABEL_METRICS)
    for name in MULTILABEL_METRICS:
        assert ev[name] == pytest.approx(m[name], abs=1e-12, nan_ok=True), name
    assert f"macro-F1 {m['macro_f1']:.4f}" in train_out
    for header in ("HL", "Cov", "OE", "RL", "AP", "micro-F1", "macro-F1", "micro-AUC", "macro-AUC", "F1 happiness"):
        assert header in eval_out, header


def test_aff_wild2_is_scored_by_the_challenge_metric():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 200)
    p = rng.random((200, 7))
    p[np.arange(100), y[:100]] += 1.0  # half of them right
    names = [f"c{i}" for i in range(7)]
    recipe = build_recipe("arpgnet")
    m = recipe.score(y, p, names, dataset="affwild2")
    assert m.challenge == pytest.approx(affwild2_metric(y, p.argmax(1), 7), abs=1e-12)
    assert m.challenge == pytest.approx(0.67 * m.macro_f1 + 0.33 * m.accuracy, abs=1e-12)
    assert recipe.score(y, p, names, dataset="afew").challenge is None
    assert build_recipe("arpgnet", {"loss": "focal"}).loss is not None


PAPER_CONFIGS = ["arpgnet_rml.yaml", "arpgnet_afew.yaml", "arpgnet_affwild2.yaml", "svml_rgcn_rafml.yaml"]


def test_paper_configs_hold_the_papers_settings():
    def load(name):
        return yaml.safe_load((CONFIGS / name).read_text())

    for name in PAPER_CONFIGS[:3]:  # paper 003 Sec. 4.2
        c = load(name)
        o = c["model"]["options"]
        opt = c["train"]["stages"][0]["optimizer"]
        assert o["input_size"] == 96 and o["dropout"] == 0.25 and o["dim"] == 512, name
        assert opt["name"] == "adam" and opt["lr"] == 1e-3 and opt["betas"] == [0.9, 0.999] and opt["eps"] == 1e-8
        assert opt["lr_groups"] == {"backbone.": 1e-4, "relation_backbone.": 1e-4}
    assert load("arpgnet_rml.yaml")["model"]["options"]["num_frames"] == 16
    assert load("arpgnet_afew.yaml")["model"]["options"]["num_frames"] == 16
    aff = load("arpgnet_affwild2.yaml")
    assert aff["model"]["options"]["num_frames"] == 8 and aff["train"]["recipe"]["loss"] == "focal"
    assert load("arpgnet_rml.yaml")["train"]["recipe"]["loss"] == "cross_entropy"
    svml = load("svml_rgcn_rafml.yaml")  # paper 004 Sec. 4.2
    st = svml["train"]["stages"][0]
    assert svml["train"]["batch_size"] == 32 and st["epochs"] == 80
    assert st["schedule"] == {"name": "step", "step_epochs": 20, "gamma": 0.1}
    assert st["optimizer"]["name"] == "adam" and st["optimizer"]["weight_decay"] == 2e-4
    assert st["optimizer"]["lr"] == 2e-4 and st["optimizer"]["lr_groups"] == {"backbone.": 2e-6}
    assert svml["model"]["options"]["input_size"] == 224 and svml["data"]["augment"] is True


@pytest.mark.parametrize("name, layout", [("arpgnet_rml.yaml", "Expected RML layout"),
                                          ("arpgnet_afew.yaml", "Expected AFEW layout"),
                                          ("arpgnet_affwild2.yaml", "Expected Aff-Wild2 layout"),
                                          ("svml_rgcn_rafml.yaml", "Expected RAF-ML layout")])
def test_a_missing_dataset_directory_is_one_line_naming_the_layout(name, layout, tmp_path):
    cfg = load_train_config(CONFIGS / name, [f"data.root={tmp_path / 'missing'}"])  # the config validates
    assert cfg.data.root.endswith("missing")
    # a small trunk keeps the model cheap to build: the error comes from the data
    r = _cli("train", str(CONFIGS / name), "--out", str(tmp_path / "run"), "--set", f"data.root={tmp_path / 'missing'}",
             "--set", "train.device=cpu", "--set", "model.options.backbone=small_conv")
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and layout in lines[0], r.output


class Interrupt(Exception):
    pass


def test_expression_training_resumes_to_the_uninterrupted_weights_and_metrics(tmp_path, train_seed):
    from auflow.models.train import TrainCallbacks, train
    from auflow.models.train.config import validate_train_config

    raw = _seeded(TINY_SVML, train_seed)
    raw["train"].update(eval_every=1)
    raw["train"]["stages"][0]["epochs"] = 2
    cfg = validate_train_config(raw)
    full = train(cfg, out_dir=tmp_path / "full")

    def stop(stage, epoch, batch, batches, loss):
        if epoch == 2 and batch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, out_dir=tmp_path / "cut", callbacks=TrainCallbacks(on_batch=stop))
    resumed = train(cfg, out_dir=tmp_path / "cut")
    assert resumed.resumed_from == ("main", 1)
    a, b = load_checkpoint(full.checkpoint)[1], load_checkpoint(resumed.checkpoint)[1]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # epoch 1's metrics came back from train_state.pt as multi-label metrics
    assert resumed.history[0].metrics.values == pytest.approx(full.history[0].metrics.values, abs=0, nan_ok=True)
    assert resumed.metrics.values == pytest.approx(full.metrics.values, abs=0, nan_ok=True)


# -- the real-data paths, on tiny fake trees in the documented layouts ------------------------------------
def _img(path: Path, rng: np.random.Generator) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))


def _small_arpgnet(frames: int, **extra) -> dict:
    return {"backbone": "small_conv", "input_size": 32, "num_frames": frames, "dim": 16, "heads": 1, "patches": 2,
            "separate_relation_trunk": False, **extra}


def _one_epoch(model: dict, data: dict, out: Path, **train_kw):
    from auflow.models.train import train
    from auflow.models.train.config import validate_train_config

    cfg = validate_train_config({"model": model, "data": data, "train": {
        "batch_size": 4, "threads": 1, "eval_every": 0, **train_kw,
        "stages": [{"name": "main", "epochs": 1, "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0}}]}})
    return train(cfg, out_dir=out)


def test_afew_and_aff_wild2_train_and_evaluate_from_their_directories(tmp_path):
    from auflow.engine.errors import ConfigError
    from auflow.models.train.evaluate import evaluate_checkpoint

    rng = np.random.default_rng(0)
    afew = tmp_path / "AFEW"
    for split, n in (("Train", 2), ("Val", 1)):
        for emo in ("Angry", "Happy", "Neutral"):
            for c in range(n):
                for k in range(3):
                    _img(afew / split / emo / f"{emo}{c}" / f"{k:03d}.png", rng)
    res = _one_epoch({"name": "arpgnet", "options": _small_arpgnet(16)}, {"dataset": "afew", "root": str(afew)}, tmp_path / "a")
    card = res.card
    assert card.labels[0] == "anger" and len(card.labels) == 7 and "EmotiW" in card.training["protocol"]
    assert card.training["metrics"]["split"] == "val" and res.metrics.samples == 3
    ev = evaluate_checkpoint(res.checkpoint, str(afew))  # recognised by its Train/ and Val/
    assert ev.dataset == "afew" and ev.split == "val" and ev.metrics.accuracy == pytest.approx(res.metrics.accuracy, abs=1e-12)

    aff = tmp_path / "AffWild2"
    header = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"  # an ABAW 3+ release: 8 classes
    for sub, vid, labels in (("Train_Set", "v1", [0, 1, 2, 3, 4, 5, 6, 7, -1, 1]), ("Validation_Set", "v2", [7, 4, -1, 0])):
        ann = aff / "annotations" / "EXPR_Set" / sub / f"{vid}.txt"
        ann.parent.mkdir(parents=True, exist_ok=True)
        ann.write_text(header + "\n" + "\n".join(map(str, labels)) + "\n")
        for k in range(len(labels)):
            _img(aff / "cropped_aligned" / vid / f"{k + 1:05d}.jpg", rng)
    seven = ["neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise"]
    with pytest.raises(ConfigError, match="labelled.*Other.*model.options.labels"):
        _one_epoch({"name": "arpgnet", "options": _small_arpgnet(8, labels=seven)}, {"dataset": "affwild2", "root": str(aff)},
                   tmp_path / "b")
    res = _one_epoch({"name": "arpgnet", "options": _small_arpgnet(8, labels=[*seven, "other"])},
                     {"dataset": "affwild2", "root": str(aff)}, tmp_path / "c", recipe={"loss": "focal"})
    assert "focal" in res.history[0].loss and res.metrics.samples == 3
    assert res.metrics.challenge == pytest.approx(0.67 * res.metrics.macro_f1 + 0.33 * res.metrics.accuracy, abs=1e-12)
    assert evaluate_checkpoint(res.checkpoint, f"affwild2:{aff}").metrics.challenge == pytest.approx(res.metrics.challenge)


def test_rafml_trains_with_class_features_from_single_label_images_and_evaluates(tmp_path):
    from auflow.models.data.expr import RAFML_LABELS
    from auflow.models.train.evaluate import evaluate_checkpoint

    rng = np.random.default_rng(1)
    root = tmp_path / "RAF-ML"
    dist, part = [], []
    rows = [np.eye(6)[c] for c in range(6)] * 2 + [np.eye(6)[0] + np.eye(6)[3], np.eye(6)[1] + np.eye(6)[2]] * 2
    for i, row in enumerate(rows):
        name = f"img_{i:04d}.jpg"
        _img(root / "Image" / "aligned" / f"img_{i:04d}_aligned.jpg", rng)
        dist.append(name + " " + " ".join(f"{v:.2f}" for v in row))
        part.append(f"{name} {int(i >= 14)}")  # the last two compound images are the test set
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "distribution.txt").write_text("\n".join(dist) + "\n")
    (root / "EmoLabel" / "partition_label.txt").write_text("\n".join(part) + "\n")
    res = _one_epoch({"name": "svml_rgcn", "options": {"backbone": "small_conv", "input_size": 32, "mfb_o": 32, "gcn_hidden": 16}},
                     {"dataset": "rafml", "root": str(root)}, tmp_path / "s", recipe={"class_feature_images": 2})
    assert tuple(res.card.labels) == tuple(n.lower() for n in RAFML_LABELS)
    assert res.card.training["class_features"] == "12 single-label training images"  # 2 per label
    assert res.metrics.samples == 2
    ev = evaluate_checkpoint(res.checkpoint, str(root))  # recognised by its EmoLabel/
    assert ev.dataset == "rafml"
    assert ev.metrics.values == pytest.approx(res.metrics.values, abs=1e-12, nan_ok=True)
