"""The proposals file (annotator/data/proposals.py), ``sam-annotator auto`` in one process, and ``--ray`` without Ray.

The Ray pipeline itself is tested in test_cluster_ray.py.
"""

from __future__ import annotations

import sqlite3
import sys
import zlib
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotator import cli
from annotator.commands import auto as cmd_auto
from annotator.data import proposals as P
from annotator.data.coco import encode_mask


def _records(h: int, w: int, n: int = 3) -> list:
    """Generator-shaped records of ``n`` rectangles in an ``h x w`` image."""
    out = []
    for i in range(n):
        m = np.zeros((h, w), dtype=bool)
        m[i : i + 5, 2 * i : 2 * i + 7] = True
        out.append({
            "segmentation": encode_mask(m), "area": int(m.sum()), "bbox": [2 * i, i, 7, 5],
            "predicted_iou": 0.9 + i / 100, "stability_score": 0.97, "point_coords": [[2.5 * i + 3, i + 2.0]],
            "crop_box": [0, 0, w, h],
        })
    return out


def _row(name="a.png", digest="d" * 32, h=20, w=30, records=None, **kw) -> P.StoredProposals:
    return P.StoredProposals(
        file_name=name, digest=digest, size=(h, w), model_type="vit_t", checkpoint_id="sha256-" + "0" * 64,
        params=kw.pop("params", P.GeneratorParams()), seconds=1.5, created=123.0,
        records=tuple(_records(h, w) if records is None else records),
    )


def test_generator_params_are_the_windows():
    from annotator.session.everything import EverythingOptions

    assert asdict(P.GeneratorParams()) == asdict(EverythingOptions())
    assert P.GeneratorParams().generator_kwargs() == EverythingOptions().generator_kwargs()


def test_segment_everything_defaults_to_the_fast_mode_and_a_grid_stays_selectable():
    import json

    from annotator.commands.auto import build_parser
    from annotator.session.everything import EverythingOptions, default_generator
    from sam_core import build_model

    model = build_model("vit_t", device="meta")
    assert default_generator(model, EverythingOptions()).fast is True  # the window's Ctrl+E
    grid = default_generator(model, EverythingOptions(points_per_side=32))
    assert grid.fast is False
    assert build_parser().parse_args(["d"]).points_per_side is None  # `auto`: the window's default
    assert build_parser().parse_args(["d", "--points-per-side", "32"]).points_per_side == 32
    for params in (P.GeneratorParams(), P.GeneratorParams(points_per_side=16)):
        assert P.GeneratorParams.from_mapping(json.loads(params.to_json())) == params
    with pytest.raises(ValueError):
        P.GeneratorParams.from_mapping({**asdict(P.GeneratorParams()), "points_per_side": "many"})


def test_proposals_path_is_beside_the_working_file(tmp_path):
    assert P.proposals_path(tmp_path / "annotations.json") == tmp_path / "annotations.proposals.sqlite3"
    assert P.proposals_path(tmp_path / "x" / "set.v2.json") == tmp_path / "x" / "set.v2.proposals.sqlite3"


def test_round_trip_and_lookup_by_content(tmp_path):
    work = tmp_path / "annotations.json"
    assert P.load_for_review(work, "a.png", "d" * 32) is None  # no file yet: nothing, and nothing created
    assert not P.proposals_path(work).exists()
    store = P.ProposalStore.beside(work, create=True)
    row = _row()
    store.put_many([row, _row("sub/b.jpg", digest="e" * 32, h=10, w=12, records=[])])
    assert len(store) == 2

    got = P.ProposalStore.beside(work).get("a.png")
    assert got == replace(row, records=got.records)
    assert [r["segmentation"] for r in got.records] == [r["segmentation"] for r in row.records]
    assert list(got.records) == list(row.records)
    size, records = P.load_for_review(work, "a.png", "d" * 32)
    assert size == (20, 30) and records == list(row.records)
    assert P.load_for_review(work, "a.png", "f" * 32) is None  # the image changed since
    assert P.load_for_review(work, "missing.png", "d" * 32) is None
    assert P.load_for_review(work, "sub/b.jpg", "e" * 32) == ((10, 12), [])

    sigs = store.digests()
    assert sigs["a.png"][0] == "d" * 32
    assert sigs["a.png"][1] == P.signature("vit_t", "sha256-" + "0" * 64, P.GeneratorParams())
    assert sigs["a.png"][1] != P.signature("vit_t", "sha256-" + "0" * 64, P.GeneratorParams(points_per_side=16))

    store.put(_row(records=_records(20, 30, 1)))  # replaced, not added
    assert len(store) == 2 and len(store.get("a.png").records) == 1


