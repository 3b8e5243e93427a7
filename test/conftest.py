"""Session-wide test environment: ROS logs and Mesa's shader cache go to temporary folders, not the home folder."""
import pytest


@pytest.fixture(scope="session", autouse=True)
def _scratch_home_folders(tmp_path_factory):
    """Point ROS_HOME and MESA_SHADER_CACHE_DIR (inherited by node subprocesses) at temporary folders."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROS_HOME", str(tmp_path_factory.mktemp("ros_home")))
        mp.setenv("MESA_SHADER_CACHE_DIR", str(tmp_path_factory.mktemp("mesa_cache")))
        yield
