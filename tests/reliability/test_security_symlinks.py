"""Symlinks out of the adapter store are never followed: a symlinked set folder is neither listed nor
loadable (it once crashed startup and broke GET /adapters), and symlinked files inside a real set
folder are refused (they were once followed and served)."""

from __future__ import annotations

import pytest

from tests.reliability.support import assert_error
from tests.reliability.test_security import CLIP, FILES, outside_set  # noqa: F401
from tests.server.helpers import make_settings, running_app


@pytest.mark.anyio
async def test_symlinked_set_folder_out_of_the_store_cannot_be_loaded(tiny_store, store_copy, tmp_path) -> None:
    backbone, _ = tiny_store
    outside = outside_set(store_copy, tmp_path)
    (store_copy / "linked").symlink_to(outside, target_is_directory=True)
    async with running_app(make_settings(backbone, store_copy, tmp_path, insecure_open_admin=True)) as (_, client):
        assert_error(await client.post("/emotion", files=FILES, data={"adapter": "linked"}), 404)
        assert_error(await client.post("/adapters/linked/load"), 404)
        assert "linked" not in {row["id"] for row in (await client.get("/adapters")).json()}


@pytest.mark.anyio
async def test_symlinked_files_out_of_the_store_cannot_be_loaded(tiny_store, store_copy, tmp_path) -> None:
    """A real folder in the store whose two files are symlinks to files elsewhere on the disk."""
    backbone, _ = tiny_store
    outside = outside_set(store_copy, tmp_path)
    folder = store_copy / "filelinks"
    folder.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (folder / name).symlink_to(outside / name)
    async with running_app(make_settings(backbone, store_copy, tmp_path, insecure_open_admin=True)) as (_, client):
        response = await client.post("/emotion", files=FILES, data={"adapter": "filelinks"})
        assert response.status_code == 404, response.text


@pytest.mark.anyio
async def test_symlink_added_while_running_does_not_break_the_listing(tiny_store, store_copy, tmp_path) -> None:
    backbone, _ = tiny_store
    outside = outside_set(store_copy, tmp_path)
    async with running_app(make_settings(backbone, store_copy, tmp_path, insecure_open_admin=True)) as (_, client):
        (store_copy / "linked").symlink_to(outside, target_is_directory=True)
        listing = await client.get("/adapters")
        assert listing.status_code == 200, listing.text
        assert "linked" not in {row["id"] for row in listing.json()}
        assert (await client.post("/emotion", files=FILES)).status_code == 200