def test_bad_records_are_refused_on_write_with_the_image_and_record(tmp_path):
    store = P.ProposalStore(tmp_path / "p.proposals.sqlite3", create=True)
    bad = _records(20, 30)
    bad[1] = dict(bad[1], segmentation=encode_mask(np.zeros((21, 30), bool)))
    with pytest.raises(ValueError, match=r"proposals of a.png: record 1: .*disagrees with the image"):
        store.put(_row(records=bad))
    bad = _records(20, 30)
    bad[2] = dict(bad[2], predicted_iou=float("nan"))
    with pytest.raises(ValueError, match=r"record 2: predicted_iou must be a finite number"):
        store.put(_row(records=bad))
    assert len(store) == 0  # nothing half-written


def test_unusable_files_give_clear_errors(tmp_path):
    missing = tmp_path / "none.proposals.sqlite3"
    with pytest.raises(P.ProposalsError, match="does not exist .*sam-annotator auto"):
        P.ProposalStore(missing)
    assert not missing.exists()

    garbage = tmp_path / "garbage.proposals.sqlite3"
    garbage.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(P.ProposalsError, match="is not a readable proposals file"):
        P.ProposalStore(garbage)
    assert garbage.read_bytes() == b"this is not a database at all" * 100  # untouched

    other = tmp_path / "other.proposals.sqlite3"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE t (x)")
    with pytest.raises(P.ProposalsError, match="is not a proposals file"):
        P.ProposalStore(other)

    newer = tmp_path / "newer.proposals.sqlite3"
    P.ProposalStore(newer, create=True)
    with sqlite3.connect(newer) as con:
        con.execute("UPDATE meta SET value = '2' WHERE key = 'version'")
    with pytest.raises(P.ProposalsError, match="format version '2'; this sam-annotator reads version 1"):
        P.load_for_review(tmp_path / "newer.json", "a.png", "d" * 32)


@pytest.mark.parametrize("damage, message", [
    (lambda con: con.execute("UPDATE proposals SET records = ?", (b"\x00garbage",)), "records cannot be decoded"),
    (lambda con: con.execute("UPDATE proposals SET records = ?", (zlib.compress(b'[{"area": 3}]'),)),
     r"record 0: missing \['bbox'"),
    (lambda con: con.execute("UPDATE proposals SET count = 7"), "3 records where 7 were written"),
    (lambda con: con.execute("UPDATE proposals SET params = '{}'"), "generator parameters must have exactly"),
    (lambda con: con.execute("UPDATE proposals SET height = 0"), "bad image size"),
])
def test_a_damaged_row_names_the_image(tmp_path, damage, message):
    work = tmp_path / "annotations.json"
    P.ProposalStore.beside(work, create=True).put(_row())
    with sqlite3.connect(P.proposals_path(work)) as con:
        damage(con)
    with pytest.raises(P.ProposalsError, match=f"proposals of a.png: {message}"):
        P.load_for_review(work, "a.png", "d" * 32)


# -- --ray without Ray -----------------------------------------------------------


@pytest.mark.parametrize("command", ["encode", "auto"])
def test_ray_option_without_ray_says_what_to_install(tmp_path, monkeypatch, capsys, command):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "a.png")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as when it is not installed
    monkeypatch.setitem(sys.modules, "ray.data", None)
    code = cli.main([command, str(folder), "--ray", "--cache-dir", str(tmp_path / "cache"), "-q"])
    err = capsys.readouterr().err
    assert code == 1
    assert 'pip install "sam-annotator[cluster]"' in err and "--ray needs Ray Data" in err
    assert not (tmp_path / "cache").exists()  # failed before any download or cache write


def test_auto_rejects_bad_numbers(tmp_path, capsys):
    assert cmd_auto.main([str(tmp_path), "--points-per-side", "0"]) == 2
    assert "--points-per-side must be at least 1" in capsys.readouterr().err


# -- auto in one process, real weights ---------------------------------------------


