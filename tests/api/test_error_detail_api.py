"""A failed job's owner reads why it failed (its message); where it failed (the frames of
the server's code, the worker's host and pid) is shown to admins only."""

from __future__ import annotations

import asyncpg
import httpx

from .conftest import auth, email_job

DETAIL = '  File "/srv/app/handlers/jobs.py", line 12, in handle\nlease owner host-7:4242:ab12/3'


async def test_the_owner_sees_the_message_and_only_an_admin_sees_the_detail(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    created = (await client.post("/jobs", json=email_job(), headers=auth("alice"))).json()
    await db.execute(
        "UPDATE jobs SET status = 'failed', finished_at = now(), last_error = $2,"
        " error_detail = $3 WHERE id = $1::uuid",
        created["id"],
        "ValueError: bad message id",
        DETAIL,
    )
    mine = (await client.get(f"/jobs/{created['id']}", headers=auth("alice"))).json()
    assert mine["last_error"] == "ValueError: bad message id"
    assert mine["error_detail"] is None
    listed = (await client.get("/jobs", headers=auth("alice"))).json()["jobs"]
    assert [j["error_detail"] for j in listed] == [None]
    seen = (await client.get(f"/jobs/{created['id']}", headers=auth("admin"))).json()
    assert seen["error_detail"] == DETAIL
