from gan_ssl import api


def test_tiny_run_has_outputs(tiny_run):
    assert (tiny_run / "checkpoints" / "latest.pt").is_file()
    assert (tiny_run / "config.yaml").is_file()
    assert sorted(p.name for p in (tiny_run / "samples").glob("*.png")) == ["step_000002.png", "step_000004.png"]
    imgs = api.sample(tiny_run / "checkpoints" / "latest.pt", n=5, seed=0)
    assert imgs.shape == (5, 1, 32, 32)
