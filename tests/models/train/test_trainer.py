"""The trainer on tiny generated data: outputs and card, config errors, determinism, exact resume."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from auflow.engine.errors import ConfigError
from auflow.models import create_model, load_checkpoint
from auflow.models.data.synthetic_au import SYNTHETIC_AUS
from auflow.models.train import TrainCallbacks, load_train_config, train
from auflow.models.train.config import validate_train_config
from auflow.models.train.evaluate import evaluate_checkpoint
from auflow.models.train.recipes import RECIPES, build_recipe

# 32² inputs, a quarter-width MobileNetV2 and C = 16: a few seconds per run on one core
TINY = {
    "model": {"name": "me_graphau", "options": {"backbone": "mobilenet_v2", "input_size": 32, "dim": 16,
                                                "backbone_kw": {"width_mult": 0.25}}},
    "data": {"dataset": "synthetic", "size": 40, "test_size": 24, "seed": 3},
    "train": {"batch_size": 8, "seed": 0, "threads": 1,
              "stages": [{"name": "anfl", "epochs": 1, "optimizer": {"name": "adamw", "lr": 1e-3}},
                         {"name": "mefl", "epochs": 2, "optimizer": {"name": "adamw", "lr": 1e-3}}]},
}


def tiny(**changes) -> dict:
    cfg = json.loads(json.dumps(TINY))
    for dotted, value in changes.items():
        node = cfg
        *parents, last = dotted.split("__")
        for p in parents:
            node = node[p]
        node[last] = value
    return cfg


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)[1]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_run_writes_checkpoint_metrics_and_an_honest_card(tmp_path):
    cfg = validate_train_config(tiny())
    res = train(cfg, out_dir=tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"model.pt", "train_state.pt", "metrics.json", "config.yaml"}
    card, _ = load_checkpoint(res.checkpoint)
    assert card.kind == "trained" and card.name == "me_graphau"
    assert card.labels == SYNTHETIC_AUS
    assert "synthetic" in card.training["note"] and "not real faces" in card.training["note"]
    assert card.training["dataset"] == "synthetic" and card.training["complete"] is True
    assert [s["epochs_done"] for s in card.training["stages"]] == [1, 2]
    assert card.training["metrics"]["mean_f1"] == pytest.approx(res.metrics.mean_f1)
    assert set(card.training["metrics"]["per_au"]) == set(SYNTHETIC_AUS)
    history = json.loads((tmp_path / "metrics.json").read_text())["history"]
    assert [(h["stage"], h["epoch"]) for h in history] == [("anfl", 1), ("mefl", 1), ("mefl", 2)]
    assert {"loss", "wa", "edge"} <= set(history[-1]["loss"])  # stage 2 has L_E
    assert "edge" not in history[0]["loss"]  # stage 1 has none
    assert history[-1]["lr"] == pytest.approx(0.0, abs=1e-9)  # cosine decays to 0 at the stage's end
    # the checkpoint rebuilds through the registry, and evaluates to the card's numbers
    model = create_model("me_graphau", checkpoint=res.checkpoint)
    assert model.card.kind == "trained"
    ev = evaluate_checkpoint(res.checkpoint, "synthetic")
    assert ev.metrics.f1 == res.metrics.f1 and ev.metrics.samples == 24


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    a = train(validate_train_config(tiny(train__stages=TINY["train"]["stages"][:1] + [dict(TINY["train"]["stages"][1], epochs=0)])),
              out_dir=tmp_path / "a")
    b = train(validate_train_config(tiny(train__stages=TINY["train"]["stages"][:1] + [dict(TINY["train"]["stages"][1], epochs=0)])),
              out_dir=tmp_path / "b")
    assert_same_weights(weights(a.checkpoint), weights(b.checkpoint))
    c = train(validate_train_config(tiny(train__seed=1, train__stages=TINY["train"]["stages"][:1] + [dict(TINY["train"]["stages"][1], epochs=0)])),
              out_dir=tmp_path / "c")
    wa, wc = weights(a.checkpoint), weights(c.checkpoint)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


class Interrupt(Exception):
    pass


def test_resume_after_an_interrupt_ends_with_the_uninterrupted_weights(tmp_path):
    cfg = validate_train_config(tiny())
    full = train(cfg, out_dir=tmp_path / "full")

    def stop(stage, epoch, batch, batches, loss):
        if stage == "mefl" and epoch == 2 and batch == 3:  # mid-epoch, mid-stage: optimiser state matters
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, out_dir=tmp_path / "cut", callbacks=TrainCallbacks(on_batch=stop))
    state = torch.load(tmp_path / "cut" / "train_state.pt", weights_only=True)
    assert (state["stage"], state["epoch"]) == (1, 1)  # the last finished epoch: mefl 1
    seen = []
    resumed = train(cfg, out_dir=tmp_path / "cut", callbacks=TrainCallbacks(on_resume=lambda s, d: seen.append((s, d))))
    assert seen == [("mefl", 1)] and resumed.resumed_from == ("mefl", 1)
    assert_same_weights(weights(full.checkpoint), weights(resumed.checkpoint))
    assert [(h.stage, h.epoch) for h in resumed.history] == [("anfl", 1), ("mefl", 1), ("mefl", 2)]
    assert resumed.metrics.f1 == full.metrics.f1


def test_resume_refuses_another_config_and_no_resume_starts_over(tmp_path):
    train(validate_train_config(tiny()), out_dir=tmp_path)
    other = validate_train_config(tiny(train__batch_size=4))
    with pytest.raises(ConfigError, match="different config.*--no-resume"):
        train(other, out_dir=tmp_path)
    res = train(other, out_dir=tmp_path, resume=False)
    assert res.resumed_from is None
    assert load_checkpoint(res.checkpoint)[0].training["batch_size"] == 4


def test_config_errors_name_the_key_line_and_choices(tmp_path):
    bad = tmp_path / "bad.yaml"
    cfg = tiny()
    cfg["train"]["batchsize"] = 8
    bad.write_text(yaml.safe_dump(cfg, sort_keys=False))
    with pytest.raises(ConfigError, match=r"bad\.yaml, line \d+: unknown key 'train\.batchsize' \(valid keys: batch_size"):
        load_train_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(tiny()))
    assert load_train_config(good, ["train.batch_size=4"]).train.batch_size == 4
    with pytest.raises(ConfigError, match="data.root is required for bp4d"):
        load_train_config(good, ["data.dataset=bp4d"])
    with pytest.raises(ConfigError, match=r"trains in stages \['anfl', 'mefl'\]"):
        train(validate_train_config(tiny(train__stages=[TINY["train"]["stages"][0]])), out_dir=tmp_path / "o")
    with pytest.raises(ConfigError, match="valid keys: class_weights, lam"):
        build_recipe("me_graphau", {"lambda": 0.1})


def test_every_registered_au_model_of_the_papers_has_a_recipe():
    for name in ("me_graphau", "topo_au", "au_gcn", "baseline_au"):
        assert name in RECIPES
    with pytest.raises(ConfigError, match="no training recipe"):
        build_recipe("fer")


def test_cli_train_then_eval(tmp_path):
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny(train__stages=[dict(TINY["train"]["stages"][0]),
                                                           dict(TINY["train"]["stages"][1], epochs=1)])))
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    cli = [sys.executable, "-m", "auflow.engine.cli.main"]
    p = subprocess.run([*cli, "train", str(cfg_path), "--out", str(tmp_path / "run"), "--set", "train.eval_every=0"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    assert "wrote" in p.stdout and "synthetic" in p.stdout
    assert p.stdout.count("test split after") == 1  # eval_every=0: only after the last epoch
    js = tmp_path / "ev.json"
    p = subprocess.run([*cli, "eval", str(tmp_path / "run" / "model.pt"), "synthetic", "--json", str(js)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    report = json.loads(js.read_text())
    assert report["dataset"] == "synthetic" and set(report["per_au"]) == set(SYNTHETIC_AUS)
    assert "AU06" in p.stdout and "F1" in p.stdout
    p = subprocess.run([*cli, "eval", str(tmp_path / "run" / "model.pt"), str(tmp_path)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 2 and "neither BP4D's AUCoding" in p.stderr and "Traceback" not in p.stderr


CONFIGS = sorted((Path(__file__).parents[3] / "configs" / "train").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_training_configs_are_valid(path, tmp_path):
    from auflow.models.train.trainer import build_model

    raw = yaml.safe_load(path.read_text())
    overrides = [f"data.root={tmp_path}"] if not raw["data"]["dataset"].startswith("synthetic") else []
    if raw["model"].get("init_from"):  # another config's run, trained first (the slow synthetic tests do)
        overrides.append("model.init_from=null")
    cfg = load_train_config(path, overrides)
    recipe = build_recipe(cfg.model.name, cfg.train.recipe)
    assert tuple(s.name for s in cfg.train.stages) == recipe.stages
    model = build_model(cfg)  # the options fit the factory and the labels fit the dataset
    assert model.card.input_size == cfg.model.options["input_size"]


def test_paper_configs_hold_the_papers_settings():
    def load(name):
        return yaml.safe_load((CONFIGS[0].parent / name).read_text())

    me = load("me_graphau_bp4d.yaml")
    assert [(s["name"], s["epochs"], s["optimizer"]["lr"]) for s in me["train"]["stages"]] == [("anfl", 20, 1e-4), ("mefl", 20, 1e-6)]
    assert me["train"]["batch_size"] == 64 and me["train"]["recipe"]["lam"] == 0.05 and me["model"]["options"]["k"] == 3
    assert load("me_graphau_disfa.yaml")["model"]["options"]["k"] == 4
    topo = load("topo_au_disfa.yaml")
    assert topo["train"]["batch_size"] == 16 and topo["train"]["stages"][0]["epochs"] == 40 and topo["model"]["options"]["k"] == 3
    gcn = load("au_gcn_bp4d.yaml")
    assert [s["epochs"] for s in gcn["train"]["stages"]] == [12, 40] and gcn["train"]["batch_size"] == 256
    assert all(s["optimizer"]["name"] == "sgd" and s["schedule"] == {"name": "step", "step_epochs": 10, "gamma": 0.1}
               for s in gcn["train"]["stages"])


@pytest.mark.parametrize("name, options, stages", [
    ("topo_au", {"backbone": "mobilenet_v2", "input_size": 32, "dim": 16, "backbone_kw": {"width_mult": 0.25}}, ["main"]),
    ("au_gcn", {"input_size": 32, "latent_dim": 16, "gcn_dims": [8, 4]}, ["autoencoders", "all"]),
    ("baseline_au", {"backbone": "mobilenet_v2", "input_size": 32, "backbone_kw": {"width_mult": 0.25}}, ["main"]),
])
def test_every_recipe_trains_its_model_end_to_end(name, options, stages, tmp_path):
    cfg = tiny(model={"name": name, "options": options},
               train__stages=[{"name": s, "epochs": 1, "optimizer": {"name": "adamw", "lr": 1e-3}} for s in stages])
    res = train(validate_train_config(cfg), out_dir=tmp_path)
    assert [h.stage for h in res.history] == stages
    assert all(math.isfinite(v) for h in res.history for v in h.loss.values())  # finite, logged terms
    model = create_model(name, checkpoint=res.checkpoint)
    assert model.card.kind == "trained" and model.card.labels == SYNTHETIC_AUS
    if name == "au_gcn":  # its AU graph came from the training labels and travels in the checkpoint
        assert model.card.training["graph"]["source"] == "training labels"
        assert not torch.equal(model.prior, torch.zeros_like(model.prior))
        assert {"roi", "recon"} <= set(res.history[0].loss) and {"softmax", "dice"} <= set(res.history[1].loss)


def test_init_from_another_checkpoint_copies_the_backbone_and_says_so(tmp_path):
    base_opts = {"backbone": "mobilenet_v2", "input_size": 32, "backbone_kw": {"width_mult": 0.25}}
    base = train(validate_train_config(tiny(model={"name": "baseline_au", "options": base_opts},
                                            train__stages=[{"name": "main", "epochs": 1, "optimizer": {"name": "adamw", "lr": 1e-3}}])),
                 out_dir=tmp_path / "base")
    no_training = [dict(s, epochs=0) for s in TINY["train"]["stages"]]
    cfg = tiny(train__stages=no_training)
    cfg["model"]["init_from"] = str(base.checkpoint)
    res = train(validate_train_config(cfg), out_dir=tmp_path / "graph")
    graph_w, base_w = weights(res.checkpoint), weights(base.checkpoint)
    backbone = [k for k in base_w if k.startswith("backbone.")]
    assert backbone and all(torch.equal(graph_w[k], base_w[k]) for k in backbone)
    init = load_checkpoint(res.checkpoint)[0].training["init"]["init_from"]
    assert init["model"] == "baseline_au" and init["tensors"] == len(backbone) and "synthetic" in init["trained_on"]
    cfg["model"]["options"]["backbone_kw"] = {"width_mult": 0.5}  # another backbone: nothing fits
    with pytest.raises(ConfigError, match="do not fit me_graphau"):
        train(validate_train_config(cfg), out_dir=tmp_path / "misfit")


def test_freeze_keeps_the_prefix_and_its_batchnorm_statistics_fixed(tmp_path):
    cfg = tiny()
    cfg["model"]["freeze"] = ["backbone."]
    torch.manual_seed(cfg["train"]["seed"])
    start = create_model("me_graphau", au_names=list(SYNTHETIC_AUS), **cfg["model"]["options"]).state_dict()
    res = train(validate_train_config(cfg), out_dir=tmp_path / "frozen")
    after = weights(res.checkpoint)
    backbone = [k for k in start if k.startswith("backbone.")]
    assert any("running_mean" in k for k in backbone)  # BatchNorm buffers are among them
    assert all(torch.equal(after[k], start[k]) for k in backbone)
    assert any(not torch.equal(after[k], start[k]) for k in start if not k.startswith("backbone.") and after[k].is_floating_point())
    assert load_checkpoint(res.checkpoint)[0].training["init"]["frozen"]["prefixes"] == ["backbone."]
    cfg["model"]["freeze"] = ["trunk."]
    with pytest.raises(ConfigError, match="no parameter of me_graphau starts with 'trunk.'"):
        train(validate_train_config(cfg), out_dir=tmp_path / "typo")


def test_data_aus_trains_and_evaluates_a_subset_in_the_datasets_order(tmp_path):
    cfg = tiny(data__aus=["AU12", "AU01", "AU06"])
    res = train(validate_train_config(cfg), out_dir=tmp_path / "subset")
    card = load_checkpoint(res.checkpoint)[0]
    assert card.labels == ("AU01", "AU12", "AU06") and tuple(res.metrics.au_names) == card.labels
    assert "AU01, AU12, AU06 only" in card.training["data"]
    with pytest.raises(ConfigError, match=r"data.aus: \['AU99'\] is not a subset"):
        train(validate_train_config(tiny(data__aus=["AU01", "AU99"])), out_dir=tmp_path / "bad")