@pytest.mark.weights
@pytest.mark.slow
def test_auto_in_one_process_matches_segment_everything_and_resumes(tmp_path, mobilesam_checkpoint, photos, qapp,
                                                                   capsys):
    """The stored proposals are the window's: the same generator on the embedding the window loads from the cache."""
    import sam_core
    from annotator.data.imageio import load_image
    from annotator.session.everything import prepare_proposals
    from sam_core.cache import EmbeddingCache, checkpoint_fingerprint

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(photos["chelsea"][::2, ::2]).save(folder / "cat.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    root = tmp_path / "cache"
    argv = ["auto", str(folder), "--checkpoint", str(mobilesam_checkpoint), "--cache-dir", str(root),
            "--device", "cpu", "--points-per-side", "4", "-q"]
    assert cli.main(argv) == 3  # the broken file is reported, the other image is done

    work = folder / "annotations.json"
    image = load_image(folder / "cat.png")
    cache = EmbeddingCache(root / "embeddings", model_type="vit_t",
                           checkpoint_id=checkpoint_fingerprint(mobilesam_checkpoint), memory_bytes=0)
    key = cache.key_for(image)
    emb = cache.get(key)
    assert emb is not None  # auto stored the embedding: the window opens the image without encoding
    params = P.GeneratorParams(points_per_side=4)
    model = sam_core.load_model("vit_t", checkpoint=mobilesam_checkpoint, device="cpu")
    expected = sam_core.AutomaticMaskGenerator(sam_core.Predictor(model), **params.generator_kwargs()).generate(
        image, embedding=emb)
    size, stored = P.load_for_review(work, "cat.png", sam_core.cache.image_digest(image))
    assert size == image.shape[:2] and len(stored) == len(expected) > 0
    assert stored == expected  # same process, same arithmetic: every field equal
    # what the review shows: the same proposals as a live run's
    live, kept = prepare_proposals(expected, *size), prepare_proposals(stored, *size)
    assert [(p.segmentation, p.bbox, p.area) for p in kept] == [(p.segmentation, p.bbox, p.area) for p in live]

    # a second run does nothing again; a changed image is done again
    (folder / "broken.jpg").unlink()
    capsys.readouterr()
    assert cmd_auto.main(argv[1:]) == 0
    assert "1 images: 0 segmented (0 proposals), 1 already done, 0 failed" in capsys.readouterr().out
    Image.fromarray(photos["chelsea"][::2, ::2][:, ::-1]).save(folder / "cat.png")
    assert cmd_auto.main(argv[1:]) == 0
    assert "1 images: 1 segmented" in capsys.readouterr().out
    flipped = load_image(folder / "cat.png")
    assert P.load_for_review(work, "cat.png", sam_core.cache.image_digest(flipped)) is not None
    assert P.load_for_review(work, "cat.png", sam_core.cache.image_digest(image)) is None


def test_auto_interrupted_keeps_what_is_finished_and_the_rerun_does_only_the_rest(tmp_path):
    """The driver loop of auto with a stand-in worker (no model): an interruption, then a second run."""
    import json

    from annotator.commands import cluster

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(folder / name)
    seen = []

    class StandIn:
        interrupt_on = "b.png"

        def __init__(self, job):
            pass

        def __call__(self, batch):
            rows = list(cluster.to_rows(batch))
            for row in rows:
                seen.append(Path(row["path"]).name)
                if row["path"].endswith(self.interrupt_on):
                    raise KeyboardInterrupt
                del row["image"]
                row.update(encoded=True, records=json.dumps(_records(row["height"], row["width"])), seconds=0.1)
            return cluster.to_columns(rows)

    job = cluster.Job(kind="auto", model_type="vit_t", checkpoint="", checkpoint_id="sha256-" + "0" * 64,
                      embeddings_dir=str(tmp_path / "cache" / "embeddings"))
    work = folder / "annotations.json"
    paths = sorted(folder.glob("*.png"))
    with pytest.raises(KeyboardInterrupt):
        cmd_auto.auto_folder(paths, job, work, worker_cls=StandIn)
    assert seen == ["a.png", "b.png"]
    store = P.ProposalStore.beside(work)
    assert len(store) == 1 and len(store.get("a.png").records) == 3  # a.png's proposals were kept

    StandIn.interrupt_on = "nothing"
    seen.clear()
    summary = cmd_auto.auto_folder(paths, job, work, worker_cls=StandIn)
    assert seen == ["b.png", "c.png"]  # a.png not even read: its digest was recorded
    assert (summary.segmented, summary.already, summary.proposals, summary.failed) == (2, 1, 6, [])
    assert len(store) == 3
    other = replace(job, params=P.GeneratorParams(points_per_side=8))  # other parameters: all done again
    seen.clear()
    assert cmd_auto.auto_folder(paths, other, work, worker_cls=StandIn).segmented == 3
