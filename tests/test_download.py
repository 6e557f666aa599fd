"""``--download`` / ``download=True``: the one download path (sha256 required, timeout, progress bar), reached
from the command line, refusing a wrong or missing checksum and a damaged file in $ADAPTSAM_HOME."""

from __future__ import annotations

import hashlib
import socket

import pytest
import torch

import adaptsam
from adaptsam import assets, registry
from adaptsam.assets import CheckpointSpec
from adaptsam.backbones.lite_medsam import LITE_MEDSAM_TEST, build_lite_medsam
from adaptsam.cli import main
from adaptsam.errors import CheckpointError

NAME = "download_test_backbone"


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A lite_medsam_test checkpoint behind a file:// URL, and a backbone whose official weights it is."""
    monkeypatch.setenv("ADAPTSAM_HOME", str(tmp_path / "home"))
    source = tmp_path / "server" / "weights.pth"
    source.parent.mkdir()
    torch.save(adaptsam.create_model("lite_medsam_test", pretrained=False).state_dict(), source)
    state = {"spec": CheckpointSpec("dl_test.pth", url=source.as_uri(),
                                    sha256=hashlib.sha256(source.read_bytes()).hexdigest())}

    def factory(checkpoint=None, pretrained=True, download=False):
        return build_lite_medsam(LITE_MEDSAM_TEST, name=NAME, spec=state["spec"], checkpoint=checkpoint,
                                 pretrained=pretrained, download=download)

    calls = []
    real = torch.hub.download_url_to_file

    def counting(url, dst, *args, **kwargs):  # the URL opener sees the timeout adaptsam set
        calls.append((url, socket.getdefaulttimeout()))
        return real(url, dst, *args, **kwargs)

    monkeypatch.setattr(torch.hub, "download_url_to_file", counting)
    registry.backbones.register(NAME, factory)
    yield state, calls, tmp_path / "home" / "checkpoints" / "dl_test.pth"
    registry.backbones.unregister(NAME)


def _eval(tmp_path, *extra):
    return ["eval", "--backbone", NAME, "--adapter", "frozen", "--policy", "native", "-R", "64", "--data",
            "synthetic", "--limit", "1", "--no-progress", "--out", str(tmp_path / "out"), *extra]


def test_cli_download_fetches_verifies_and_installs(served, tmp_path, capsys):
    state, calls, installed = served
    assert main(_eval(tmp_path)) == 2
    assert "--download" in capsys.readouterr().err and not calls  # nothing fetched without the flag
    assert main(_eval(tmp_path, "--download")) == 0, capsys.readouterr().err
    assert calls == [(state["spec"].url, assets.DOWNLOAD_TIMEOUT_S)]
    assert installed.is_file() and socket.getdefaulttimeout() is None  # timeout restored
    assert adaptsam.create_model(NAME).info.checkpoint == str(installed)  # later builds find it, no flag


def test_wrong_sha256_is_refused_and_nothing_installed(served, tmp_path, capsys):
    state, calls, installed = served
    state["spec"] = CheckpointSpec("dl_test.pth", url=state["spec"].url, sha256="0" * 64)
    assert main(_eval(tmp_path, "--download")) == 2
    err = capsys.readouterr().err
    assert "sha256" in err and "0" * 64 in err and "Traceback" not in err
    assert len(calls) == 1 and not installed.exists() and not list(installed.parent.glob("*.part"))


def test_a_spec_without_sha256_is_never_downloaded(served, tmp_path, capsys):
    state, calls, _ = served
    state["spec"] = CheckpointSpec("dl_test.pth", url=state["spec"].url)
    assert main(_eval(tmp_path, "--download")) == 2
    assert "no published sha256" in capsys.readouterr().err and not calls


def test_a_damaged_file_in_adaptsam_home_is_refused(served, tmp_path):
    state, _, installed = served
    installed.parent.mkdir(parents=True)
    installed.write_bytes(b"half a download")
    with pytest.raises(CheckpointError, match="dl_test.pth has sha256 .* damaged"):
        adaptsam.create_model(NAME)


def test_api_download_true_reaches_the_same_path(served):
    state, calls, installed = served
    model = adaptsam.create_model(NAME, download=True, policy="native", resolution=64)
    assert calls and model.info.official_weights and installed.is_file()


@pytest.mark.parametrize("argv", [
    ["train", "--out", "o"], ["eval", "--out", "o"], ["bench"], ["predict", "w.safetensors", "x.png", "--out", "o"],
    ["export", "w.safetensors", "--onnx", "m.onnx"], ["ncut", "--images", "x.png", "--out", "o"], ["perf"],
], ids=lambda argv: argv[0])
def test_every_command_that_builds_a_backbone_takes_download(argv):
    from adaptsam.cli import build_parser

    assert build_parser().parse_args([*argv, "--download"]).download is True
