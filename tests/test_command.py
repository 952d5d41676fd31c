"""W&B command macros, expanded as the W&B agent does."""
from kubesweep.engine.command import build_argv

P = {"lr": 0.001, "layers": 3, "aug": True, "off": False, "opt": {"name": "adam"}}


def argv(command, env=None):
    return build_argv(command, P, program="train.py", env=env or {}, args_json_file="/tmp/a.json")


def test_default_command():
    assert argv(None) == ["/usr/bin/env", "python", "train.py", "--lr=0.001", "--layers=3", "--aug=True",
                          "--off=False", "--opt={'name': 'adam'}"]


def test_args_variants():
    assert argv(["${args_no_hyphens}"])[:2] == ["lr=0.001", "layers=3"]
    assert argv(["${args_no_boolean_flags}"]) == ["--lr=0.001", "--layers=3", "--aug", "--opt={'name': 'adam'}"]
    assert argv(["${args_json}"]) == ['{"lr": 0.001, "layers": 3, "aug": true, "off": false, "opt": {"name": "adam"}}']
    assert argv(["x", "${args_json_file}"]) == ["x", "/tmp/a.json"]


def test_envvar_inside_items_and_unset_names_kept_as_wandb_does():
    assert argv(["--data=${envvar:DATA}/train", "${envvar:MISSING}"], {"DATA": "/mnt/d"}) == ["--data=/mnt/d/train", "MISSING"]


def test_hydra_interpolations_are_left_untouched():
    assert argv(["python", "train.py", "${args_no_hyphens}", "hydra.run.dir=${now:%Y}", "${oc.env:HOME}"])[-2:] == [
        "hydra.run.dir=${now:%Y}", "${oc.env:HOME}"]
