import threading
import time

from kubestrap.lab import image
from kubestrap.lab.recipe import Recipe


def test_ready_image_is_reused_without_building(tmp_path, monkeypatch):
    r = Recipe()
    img = image.image_for(r, tmp_path)
    img.directory.mkdir(parents=True)
    (img.directory / image.READY).write_text("x")
    monkeypatch.setattr(image, "_build", lambda *a: (_ for _ in ()).throw(AssertionError("rebuilt")))
    assert image.ensure_image(r, print, tmp_path) == img


def test_concurrent_callers_build_once_and_atomically(tmp_path, monkeypatch):
    builds = []

    def fake_build(recipe, tmp, log):
        builds.append(tmp)
        time.sleep(0.3)
        (tmp / "base.raw").write_text("disk")
        (tmp / image.READY).write_text("x")

    monkeypatch.setattr(image, "_build", fake_build)
    monkeypatch.setattr(image.hostdeps, "require", lambda *a, **k: None)
    monkeypatch.setattr(image.os, "geteuid", lambda: 0)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(image.ensure_image(Recipe(), lambda m: None, tmp_path))) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1
    assert len(set(results)) == 1 and image.is_ready(results[0])
    assert not list(tmp_path.glob(".tmp-*"))  # the temporary build dir was renamed into place


def test_recipe_change_means_a_new_cache_entry(tmp_path):
    assert image.image_for(Recipe(), tmp_path) != image.image_for(Recipe(size_gib=9), tmp_path)
