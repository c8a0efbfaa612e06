"""The command line: generate from a saved model, convert both ways."""

import json

from tests.conftest import RELEASE_FIXTURES, make_image
from xgenmm.cli import main


def test_generate_prints_an_answer(tiny_model, tiny_processor, tmp_path, capsys):
    tiny_model.save_pretrained(tmp_path / "m", processor=tiny_processor)
    make_image(90, 60).save(tmp_path / "a.png")
    make_image(40, 40, 1).save(tmp_path / "b.png")
    rc = main(["generate", "--model", str(tmp_path / "m"), "--image", str(tmp_path / "a.png"),
               "--image", str(tmp_path / "b.png"), "--prompt", "what colour is the circle?", "--max-new-tokens", "4"])
    assert rc == 0
    assert capsys.readouterr().out.strip() != ""


def test_generate_with_beams_prints_the_best_beam(tiny_model, tiny_processor, tmp_path, capsys):
    import torch

    with torch.no_grad():  # sharper next-token distributions, so that the best beam is not the greedy answer
        tiny_model.lang_model.get_output_embeddings().weight.mul_(3.0)
    tiny_model.save_pretrained(tmp_path / "m", processor=tiny_processor)
    make_image(90, 60).save(tmp_path / "a.png")

    def answer(question, **kw):
        prompt = tiny_processor.apply_chat_template([{"role": "user", "content": "<image>\n" + question}])
        with torch.no_grad():
            out = tiny_model.generate(**tiny_processor(prompt, [make_image(90, 60)]), max_new_tokens=8, **kw)
        return tiny_processor.batch_decode(out)[0].strip()

    # a question whose best beam is not the greedy answer, so the test sees the option passed on
    question = next(q for q in ("what colour?", "how many shapes?", "what is at the top?", "is there a red circle?",
                                "what word is written?") if answer(q, num_beams=3, length_penalty=0.0) != answer(q))
    rc = main(["generate", "--model", str(tmp_path / "m"), "--image", str(tmp_path / "a.png"), "--prompt", question,
               "--max-new-tokens", "8", "--num-beams", "3", "--length-penalty", "0"])
    assert rc == 0
    assert capsys.readouterr().out.strip() == answer(question, num_beams=3, length_penalty=0.0)
    rc = main(["generate", "--model", str(tmp_path / "m"), "--image", str(tmp_path / "a.png"), "--prompt", question,
               "--length-penalty", "0"])
    assert rc == 1 and "--length-penalty applies to beam search" in capsys.readouterr().err


def test_generate_names_a_missing_image(tiny_model, tiny_processor, tmp_path, capsys):
    tiny_model.save_pretrained(tmp_path / "m", processor=tiny_processor)
    rc = main(["generate", "--model", str(tmp_path / "m"), "--image", str(tmp_path / "nope.png"), "--prompt", "hi"])
    assert rc == 1 and "nope.png" in capsys.readouterr().err


def test_convert_import_then_export(tmp_path, capsys):
    assert main(["convert", "import", str(RELEASE_FIXTURES / "checkpoint"), str(tmp_path / "ours")]) == 0
    assert main(["convert", "export", str(tmp_path / "ours"), str(tmp_path / "release")]) == 0
    assert json.loads((tmp_path / "release" / "config.json").read_text())["model_type"] == "xgenmm"


def test_an_output_path_that_is_a_file_is_a_one_line_error(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    assert main(["data", "synth", "--out", str(afile)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("xgenmm data: error:") and str(afile) in err and "Traceback" not in err
    assert afile.read_text() == "keep"


def test_the_command_line_parser_imports_neither_torch_nor_transformers():
    """`xgenmm --help` and a usage error come without the seconds that torch and transformers
    take to import: the packages export their public names lazily (`xgenmm/_lazy.py`) and
    each subcommand imports its machinery when it runs."""
    import subprocess
    import sys

    code = ("import sys, xgenmm.cli as c; c.build_parser(); "
            "print(sorted(m for m in ('torch', 'transformers', 'webdataset', 'tokenizers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_packages_public_names_resolve_on_first_use():
    import pytest

    import xgenmm
    import xgenmm.curate
    import xgenmm.data
    import xgenmm.eval
    import xgenmm.train
    from xgenmm import XGenMM
    from xgenmm.data import Encoder
    from xgenmm.data.encode import Encoder as defined
    from xgenmm.model.xgenmm import XGenMM as model_class

    assert XGenMM is model_class and Encoder is defined
    for package in (xgenmm, xgenmm.data, xgenmm.eval, xgenmm.train, xgenmm.curate, xgenmm.model):
        for name in package.__all__:
            assert getattr(package, name) is not None, (package.__name__, name)
            assert name in dir(package)
    with pytest.raises(AttributeError, match="xgenmm.data.*NoSuchThing"):
        xgenmm.data.NoSuchThing  # noqa: B018
