"""--precision: which arithmetic a CPU training step uses, and that bfloat16 steps train."""

import pytest
import torch

from src.training.precision import MixedPrecision
from src.utils import device as device_module
from tests.helpers import make_trainer

CPU = torch.device("cpu")


@pytest.mark.parametrize("native, asked, expected", [
    (True, "auto", "bfloat16"), (False, "auto", "float32"), (True, "bfloat16", "bfloat16"),
    (True, "float32", "float32"), (False, "float32", "float32")])
def test_auto_picks_bfloat16_only_where_the_cpu_has_it(monkeypatch, native, asked, expected):
    monkeypatch.setattr(device_module, "cpu_has_native_bfloat16", lambda: native)
    assert MixedPrecision(CPU, enabled=False, cpu_precision=asked).name == expected


def test_an_unknown_precision_or_bfloat16_without_the_instructions_is_refused(monkeypatch):
    with pytest.raises(ValueError, match="auto, float32, bfloat16"):
        MixedPrecision(CPU, enabled=False, cpu_precision="fp8")
    monkeypatch.setattr(device_module, "cpu_has_native_bfloat16", lambda: False)
    with pytest.raises(ValueError, match="AVX512-BF16 or AMX.*--precision float32"):
        MixedPrecision(CPU, enabled=False, cpu_precision="bfloat16")


def test_the_command_refuses_bfloat16_before_reading_data(tmp_path, monkeypatch, capsys):
    from src.training.train_model import main

    monkeypatch.setattr(device_module, "cpu_has_native_bfloat16", lambda: False)
    code = main(["--data-dir", str(tmp_path / "nothing-here"), "--precision", "bfloat16", "--device", "cpu",
                 "--checkpoint-dir", str(tmp_path / "run"), "--output-dir", str(tmp_path / "model")])
    err = capsys.readouterr().err
    assert code == 1 and "--precision bfloat16 needs a CPU with bfloat16" in err and "Traceback" not in err
    assert not (tmp_path / "nothing-here").exists()


@pytest.mark.native_precision
@pytest.mark.skipif(not device_module.cpu_has_native_bfloat16(), reason="the CPU has no bfloat16 instructions")
def test_bfloat16_steps_compute_in_bfloat16_and_learn(tmp_path):
    trainer = make_trainer(tmp_path, precision="bfloat16", device="cpu")
    seen = []
    handle = trainer.model.fc.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    history = trainer.train(epochs=3)
    assert torch.bfloat16 in seen
    seen.clear()
    trainer.evaluate_model(trainer.val_loader)  # evaluation in float32, as predict computes
    handle.remove()
    assert seen and set(seen) == {torch.float32}
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # weights stay float32
    assert history["val_accuracies"][-1] > 0.9
    float32 = make_trainer(tmp_path / "f32", precision="float32", device="cpu")
    seen.clear()
    float32.model.fc.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    float32.train_step(*next(iter(float32.train_loader)))
    assert seen == [torch.float32]


def test_cuda_asked_without_cuda_falls_back_to_the_cpu_with_one_warning(monkeypatch, caplog):
    """predict and evaluate resolve devices too: the warning says "running", not "training", on the CPU; a run
    resolves its device in several places but says it once."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_FALLBACKS_TOLD", set())
    with caplog.at_level("WARNING", logger=device_module.__name__):
        assert [device_module.resolve_device("cuda") for _ in range(3)] == [torch.device("cpu")] * 3
    assert caplog.messages == ["device 'cuda' requested but CUDA is not available; running on the CPU"]
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        device_module.resolve_device("gpu")


def test_a_cpuinfo_field_is_matched_whole(monkeypatch, tmp_path):
    """"model" must not read the "model name" line (bench JSON lines record family/model to tell CPUs apart)."""
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nmodel name\t: AMD EPYC\ncpu family\t: 26\nmodel\t\t: 2\nflags\t\t: avx2 x\n")
    real_path = device_module.Path
    monkeypatch.setattr(device_module, "Path",
                        lambda path: real_path(fake) if path == "/proc/cpuinfo" else real_path(path))
    device_module.cpuinfo_field.cache_clear()
    try:
        assert (device_module.cpuinfo_field("model"), device_module.cpuinfo_field("model name")) == ("2", "AMD EPYC")
        assert device_module.cpuinfo_field("cpu family") == "26" and device_module.cpuinfo_field("stepping") == ""
    finally:
        device_module.cpuinfo_field.cache_clear()
