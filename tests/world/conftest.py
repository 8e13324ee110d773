import pytest


@pytest.fixture(scope="session")
def ci_world(tmp_path_factory):
    """The demo's reduced-size world (``--scale ci``), built once per session into its own cache."""
    from dicekit.commands.demo import world_config
    from dicekit.world import recipe

    import torch

    torch.set_num_threads(1)  # as the demo does (see dicekit.commands.demo.THREADS)
    cache = tmp_path_factory.mktemp("dicekit_cache")
    cfg = world_config("ci", seed=0)
    world = recipe.build(cfg, root=cache / "world", quiet=True)
    return {"cache": cache, "config": cfg, "world": world}
