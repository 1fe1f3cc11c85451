"""Pretraining corpus and starting points: what the corpus holds, determinism, init=pretrained|scratch|PATH."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffad_core import DiffusionAD, TrainConfig, build_corpus, fit, pretrain, save_weights, set_threads
from diffad_core.pretrained import PRETRAINED_STARTS, WEIGHTS_DIR, pretrained_start
from diffad_core.pretraining import CORPUS_EXCLUDED, CorpusSource, corpus_sources
from diffad_core.pretrained import describe_init, initial_model


def _sources() -> list[CorpusSource]:
    rng = np.random.default_rng(0)
    return [CorpusSource("photo/a", "photo", rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)),
            CorpusSource("mini/x/000.png", "mini", np.full((32, 32, 3), 200, np.uint8))]


def test_corpus_has_photos_and_only_mini_training_images_and_never_the_mini_test_photos():
    sources = corpus_sources()
    names = [s.name for s in sources]
    assert not any(name.split("/")[-1] in CORPUS_EXCLUDED for name in names)
    mini = [s for s in sources if s.group == "mini"]
    assert len(mini) == 4 * 60  # train/good of the four categories, nothing from test/
    assert len([s for s in sources if s.group == "photo"]) >= 15
    assert all(s.image.dtype == np.uint8 and s.image.ndim == 3 and s.image.shape[2] == 3 for s in sources)


def test_build_corpus_is_deterministic_uint8_and_mixes_the_groups():
    a = build_corpus(16, 40, seed=3, sources=_sources())
    b = build_corpus(16, 40, seed=3, sources=_sources())
    c = build_corpus(16, 40, seed=4, sources=_sources())
    assert a.shape == (40, 3, 16, 16) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)
    flat = a.flatten(1).float()
    constant_grey = ((flat - 200).abs() < 1).all(1)  # mini views of the flat 200-grey image
    assert 0.2 * 40 <= int(constant_grey.sum()) <= 0.6 * 40


def test_build_corpus_rejects_bad_sizes():
    with pytest.raises(ValueError, match="image_size"):
        build_corpus(4, 10, sources=_sources())


def test_pretrain_is_an_ordinary_resumable_run(tmp_path, monkeypatch):
    import diffad_core.pretraining as pretraining

    monkeypatch.setattr(pretraining, "corpus_sources", lambda **kw: _sources())
    cfg = TrainConfig.from_preset("tiny", image_size=32, batch_size=2, steps=2, checkpoint_every=1, init="scratch")
    result = pretrain(cfg, num_images=8, out_dir=tmp_path, progress=False)
    assert result.steps == 2 and (tmp_path / "model.safetensors").is_file()
    longer = TrainConfig.from_preset("tiny", image_size=32, batch_size=2, steps=3, checkpoint_every=1, init="scratch")
    assert pretrain(longer, num_images=8, out_dir=tmp_path, resume=True, progress=False).steps == 3


def test_presets_choose_their_start():
    assert TrainConfig.from_preset("tiny").init == "pretrained"
    assert TrainConfig.from_preset("small").init == "pretrained"
    assert pretrained_start("small", 128).name == PRETRAINED_STARTS[("small", 128)]
    assert TrainConfig.from_preset("paper").init == "scratch"  # the released recipe
    assert TrainConfig().init == "scratch"


def test_every_start_ships_and_the_nearest_size_is_taken():
    for (preset, size), name in PRETRAINED_STARTS.items():
        assert (WEIGHTS_DIR / name).is_file(), name
    assert pretrained_start("tiny", 64).name == PRETRAINED_STARTS[("tiny", 64)]
    assert pretrained_start("tiny", 96) in {WEIGHTS_DIR / n for (p, _), n in PRETRAINED_STARTS.items() if p == "tiny"}
    with pytest.raises(ValueError, match="no pretrained starting point"):
        pretrained_start("paper", 256)


def test_init_pretrained_loads_the_shipped_weights_at_any_size():
    from diffad_core import load_model

    shipped = load_model(pretrained_start("tiny", 64))
    for size in (64, 32):
        model = initial_model(TrainConfig.from_preset("tiny", image_size=size))
        assert model.image_size == size
        for key, value in shipped.state_dict().items():
            assert torch.equal(model.state_dict()[key], value), key
    assert "pretrained-tiny-64" in describe_init(TrainConfig.from_preset("tiny"))


def test_init_from_a_file_and_the_errors(tmp_path):
    torch.manual_seed(5)
    source = DiffusionAD.from_preset("tiny", image_size=32)
    save_weights(tmp_path / "start.safetensors", source)
    model = initial_model(TrainConfig.from_preset("tiny", image_size=32, init=str(tmp_path / "start.safetensors")))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), source.state_dict().values()))
    with pytest.raises(ValueError, match="is not a file"):
        initial_model(TrainConfig.from_preset("tiny", image_size=32, init=str(tmp_path / "missing.safetensors")))
    with pytest.raises(ValueError, match="does not fit preset 'small'"):
        initial_model(TrainConfig.from_preset("small", image_size=32, init=str(tmp_path / "start.safetensors")))


def test_scratch_start_depends_on_the_seed_only():
    a = initial_model(TrainConfig.from_preset("tiny", image_size=32, init="scratch", seed=1))
    b = initial_model(TrainConfig.from_preset("tiny", image_size=32, init="scratch", seed=1))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_fit_from_pretrained_moves_away_from_the_start():
    images = torch.rand(4, 3, 32, 32)
    cfg = TrainConfig.from_preset("tiny", image_size=32, batch_size=2, steps=1)
    start = initial_model(cfg)
    trained = fit(cfg, images, progress=False).model
    changed = [not torch.equal(a, b) for a, b in zip(start.unet.parameters(), trained.unet.parameters())]
    assert any(changed)


def test_set_threads():
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
        assert set_threads(None) == 1
        with pytest.raises(ValueError, match="threads"):
            set_threads(0)
    finally:
        torch.set_num_threads(before)
