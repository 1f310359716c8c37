"""Simulated trials (``search.run.simulate``): what they report, and that their processes stay light."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np

from search.run.settings import Settings
from search.run.simulate import SimulatedResources, stretch, table_path
from search.tools.simulation import build_world
from search.space import PROFILES


def test_a_table_is_stretched_to_the_search_s_epochs_at_the_same_share_of_training():
    table = np.array([[0.1, 0.2, 0.4], [0.3, 0.3, 0.3]])
    assert np.allclose(stretch(table, 3), table)
    assert np.allclose(stretch(table, 6)[0], [0.1, 0.1, 0.15, 0.2, 0.3, 0.4])  # epoch e of 6 reads e/2 of 3
    assert np.allclose(stretch(table, 1)[0], [0.4])  # the end of training is the end of the table


def _world(epochs: int = 9):
    profile = PROFILES["full"]
    settings = Settings("full", 32, epochs, 1, 3, 16, simulate=str(table_path(profile, None)), time_scale=3.0)
    return profile, build_world(profile, settings, dict(profile.counts))


def test_a_simulated_trial_reports_its_nearest_recorded_curve_with_its_own_noise():
    _, world = _world()
    config = dict(world.recorded[3])
    drawn, again, other = world.trial(config, "a"), world.trial(config, "a"), world.trial(config, "b")
    assert drawn["recorded"] == 3 and world.values.shape[1] == 9
    assert np.array_equal(drawn["values"], again["values"]) and np.array_equal(drawn["train_s"], again["train_s"])
    assert not np.array_equal(drawn["train_s"], other["train_s"])  # seeded by the trial
    plateau = world.values[3] == world.floor  # copy-last-frame exactly: the trial predicts the last frame
    assert np.array_equal(drawn["values"][plateau], world.values[3][plateau])
    assert np.abs(drawn["values"] - world.values[3]).max() < 0.02 and (drawn["train_s"] > 0).all()


def test_a_simulated_trial_s_process_imports_no_torch(tmp_path):
    """What Ray ships to a simulated trial's process (its world, its resources function) unpickles
    and runs there without torch: hundreds of them fit one machine."""
    profile, world = _world()
    (tmp_path / "shipped.pkl").write_bytes(pickle.dumps(
        (world, SimulatedResources(profile.cpus_per_trial, profile.resolution, 22.0, dict(profile.counts)))))
    code = ("import pickle, sys; world, resources = pickle.load(open(sys.argv[1], 'rb')); "
            "world.trial(world.recorded[0], 't'); print('torch' in sys.modules)")
    ran = subprocess.run([sys.executable, "-c", code, str(tmp_path / "shipped.pkl")], capture_output=True, text=True,
                         timeout=120)
    assert ran.returncode == 0 and ran.stdout.strip() == "False", ran.stderr[-2000:]
    shares = {SimulatedResources(2, profile.resolution, 22.0, dict(profile.counts))(config)["gpu"] for config in world.pool}
    assert min(shares) < 1  # on the driver, the memory model packs them
