import pytest
from curate_fixtures import scene_records


@pytest.fixture
def scenes():
    return scene_records()


@pytest.fixture(scope="session")
def tiny_owlv2_dir(tmp_path_factory):
    from xgenmm.curate.tiny_models import tiny_owlv2

    return str(tiny_owlv2(tmp_path_factory.mktemp("owlv2")))


@pytest.fixture(scope="session")
def tiny_kale_dirs(tmp_path_factory):
    from xgenmm.curate.tiny_models import tiny_captioner, tiny_causal_lm

    return str(tiny_captioner(tmp_path_factory.mktemp("captioner"))), str(tiny_causal_lm(tmp_path_factory.mktemp("llm")))
